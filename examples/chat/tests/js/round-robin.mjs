// Chat clients (Node socket.io-client) behind nginx with plain round-robin (no pinning) in front
// of three chat nodes: polling-only clients and upgrading clients (default transports) join a
// room and chat, a first round while the upgrades happen and a second once every upgrading
// client is on WebSocket (its upgrade tunnelled to the session's node when it lands elsewhere).
// Prints the message counts: sent, delivered, lost, duplicated.
//
// usage: node round-robin.mjs LB_URL MESSAGES_PER_CLIENT [expect-failure]
// With `expect-failure` (the nodes run FORWARDING=off) it checks that the clients cannot chat.
import { io } from "socket.io-client";

const [lb, perClient, mode] = process.argv.slice(2);
const K = Number(perClient);
const ROOM = "rr";
setTimeout(() => {
  console.error("FAIL: the round-robin test took more than 60 s");
  process.exit(1);
}, 60_000).unref();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const clients = [];
for (const kind of ["polling", "upgrade"]) {
  for (let i = 0; i < 3; i++) {
    const name = `${kind}-${i}`;
    const socket = io(lb, {
      // The upgrading clients keep socket.io-client's default transports.
      ...(kind === "polling" ? { transports: ["polling"] } : {}),
      auth: { name },
      forceNew: true,
      reconnection: false,
    });
    const c = { name, socket, joined: false, received: [], errors: [] };
    socket.on("connect_error", (err) => c.errors.push(err.message));
    socket.on("disconnect", (reason) => c.errors.push(`disconnect: ${reason}`));
    socket.on("welcome", async () => {
      const res = await socket.timeout(5000).emitWithAck("join", ROOM).catch((err) => ({ error: err.message }));
      if (!res.error) c.joined = true;
    });
    socket.on("msg", (m) => c.received.push(m.text));
    clients.push(c);
  }
}

let failed = false;
try {
  if (mode === "expect-failure") {
    try {
      await until("every client to join", () => clients.every((c) => c.joined && c.socket.connected), 8000);
      throw new Error("every client joined although forwarding is off");
    } catch (err) {
      if (err.message.includes("although")) throw err;
    }
    const errors = clients.flatMap((c) => c.errors);
    console.log(`forwarding off: ${clients.filter((c) => c.joined).length} of ${clients.length} joined; errors: ${[...new Set(errors)].join("; ")}`);
    console.log("round-robin: forwarding off fails as expected");
  } else {
    await until("every client to join", () => clients.every((c) => c.joined), 20_000);
    const sent = [];
    const round = (label) => {
      for (const c of clients) {
        for (let i = 0; i < K; i++) {
          const text = `${c.name} ${label} ${i}`;
          sent.push(text);
          c.socket.emit("msg", { room: ROOM, text });
        }
      }
    };
    const transport = (c) => c.socket.io.engine?.transport?.name;
    const upgrading = clients.filter((c) => c.name.startsWith("upgrade"));
    round("during-upgrade");
    await until("every upgrading client to be on websocket", () => upgrading.every((c) => transport(c) === "websocket"), 20_000);
    round("on-websocket");
    const expected = (clients.length - 1) * sent.length / clients.length;
    await until("every client to get every message", () => clients.every((c) => new Set(c.received).size >= expected), 20_000).catch(() => {});
    await sleep(500); // late duplicates, if any
    let delivered = 0, duplicated = 0;
    for (const c of clients) {
      const unique = new Set(c.received);
      delivered += unique.size;
      duplicated += c.received.length - unique.size;
    }
    const lost = clients.length * expected - delivered;
    const transports = clients.map((c) => `${c.name}=${transport(c)}`).join(", ");
    const upgraded = upgrading.filter((c) => transport(c) === "websocket").length;
    console.log(`transports: ${transports}`);
    console.log(`round-robin: sent=${sent.length} delivered=${delivered} lost=${lost} duplicated=${duplicated} upgraded=${upgraded}/${upgrading.length}`);
    if (lost !== 0 || duplicated !== 0) throw new Error("messages lost or duplicated");
    if (upgraded !== upgrading.length) throw new Error("an upgrading client left WebSocket");
    const dropped = clients.filter((c) => c.errors.length > 0);
    if (dropped.length > 0) throw new Error(`clients saw errors: ${dropped.map((c) => `${c.name}: ${c.errors.join("; ")}`).join(", ")}`);
    console.log("round-robin: all checks ok");
  }
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err.stack || err}`);
  for (const c of clients) console.error(`  ${c.name}: joined ${c.joined}, received ${c.received.length}, errors ${c.errors.join("; ")}`);
} finally {
  for (const c of clients) c.socket.disconnect();
  process.exit(failed ? 1 : 0);
}
