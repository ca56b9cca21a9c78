// Chat clients (Node socket.io-client) behind a load balancer while the nodes behind it restart
// one by one: every message any client sends must reach every other client exactly
// once, in the order its sender sent it.
//
// usage: node rolling.mjs LB_URL CLIENTS INTERVAL_MS
//
// Driven over stdio by examples/chat/tests/rolling_restart.rs: prints `READY` once every client
// is in the room, keeps chatting until it reads `STOP` on stdin, then waits for the last acks and
// deliveries and prints `COUNTS {json}`.
//
// Clients connect with connection state recovery (a socket that reconnects to any node gets its
// session, rooms and missed messages back) and `retries` (a message whose ack does not come,
// because its node went away, is sent again; the chat's `cid` makes the repeat harmless).
// Half the clients stay on long-polling, half upgrade to WebSocket. Each client connects from a
// loopback address of its own (127.0.<i>.1), so that a balancer that pins by address (nginx's
// ip_hash) spreads them over the nodes.
import http from "node:http";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [lb, clientCount, intervalArg] = process.argv.slice(2);
if (!lb || !clientCount || !intervalArg) {
  console.error("usage: node rolling.mjs LB_URL CLIENTS INTERVAL_MS");
  process.exit(2);
}
const N = Number(clientCount);
const INTERVAL_MS = Number(intervalArg);
const ROOM = "rolling";

setTimeout(() => {
  console.error("FAIL: the rolling script ran for more than 240 s");
  process.exit(1);
}, 240_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const clients = [];

function client(i) {
  const name = `c${i}`;
  const localAddress = `127.0.${i + 1}.1`;
  const socket = io(lb, {
    transports: i % 2 === 0 ? ["polling"] : ["polling", "websocket"],
    agent: new http.Agent({ keepAlive: true, localAddress }),
    localAddress,
    auth: { name },
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    retries: 20,
    ackTimeout: 2000,
  });
  const c = {
    name,
    socket,
    joined: false,
    // Messages this client sent (its cids are 1..sent) and those acked.
    sent: 0,
    acked: new Set(),
    failed: 0,
    // sender -> cids in the order they came
    received: new Map(),
    welcomes: 0,
    recovered: 0,
    fresh: 0,
    nodes: new Set(),
  };
  socket.on("welcome", (w) => {
    c.welcomes += 1;
    c.nodes.add(w.node);
    if (c.welcomes > 1) {
      if (w.recovered) c.recovered += 1;
      else c.fresh += 1;
    }
    if (w.rooms.includes(ROOM)) {
      c.joined = true;
      return;
    }
    // A first connection, or a session that was not recovered: join (again). Messages sent
    // while this client was away are lost to it, and counted so below.
    join(c);
  });
  socket.on("msg", (m) => {
    if (m.room !== ROOM || typeof m.cid !== "number") return;
    let list = c.received.get(m.from);
    if (!list) c.received.set(m.from, (list = []));
    list.push(m.cid);
  });
  socket.on("connect_error", (err) => {
    if (err.message !== "xhr poll error" && err.message !== "websocket error") {
      console.error(`${name}: connect_error ${err.message}`);
    }
  });
  return c;
}

/** Joins the room, again after a refusal (a node busy with a hundred joins may answer that the
 * cluster did not answer in time), as a user would click again. */
function join(c) {
  c.socket.emit("join", ROOM, (err, res) => {
    if (!err && res && res.room === ROOM) c.joined = true;
    else setTimeout(() => join(c), 500);
  });
}

function send(c) {
  const cid = ++c.sent;
  c.socket.emit("msg", { room: ROOM, text: `${c.name} #${cid}`, cid }, (err, res) => {
    if (err || !res || res.error) {
      c.failed += 1;
      console.error(`${c.name}: message ${cid} failed: ${err ? err.message : JSON.stringify(res)}`);
    } else {
      c.acked.add(cid);
    }
  });
}

/** What every client got, against what every other client sent and had acked. */
function counts() {
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let expected = 0;
  let delivered = 0;
  let lost = 0;
  let duplicated = 0;
  let reordered = 0;
  let recovered = 0;
  let fresh = 0;
  for (const c of clients) {
    sent += c.sent;
    acked += c.acked.size;
    failed += c.failed;
    recovered += c.recovered;
    fresh += c.fresh;
  }
  for (const receiver of clients) {
    for (const sender of clients) {
      if (sender === receiver) continue;
      const got = receiver.received.get(sender.name) || [];
      delivered += got.length;
      expected += sender.acked.size;
      const seen = new Set();
      let last = 0;
      for (const cid of got) {
        if (seen.has(cid)) duplicated += 1;
        else if (cid < last) reordered += 1;
        seen.add(cid);
        last = Math.max(last, cid);
      }
      for (const cid of sender.acked) if (!seen.has(cid)) lost += 1;
    }
  }
  const nodes = new Set(clients.flatMap((c) => [...c.nodes]));
  return { clients: clients.length, sent, acked, failed, expected, delivered, lost, duplicated, reordered, recovered, fresh, nodes: nodes.size };
}

for (let i = 0; i < N; i++) {
  clients.push(client(i));
  // Spread the joins: each one lists the room's users on every node and tells every client,
  // so a hundred at once is a test of that fan-out, not of a restart.
  await sleep(100);
}
try {
  await until("every client in the room", () => clients.every((c) => c.joined), 90_000);
} catch (err) {
  console.error(`FAIL: ${err.message}: ${clients.filter((c) => !c.joined).length} not in the room`);
  process.exit(1);
}
console.log("READY");

let stopping = false;
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "STOP") stopping = true;
});

// Each client sends every INTERVAL_MS, the clients' turns spread over the interval.
const timers = clients.map((c, i) =>
  setTimeout(function tick() {
    if (stopping) return;
    send(c);
    timers[i] = setTimeout(tick, INTERVAL_MS);
  }, (INTERVAL_MS * i) / N),
);

await until("STOP", () => stopping, 200_000).catch((err) => {
  console.error(`FAIL: ${err.message}`);
  process.exit(1);
});
timers.forEach(clearTimeout);
// Every message gets its ack (or its failure) within the retries...
await until("the last acks", () => clients.every((c) => c.acked.size + c.failed === c.sent), 60_000).catch(
  (err) => console.error(err.message),
);
// ...and then every acked message its receivers, or it is lost.
await until(
  "the last deliveries",
  () => {
    const n = counts();
    return n.delivered - n.duplicated >= n.expected;
  },
  15_000,
).catch(() => {});
console.log(`COUNTS ${JSON.stringify(counts())}`);
for (const c of clients) c.socket.close();
process.exit(0);
