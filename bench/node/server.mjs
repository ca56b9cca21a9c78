// The bench-server contract (shared/protocol/bench-server.md) on Node socket.io 4.8, the same
// events as sio's examples/bench: namespaces `/` and `/custom`, each with
// - `echo` (with an ack): acknowledged with the payload unchanged;
// - `broadcast`: `bcast` with the payload to every socket of the namespace, sender included;
// - `join` (with an ack): joins the room named by the argument, acknowledged with its name;
// - `room` ({room, data}): `bcast` with `data` to every socket in that room.
// PORT (default 3000) picks the port on 127.0.0.1. Library defaults otherwise; Node's http
// server sets TCP_NODELAY by default. REDIS_URL (set and non-empty): @socket.io/redis-adapter on
// node-redis clients, so that `broadcast` and `room` reach every node; unset: in memory.
// Nothing is logged per message. Exits on SIGTERM.
import { createServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const port = Number(process.env.PORT || 3000);
const httpServer = createServer();
const io = new Server(httpServer);
if (process.env.REDIS_URL) {
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  // Both connected before listening: a node that is not subscribed yet would miss broadcasts.
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

function serve(nsp) {
  nsp.on("connection", (socket) => {
    socket.on("echo", (payload, ack) => {
      if (typeof ack === "function") ack(payload);
    });
    socket.on("broadcast", (payload) => {
      nsp.emit("bcast", payload);
    });
    socket.on("join", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack(room);
    });
    socket.on("room", (msg) => {
      if (msg && typeof msg.room === "string") nsp.to(msg.room).emit("bcast", msg.data);
    });
  });
}

serve(io.of("/"));
serve(io.of("/custom"));

httpServer.listen(port, "127.0.0.1");
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
