// The Node reference node of the mixed-cluster tests: socket.io 4.8 + @socket.io/redis-adapter
// 8.3 (`createAdapter`, or `createShardedAdapter` with ADAPTER=sharded) or
// @socket.io/redis-streams-adapter 0.3 (ADAPTER=streams), implementing the same contract as
// `interop-server` (docs: ../README.md). Environment: PORT, REDIS_URL (may be rediss://, and
// rediss+cluster://), REDIS_CA (a PEM file: the CA of a rediss:// server, trusted besides Node's
// roots), ADAPTER, NODE_NAME, KEY, REQUESTS_TIMEOUT, CSR (1: connectionStateRecovery with a 60 s
// maxDisconnectionDuration).
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { rootCertificates } from "node:tls";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createAdapter as createStreamsAdapter } from "@socket.io/redis-streams-adapter";
import { createClient, createCluster } from "redis";

const PORT = Number(process.env.PORT ?? 3001);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6390";
const NODE_NAME = process.env.NODE_NAME ?? `node-${PORT}`;
const KEY = process.env.KEY ?? "socket.io";
const REQUESTS_TIMEOUT = Number(process.env.REQUESTS_TIMEOUT ?? 3000);
const ADAPTER = process.env.ADAPTER ?? "classic";
const CSR = process.env.CSR === "1";
const BIN = Buffer.from([0, 1, 2, 3, 0xfd, 0xfe, 0xff]);

// node-redis's `ca` replaces Node's roots: both are given, as sio trusts REDIS_CA besides the
// system's. node-redis turns TLS on for rediss:// and ignores this otherwise.
const tls = process.env.REDIS_CA
  ? { ca: [...rootCertificates, readFileSync(process.env.REDIS_CA, "utf8")] }
  : {};
// `redis[s]+cluster://[user:password@]host:port,host:port` (sio's URL for a Redis Cluster)
// means a cluster client.
const cluster = REDIS_URL.match(/^(rediss?)\+cluster:\/\/(?:(.*)@)?(.*)$/);
const credentials = (userinfo) => {
  if (!userinfo) return {};
  const [username, password] = userinfo.split(":").map(decodeURIComponent);
  return { ...(username ? { username } : {}), password };
};
const pub = cluster
  ? createCluster({
      rootNodes: cluster[3].split(",").map((host) => ({ url: `${cluster[1]}://${host}` })),
      defaults: {
        ...credentials(cluster[2]),
        socket: { ...tls, ...(cluster[1] === "rediss" ? { tls: true } : {}) },
      },
    })
  : createClient({ url: REDIS_URL, socket: { ...tls } });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const health = { node: NODE_NAME, adapter: ADAPTER, ready: true };
const http = createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(health));
  }
});
const adapters = {
  classic: () => createAdapter(pub, sub, { key: KEY, requestsTimeout: REQUESTS_TIMEOUT }),
  sharded: () => createShardedAdapter(pub, sub, { channelPrefix: KEY, subscriptionMode: "dynamic" }),
  streams: () => createStreamsAdapter(pub, { streamName: KEY, channelPrefix: KEY }),
};
const io = new Server(http, {
  adapter: adapters[ADAPTER](),
  ...(CSR ? { connectionStateRecovery: { maxDisconnectionDuration: 60000 } } : {}),
});

const list = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const sseLog = new Map();

function target(socket, req) {
  let ops = io.of(req.nsp ?? socket.nsp.name);
  if (req.exceptSelf) ops = ops.except(socket.id);
  return ops.in(list(req.rooms)).except(list(req.except));
}

function setup(nsp) {
  nsp.on("connection", (socket) => {
    const auth = socket.handshake.auth ?? {};
    const name = auth.name ?? socket.handshake.query.name ?? "";
    const rooms = auth.rooms ?? String(socket.handshake.query.rooms ?? "").split(",").filter(Boolean);
    // A recovered socket got its rooms and data back (from another node, maybe).
    if (!socket.recovered) {
      socket.join(list(rooms));
      socket.data = { name, node: NODE_NAME };
    }

    socket.on("broadcast", (req, ack) => {
      let ops = target(socket, req);
      if (req.volatile) ops = ops.volatile;
      if (req.local) ops = ops.local;
      const body = { tag: req.tag, from: NODE_NAME };
      if (req.payload !== undefined) body.payload = req.payload;
      if (req.binary) body.bin = BIN;
      if (req.repeat) {
        for (let seq = 0; seq < Math.min(req.repeat, 1000); seq++) ops.emit("msg", { ...body, seq });
      } else {
        ops.emit("msg", body);
      }
      ack({ ok: true, node: NODE_NAME });
    });
    socket.on("broadcast-room", (req, ack) => {
      socket.nsp.to(req.room).emit("msg", { tag: req.tag, from: NODE_NAME });
      ack({ ok: true, node: NODE_NAME });
    });
    socket.on("broadcast-with-ack", (req, ack) => {
      target(socket, req)
        .timeout(req.timeoutMs ?? 2000)
        .emit("ack-req", { tag: req.tag, from: NODE_NAME }, (err, responses) => {
          ack({ ok: !err, error: err ? err.message : null, responses });
        });
    });
    socket.on("fetch", async (req, ack) => {
      const started = Date.now();
      try {
        let ops = target(socket, req);
        if (req.timeoutMs) ops = ops.timeout(req.timeoutMs);
        const sockets = await ops.fetchSockets();
        ack({
          ok: true,
          count: sockets.length,
          ms: Date.now() - started,
          sockets: sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].sort(), data: s.data })),
        });
      } catch (err) {
        ack({ ok: false, error: err.message, ms: Date.now() - started });
      }
    });
    socket.on("sockets-join", (req, ack) => {
      target(socket, req).socketsJoin(list(req.join));
      ack({ ok: true });
    });
    socket.on("sockets-leave", (req, ack) => {
      target(socket, req).socketsLeave(list(req.leave));
      ack({ ok: true });
    });
    socket.on("disconnect-sockets", (req, ack) => {
      ack({ ok: true });
      target(socket, req).disconnectSockets(Boolean(req.close));
    });
    socket.on("server-side-emit", async (req, ack) => {
      const ns = io.of(req.nsp ?? socket.nsp.name);
      const body = { tag: req.tag, from: NODE_NAME };
      if (!req.withAck) {
        ns.serverSideEmit("sse", body);
        return ack({ ok: true });
      }
      try {
        const responses = await ns.serverSideEmitWithAck("sse", body);
        ack({ ok: true, error: null, responses });
      } catch (err) {
        ack({ ok: false, error: err.message, responses: [] });
      }
    });
    socket.on("sse-log", (req, ack) => {
      const entries = sseLog.get(req.tag) ?? [];
      ack({ node: NODE_NAME, count: entries.length, entries });
    });
    socket.on("server-count", async (_req, ack) => {
      ack({ ok: true, count: await io.of("/").adapter.serverCount() });
    });
    socket.on("whoami", (_req, ack) => {
      ack({
        id: socket.id,
        node: NODE_NAME,
        nsp: socket.nsp.name,
        rooms: [...socket.rooms].sort(),
        data: socket.data,
        recovered: socket.recovered,
      });
    });
  });
  nsp.on("sse", (payload, cb) => {
    if (!sseLog.has(payload.tag)) sseLog.set(payload.tag, []);
    sseLog.get(payload.tag).push({ nsp: nsp.name, payload });
    if (typeof cb === "function") cb({ node: NODE_NAME, tag: payload.tag });
  });
}

setup(io.of("/"));
setup(io.of("/other"));

http.listen(PORT, "127.0.0.1", () => console.log(`READY ${JSON.stringify(health)}`));
process.on("SIGTERM", () => {
  io.close();
  Promise.all([pub.quit(), sub.quit()]).finally(() => process.exit(0));
});
