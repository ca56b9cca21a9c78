// Chat clients (Node socket.io-client) behind nginx (ip_hash) in front of several chat nodes that
// share a Redis: every client sees every other client's messages, whichever node each is on and
// whichever transport it uses; then one node is killed, its clients reconnect through nginx to
// another node, join their room again, and the chat goes on.
//
// usage: node cluster.mjs LB_URL NAME=PID,NAME=PID,... MESSAGES_PER_CLIENT
//
// nginx's ip_hash pins by the first three bytes of the client's IPv4 address, so on one machine
// every client would land on one node. Each client therefore connects from its own loopback
// address (127.0.N.1, all on `lo`), chosen by asking /health through nginx which node an address
// lands on.
import http from "node:http";
import { io } from "socket.io-client";

const [lb, nodeList, perClient] = process.argv.slice(2);
if (!lb || !nodeList || !perClient) {
  console.error("usage: node cluster.mjs LB_URL NAME=PID,... MESSAGES_PER_CLIENT");
  process.exit(2);
}
const K = Number(perClient);
const pids = new Map(nodeList.split(",").map((kv) => kv.split("=")).map(([n, p]) => [n, Number(p)]));
const ROOM = "cluster";
const KINDS = { polling: ["polling"], websocket: ["websocket"], upgrade: ["polling", "websocket"] };

setTimeout(() => {
  console.error("FAIL: the cluster test took more than 100 s");
  process.exit(1);
}, 100_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The node that nginx sends a request from `localAddress` to. */
function nodeFor(localAddress) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${lb}/health`, { localAddress, agent: false, timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(body).node);
        } catch (err) {
          reject(new Error(`/health answered ${res.statusCode} ${body}`));
        }
      });
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("/health timed out")));
  });
}

const clients = [];

function client(name, kind, localAddress) {
  // The agent carries the source address for polling (XHR) and WebSocket requests alike.
  const agent = new http.Agent({ keepAlive: true, localAddress });
  const socket = io(lb, {
    transports: KINDS[kind],
    agent,
    localAddress,
    auth: { name },
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
  });
  const c = { name, kind, localAddress, socket, node: null, nodes: [], joined: false, received: new Map(), welcomes: 0 };
  socket.on("welcome", async (w) => {
    c.welcomes += 1;
    c.node = w.node;
    c.nodes.push(w.node);
    c.recovered = w.recovered;
    if (w.rooms.includes(ROOM)) {
      c.joined = true;
      return;
    }
    // A new session (first connection, or another node after a crash): join the room again.
    c.joined = false;
    const res = await socket.timeout(5000).emitWithAck("join", ROOM).catch((err) => ({ error: err.message }));
    if (res.error) console.log(`${name}: join failed: ${res.error}`);
    else c.joined = true;
  });
  socket.on("disconnect", (reason) => {
    c.joined = false;
    c.lastDisconnect = reason;
  });
  socket.on("msg", (m) => {
    const phase = m.text.split(" ")[0];
    if (!c.received.has(phase)) c.received.set(phase, new Set());
    c.received.get(phase).add(m.text);
  });
  clients.push(c);
  return c;
}

/** Every client sends K messages; each must get every other client's. */
async function phase(label) {
  const sent = [];
  for (const c of clients) {
    for (let i = 0; i < K; i++) {
      sent.push(
        c.socket
          .timeout(5000)
          .emitWithAck("msg", { room: ROOM, text: `${label} ${c.name} ${i}` })
          .then((res) => !res.error)
          .catch(() => false),
      );
    }
  }
  const acked = (await Promise.all(sent)).filter(Boolean).length;
  const expected = (clients.length - 1) * K;
  const got = () => clients.reduce((n, c) => n + (c.received.get(label)?.size ?? 0), 0);
  try {
    await until(`every client to get ${expected} ${label} messages`, () =>
      clients.every((c) => (c.received.get(label)?.size ?? 0) === expected),
    );
  } finally {
    console.log(
      `${label}: ${clients.length} clients sent ${sent.length} messages, ${acked} acked (delivered), ` +
        `${got()} of ${clients.length * expected} received`,
    );
  }
  if (acked !== sent.length) throw new Error(`${label}: ${sent.length - acked} messages not acked`);
}

let failed = false;
try {
  // 1. One loopback address per node.
  const addressOf = new Map();
  for (let n = 1; n <= 100 && addressOf.size < pids.size; n++) {
    const addr = `127.0.${n}.1`;
    const node = await nodeFor(addr);
    if (!addressOf.has(node)) addressOf.set(node, addr);
  }
  if (addressOf.size < pids.size) throw new Error(`ip_hash reached only ${[...addressOf.keys()]}`);
  console.log(`addresses: ${[...addressOf].map(([n, a]) => `${a} -> ${n}`).join(", ")}`);

  // 2. On each node, a client per transport: polling only, WebSocket only, polling then upgrade.
  for (const [node, addr] of addressOf) {
    for (const kind of Object.keys(KINDS)) client(`${kind}@${node}`, kind, addr);
  }
  await until("every client to join the room", () => clients.every((c) => c.joined));
  for (const c of clients) {
    const expected = c.name.split("@")[1];
    if (c.node !== expected) throw new Error(`${c.name} landed on ${c.node}`);
  }
  const users = await clients[0].socket.timeout(5000).emitWithAck("users", ROOM);
  if (users.length !== clients.length) throw new Error(`the room lists ${users.length} users`);
  console.log(`ok - ${clients.length} clients in #${ROOM} on ${addressOf.size} nodes (the room lists ${users.length} users)`);

  // 3. Messages across nodes and transports.
  await phase("p1");
  console.log("ok - every client got every other client's messages");
  const transports = clients.map((c) => `${c.name}=${c.socket.io.engine?.transport?.name}`);
  console.log(`transports: ${transports.join(", ")}`);
  for (const c of clients) {
    const expected = c.kind === "polling" ? "polling" : "websocket";
    if (c.socket.io.engine.transport.name !== expected) throw new Error(`${c.name} is on ${c.socket.io.engine.transport.name}`);
  }

  // 4. A node dies; its clients come back through nginx on another node.
  const [victim] = addressOf.keys();
  const moved = clients.filter((c) => c.node === victim);
  const welcomesBefore = new Map(moved.map((c) => [c, c.welcomes]));
  process.kill(pids.get(victim), "SIGKILL");
  console.log(`killed ${victim} (pid ${pids.get(victim)}), which had ${moved.length} clients`);
  const started = Date.now();
  await until(
    `the clients of ${victim} to reconnect elsewhere`,
    () => moved.every((c) => c.welcomes > welcomesBefore.get(c) && c.node !== victim && c.joined),
    30_000,
  );
  for (const c of moved) {
    console.log(`  ${c.name}: lost (${c.lastDisconnect}), now on ${c.node}, recovered: ${c.recovered}`);
  }
  console.log(`ok - the ${moved.length} clients of ${victim} reconnected in ${Date.now() - started} ms and rejoined #${ROOM}`);
  await until("every client to be in the room", () => clients.every((c) => c.joined && c.socket.connected));

  // 5. The chat goes on.
  await phase("p2");
  console.log("ok - after the crash every client still gets every other client's messages");
  console.log("cluster: all checks ok");
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err.stack || err}`);
  for (const c of clients) {
    console.error(`  ${c.name}: node ${c.node}, connected ${c.socket.connected}, joined ${c.joined}, ` +
      `received ${[...c.received].map(([p, s]) => `${p}=${s.size}`).join(" ")}`);
  }
} finally {
  for (const c of clients) c.socket.disconnect();
  process.exit(failed ? 1 : 0);
}
