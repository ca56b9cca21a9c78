// The client side of the Redis outage test: clients on nodes A and B; A0 asks node A for a
// broadcast every 100 ms for --ms milliseconds. Prints one JSON line: when each broadcast was
// asked for and when each client got it, and every disconnection seen.
// Usage: node outage.mjs --a URL --b URL --ms 12000
import { io as connect } from "socket.io-client";

const arg = (name) => process.argv[process.argv.indexOf(`--${name}`) + 1];
const DURATION = Number(arg("ms"));
const clients = { A0: arg("a"), A1: arg("a"), B0: arg("b"), B1: arg("b") };
const sockets = {};
const received = {}; // client -> tag -> time
const disconnects = [];

for (const [name, url] of Object.entries(clients)) {
  const s = connect(url, {
    transports: [name.endsWith("1") ? "polling" : "websocket"],
    auth: { name, rooms: [] },
    reconnection: false,
    forceNew: true,
  });
  received[name] = {};
  s.on("msg", (m) => (received[name][m.tag] = Date.now()));
  s.on("disconnect", (reason) => disconnects.push({ name, reason, at: Date.now() }));
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  sockets[name] = s;
}

const sent = {};
const end = Date.now() + DURATION;
for (let i = 0; Date.now() < end; i++) {
  const tag = `t${i}`;
  sent[tag] = Date.now();
  sockets.A0.emit("broadcast", { tag }, () => {});
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, 1000));
console.log(JSON.stringify({ sent, received, disconnects }));
for (const s of Object.values(sockets)) s.close();
process.exit(0);
