// Connection state recovery on a node that logged the cluster's broadcasts in another order
// than the node the client left: clients in room "r" on node A; a sender on A and one on B
// each ask their node for a burst of COUNT broadcasts to "r", at the same time, so that A
// delivers its own burst first and B its own. Each client drops its connection after its
// `dropAt`-th broadcast (spread over both bursts) and comes back on B, with the official
// client's recovery (a new Engine.IO session, `pid` and the last offset in its auth). Each
// must be recovered there (same id, `recovered` in `whoami`) with every broadcast of both
// bursts exactly once.
// Usage: node crossed-recovery.mjs --a URL --b URL [--count N]
// Prints `COUNTS {json}`; exits 1 when a client was not recovered, or a broadcast was lost or
// delivered twice.
import { io as connect } from "socket.io-client";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B] = [arg("a"), arg("b")];
const COUNT = Number(arg("count", "300"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const within = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`timeout: ${what}`)))]);
const connected = (s) => new Promise((r) => (s.connected ? r() : s.once("connect", r)));

const DROP_AT = [1, COUNT / 2, COUNT - 1, COUNT + COUNT / 2].map(Math.floor);
const clients = DROP_AT.map((dropAt, i) => {
  const s = connect(A, {
    transports: ["websocket"],
    auth: { name: `c${i}`, rooms: ["r"] },
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
  });
  const c = { s, got: [], dropAt, dropped: false, left: null, offsetChars: 0 };
  s.on("msg", (m, offset) => {
    c.got.push(`${m.from}-${m.seq}`);
    c.offsetChars = Math.max(c.offsetChars, offset?.length ?? 0);
    if (!c.dropped && c.got.length === dropAt) {
      c.dropped = true;
      s.io.uri = B;
      // Once the events already read have been handed over (the client emits them in
      // microtasks): closing from within this handler would leave them to be emitted after
      // the reconnection, past the offset the client sent.
      setImmediate(() => {
        c.left = c.got.at(-1);
        s.io.engine.close();
      });
    }
  });
  return c;
});
await within(Promise.all(clients.map((c) => connected(c.s))), 5000, "clients connect to A");
const before = await Promise.all(clients.map((c) => c.s.timeout(3000).emitWithAck("whoami", {})));
const senders = [A, B].map((url) => connect(url, { transports: ["websocket"], forceNew: true, auth: { name: "sender" } }));
await within(Promise.all(senders.map(connected)), 5000, "senders connect");

await Promise.all(
  senders.map((s) => s.timeout(5000).emitWithAck("broadcast", { rooms: "r", tag: "burst", repeat: COUNT })),
);
const deadline = Date.now() + 10000;
const done = (c) => c.dropped && c.s.connected && new Set(c.got).size >= 2 * COUNT;
while (Date.now() < deadline && !clients.every(done)) await sleep(50);
await sleep(300);

const after = await Promise.all(clients.map((c) => c.s.timeout(3000).emitWithAck("whoami", {}).catch(() => null)));
const counts = {
  sent: 2 * COUNT,
  clients: clients.length,
  delivered: 0,
  lost: 0,
  duplicated: 0,
  recovered: 0,
  // The last broadcast each client got on A.
  left: clients.map((c) => c.left),
  // The longest offset a client got (the last argument of a broadcast).
  offsetChars: Math.max(...clients.map((c) => c.offsetChars)),
};
const problems = [];
clients.forEach((c, i) => {
  const seen = new Set(c.got);
  counts.delivered += c.got.length;
  counts.duplicated += c.got.length - seen.size;
  const lost = [];
  for (const from of ["A", "B"]) for (let n = 0; n < COUNT; n++) if (!seen.has(`${from}-${n}`)) lost.push(`${from}-${n}`);
  counts.lost += lost.length;
  if (lost.length) problems.push(`c${i} (dropped after ${c.dropAt}) lost ${lost.length}: ${lost.slice(0, 10).join(",")}`);
  if (c.got.length > seen.size) problems.push(`c${i} (dropped after ${c.dropAt}) got ${c.got.length - seen.size} twice`);
  const w = after[i];
  if (c.s.recovered && w?.recovered && w.id === before[i].id && w.node === "B") counts.recovered++;
  else problems.push(`c${i}: recovered=${c.s.recovered} now ${JSON.stringify(w)} was ${JSON.stringify(before[i])}`);
});
console.log(`COUNTS ${JSON.stringify(counts)}`);
for (const p of problems) console.log(p);
for (const c of clients) c.s.close();
for (const s of senders) s.close();
process.exit(counts.lost === 0 && counts.duplicated === 0 && counts.recovered === clients.length ? 0 : 1);
