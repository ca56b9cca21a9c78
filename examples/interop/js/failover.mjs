// Connection state recovery across nodes: clients on node A (in room "r", with socket.data set
// by A) while a client on B keeps broadcasting to "r"; A is SIGKILLed mid-broadcast and the
// clients reconnect to B or C (their manager is pointed at another URL), where they must be
// recovered with the same id, rooms and data, and receive every broadcast exactly once, in order.
// Usage: node failover.mjs --a URL --b URL --c URL --kill PID [--clients N] [--count N]
// Prints `COUNTS {json}`; exits 1 when a client was not recovered or a broadcast was lost or
// delivered twice.
import { io as connect } from "socket.io-client";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B, C] = [arg("a"), arg("b"), arg("c")];
const KILL = Number(arg("kill"));
const CLIENTS = Number(arg("clients", "6"));
const COUNT = Number(arg("count", "200"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const within = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`timeout: ${what}`)))]);

function client(i) {
  const s = connect(A, {
    transports: ["websocket"],
    auth: { name: `c${i}`, rooms: ["r"] },
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
  });
  const c = { s, got: [], firstId: null, reconnects: 0 };
  s.on("msg", (m) => c.got.push(m.tag));
  // The next attempt goes to a survivor: B for even clients, C for odd ones.
  s.on("disconnect", () => {
    s.io.uri = i % 2 ? C : B;
  });
  return c;
}

const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
await within(
  Promise.all(clients.map((c) => new Promise((r) => (c.s.connected ? r() : c.s.once("connect", r))))),
  5000,
  "clients connect to A",
);
for (const c of clients) c.firstId = c.s.id;
const before = await Promise.all(clients.map((c) => c.s.timeout(3000).emitWithAck("whoami")));

const sender = connect(B, { transports: ["websocket"], forceNew: true, auth: { name: "sender" } });
await within(new Promise((r) => sender.once("connect", r)), 5000, "sender connects to B");
await sleep(300);

let sent = 0;
const killAt = Math.floor(COUNT / 3);
for (let tag = 0; tag < COUNT; tag++) {
  if (tag === killAt) process.kill(KILL, "SIGKILL");
  try {
    await sender.timeout(3000).emitWithAck("broadcast-room", { room: "r", tag });
    sent++;
  } catch {
    console.log(`broadcast ${tag} not acknowledged`);
  }
  await sleep(10);
}
// Every client back and every broadcast arrived (or a bounded wait).
const deadline = Date.now() + 10000;
while (Date.now() < deadline && clients.some((c) => !c.s.connected || c.got.length < sent)) {
  await sleep(50);
}
await sleep(300);

const after = await Promise.all(
  clients.map((c) => c.s.timeout(3000).emitWithAck("whoami").catch(() => null)),
);
const counts = { sent, delivered: 0, lost: 0, duplicated: 0, reordered: 0, recovered: 0, clients: CLIENTS };
const problems = [];
clients.forEach((c, i) => {
  const seen = new Set(c.got);
  counts.delivered += c.got.length;
  counts.duplicated += c.got.length - seen.size;
  for (let t = 0; t < sent; t++) if (!seen.has(t)) counts.lost++;
  for (let k = 1; k < c.got.length; k++) if (c.got[k] < c.got[k - 1]) counts.reordered++;
  const w = after[i];
  const same =
    c.s.recovered &&
    c.s.id === c.firstId &&
    w &&
    w.node !== "A" &&
    JSON.stringify(w.rooms) === JSON.stringify(before[i].rooms) &&
    JSON.stringify(w.data) === JSON.stringify(before[i].data);
  if (same) counts.recovered++;
  else problems.push(`c${i}: recovered=${c.s.recovered} id ${c.firstId}->${c.s.id} now ${JSON.stringify(w)} was ${JSON.stringify(before[i])}`);
});
console.log(`COUNTS ${JSON.stringify(counts)}`);
for (const p of problems) console.log(p);
for (const c of clients) c.s.close();
sender.close();
const ok = counts.lost === 0 && counts.duplicated === 0 && counts.reordered === 0 && counts.recovered === CLIENTS;
process.exit(ok ? 0 : 1);
