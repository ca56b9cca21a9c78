// Recovery by a node that started after the broadcasts its clients missed: clients on node A
// (room "r"), a broadcaster on B; A is SIGKILLed and the clients retry against a port where
// nothing listens yet while B broadcasts; then node C starts there (a sio interop-server on
// Redis streams) and the clients must come back recovered with every broadcast exactly once,
// in order: C can only have read them from the stream.
// Usage: node late-recovery.mjs --a URL --b URL --redis URL --kill PID --sio-bin PATH
// Prints `COUNTS {json}`; exits 1 on a client not recovered, a lost or duplicated broadcast.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { client, received, report, start } from "./recovery-report.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B] = [arg("a"), arg("b")];
const CLIENTS = 4;
const COUNT = 50;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const within = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`timeout: ${what}`)))]);
const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

const portC = await freePort();
const C = `http://127.0.0.1:${portC}`;
const clients = Array.from({ length: CLIENTS }, (_, i) => client(A, i, C));
const { before, sender } = await start(clients, B);

let sent = 0;
const send = async (tag) => {
  await sender.timeout(3000).emitWithAck("broadcast-room", { room: "r", tag });
  sent++;
};
for (let tag = 0; tag < 10; tag++) await send(tag);
await received(clients, 10);
process.kill(Number(arg("kill")), "SIGKILL");
await sleep(300);
for (let tag = 10; tag < COUNT; tag++) await send(tag);

const c = spawn(arg("sio-bin"), {
  env: { ...process.env, PORT: String(portC), NODE_NAME: "C", REDIS_URL: arg("redis"), ADAPTER: "streams", CSR: "1" },
  stdio: ["ignore", "pipe", "inherit"],
});
await within(
  new Promise((r) => c.stdout.on("data", (d) => String(d).includes("READY") && r())),
  20000,
  "node C starts",
);
const ok = await report(clients, sent, before, (node) => node === "C");
for (const cl of clients) cl.s.close();
sender.close();
c.kill("SIGKILL");
process.exit(ok ? 0 : 1);
