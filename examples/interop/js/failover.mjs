// Connection state recovery across nodes: clients on node A (in room "r", with socket.data set
// by A) while a client on B keeps broadcasting to "r"; A is SIGKILLed mid-broadcast and the
// clients reconnect to B or C (their manager is pointed at another URL), where they must be
// recovered with the same id, rooms and data, and receive every broadcast exactly once, in order.
// With --drop instead of --kill, A stays up and the clients drop their connections (a node that
// keeps its sessions only at disconnection time, as Node's streams adapter, is tested so).
// --lenient NAME: broadcasts lost by clients recovered on that (Node) node are counted apart
// (see recovery-report.mjs).
// Usage: node failover.mjs --a URL --b URL --c URL (--kill PID | --drop) [--lenient NAME]
//        [--clients N] [--count N]
// Prints `COUNTS {json}`; exits 1 when a client was not recovered or a broadcast was lost or
// delivered twice.
import { client, received, report, start } from "./recovery-report.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B, C] = [arg("a"), arg("b"), arg("c")];
const KILL = Number(arg("kill"));
const DROP = process.argv.includes("--drop");
const CLIENTS = Number(arg("clients", "6"));
const COUNT = Number(arg("count", "200"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The next attempt goes to a survivor: B for even clients, C for odd ones.
const clients = Array.from({ length: CLIENTS }, (_, i) => client(A, i, i % 2 ? C : B));
const { before, sender } = await start(clients, B);
await sleep(300);

let sent = 0;
const killAt = Math.floor(COUNT / 3);
for (let tag = 0; tag < COUNT; tag++) {
  if (tag === killAt) {
    await received(clients, 1);
    if (DROP) for (const c of clients) c.s.io.engine.close();
    else process.kill(KILL, "SIGKILL");
  }
  try {
    await sender.timeout(3000).emitWithAck("broadcast-room", { room: "r", tag });
    sent++;
  } catch {
    console.log(`broadcast ${tag} not acknowledged`);
  }
  await sleep(10);
}
const ok = await report(clients, sent, before, (node) => node !== "A", arg("lenient"));
for (const c of clients) c.s.close();
sender.close();
process.exit(ok ? 0 : 1);
