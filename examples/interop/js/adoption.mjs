// A dead owner's POST is adopted: polling-only clients and a polling-only sender, all with
// their sessions on node A, reach the cluster through a round-robin proxy that sends each
// session's requests to B or C (as a load balancer without sticky sessions does), so B and C
// forward them to A. A is SIGKILLed mid-stream: the POSTs the sender had on their way are run
// by the node that got them (nothing it sent is lost), the clients reconnect (the proxy skips
// the dead node, as nginx does on a refused connection) and recover on B or C, and every
// broadcast reaches every client exactly once, in order. A is killed between two POSTs of
// the sender, which goes on once Redis has noticed: a POST that reached A as it died may have
// run there or not, the one case adoption leaves out.
// Usage: node adoption.mjs --a URL --b URL --c URL --kill PID [--clients N] [--count N]
// Prints `COUNTS {json}`; exits 1 when a client was not recovered or a broadcast was lost or
// delivered twice.
import http from "node:http";
import { io as connect } from "socket.io-client";
import { client, received, report } from "./recovery-report.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B, C] = [arg("a"), arg("b"), arg("c")].map((u) => new URL(u));
const KILL = Number(arg("kill"));
const CLIENTS = Number(arg("clients", "6"));
const COUNT = Number(arg("count", "200"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Handshakes go to A while it is up (so that A owns every session), the requests of a session
// round robin to B and C. A request that finds its node refusing connections goes to the next
// one; one that reached a node that died gets a 502, as from nginx (a POST is not sent twice).
let turn = 0;
// Until then, a poll's "Session ID unknown" is held back, as a slow network would: the sender
// then POSTs to its dead owner's session for a while, as a client whose poll waits elsewhere
// does.
let holdUntil = 0;
const proxy = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const edges = turn++ % 2 ? [C, B] : [B, C];
    const nodes = req.url.includes("sid=") ? edges : [A, ...edges];
    const attempt = (k) => {
      const node = nodes[k];
      if (!node) return void res.writeHead(502).end();
      const up = http.request(
        { host: node.hostname, port: node.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          const relay = () => {
            res.writeHead(answer.statusCode, answer.headers);
            answer.pipe(res);
          };
          const held = holdUntil - Date.now();
          if (req.method === "GET" && answer.statusCode === 400 && held > 0) setTimeout(relay, held);
          else relay();
        },
      );
      up.on("error", (err) => (err.code === "ECONNREFUSED" ? attempt(k + 1) : res.destroy()));
      up.end(Buffer.concat(chunks));
    };
    attempt(0);
  });
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const PROXY = `http://127.0.0.1:${proxy.address().port}`;

const polling = { transports: ["polling"] };
const clients = Array.from({ length: CLIENTS }, (_, i) => client(PROXY, i, PROXY, polling));
const sender = connect(PROXY, { ...polling, forceNew: true, auth: { name: "sender" } });
const connected = (s) => new Promise((r) => (s.connected ? r() : s.once("connect", r)));
await Promise.race([
  Promise.all([...clients.map((c) => connected(c.s)), connected(sender)]),
  sleep(5000).then(() => Promise.reject(new Error("timeout: clients connect"))),
]);
const before = await Promise.all(clients.map((c) => c.s.timeout(3000).emitWithAck("whoami", {})));
const owner = await sender.timeout(3000).emitWithAck("whoami", {});
if (owner.node !== "A" || before.some((w) => w.node !== "A")) throw new Error("sessions not on A");

// Waits (at most 5 s) until no client has a POST on its way or packets waiting for one.
async function idle(sockets) {
  const deadline = Date.now() + 5000;
  const busy = (s) => !s.io.engine.transport.writable || s.io.engine.writeBuffer.length > 0;
  while (sockets.some(busy)) {
    if (Date.now() > deadline) throw new Error("the clients kept posting for 5 s");
    await sleep(1);
  }
}

let sent = 0;
const killAt = Math.floor(COUNT / 3);
for (let tag = 0; tag < COUNT; tag++) {
  if (tag === killAt) {
    await received(clients, 1);
    // Between two POSTs: a POST that had reached A when it died may have run there or not,
    // so it is not adopted (see the book); the ones sent after the kill are what this tests.
    await idle([sender, ...clients.map((c) => c.s)]);
    holdUntil = Date.now() + 1000;
    process.kill(KILL, "SIGKILL");
    // Until Redis has dropped A's connection: a POST published to A before that reaches a
    // dying node, the same case as one on its way when A died.
    await sleep(200);
  }
  // One event per POST: when its poll fails, engine.io-client drops what it buffered for its
  // next POST, which no server ever sees. What the sender has sent is what this tests.
  if (sender.connected) await idle([sender]);
  // No ack: an adopted POST's acks are not sent (see the book), the events are what counts.
  sender.emit("broadcast-room", { room: "r", tag });
  sent++;
  await sleep(10);
}
const ok = await report(clients, sent, before, (node) => node !== "A");
for (const c of clients) c.s.close();
sender.close();
proxy.close();
process.exit(ok ? 0 : 1);
