// Delivery latency across a two-node cluster: --clients sockets split over nodes A and B, one
// extra socket on A asks for --rate broadcasts per second for --seconds; every client notes
// how long each broadcast took to reach it. Prints p50/p99/max in ms and the delivery count.
// Usage: node latency.mjs --a URL --b URL [--clients 1000] [--rate 20] [--seconds 10]
import { io as connect } from "socket.io-client";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [A, B] = [arg("a"), arg("b")];
const CLIENTS = Number(arg("clients", 1000));
const RATE = Number(arg("rate", 20));
const SECONDS = Number(arg("seconds", 10));

const latencies = [];
const sockets = [];
const open = (url) =>
  new Promise((resolve, reject) => {
    const s = connect(url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { name: "l", rooms: [] } });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
    sockets.push(s);
  });

for (let i = 0; i < CLIENTS; i += 50) {
  const batch = [];
  for (let j = i; j < Math.min(i + 50, CLIENTS); j++) batch.push(open(j % 2 ? B : A));
  for (const s of await Promise.all(batch)) {
    s.on("msg", (m) => {
      if (m.payload?.t) latencies.push(Date.now() - m.payload.t);
    });
  }
}
const sender = await open(A);
const total = RATE * SECONDS;
for (let i = 0; i < total; i++) {
  sender.emit("broadcast", { tag: "lat", payload: { t: Date.now() }, exceptSelf: true }, () => {});
  await new Promise((r) => setTimeout(r, 1000 / RATE));
}
await new Promise((r) => setTimeout(r, 2000));
latencies.sort((x, y) => x - y);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))];
console.log(JSON.stringify({ clients: CLIENTS, rate: RATE, seconds: SECONDS, expected: total * CLIENTS, delivered: latencies.length, p50: pct(50), p99: pct(99), max: latencies.at(-1) }));
for (const s of sockets) s.close();
process.exit(0);
