// Drives a two-node cluster (any mix of interop-server and node-server.mjs) through real
// socket.io-client connections and checks every cluster operation across the nodes.
// Usage: node checker.mjs --a http://127.0.0.1:PA --b http://127.0.0.1:PB --redis redis://...
//        [--adapter classic|sharded|streams] [--rust-emitter PATH] [--only NAME]
// Prints one line per scenario and `N passed, M failed`; exits 1 if any failed.
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { io as connect } from "socket.io-client";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const URLS = { A: arg("a"), B: arg("b") };
const REDIS_URL = arg("redis");
// A rediss:// Redis whose CA is in REDIS_CA (as the nodes': trusted besides Node's roots). The
// Rust emitter reads REDIS_CA itself.
const REDIS_TLS = process.env.REDIS_CA
  ? { ca: [...rootCertificates, readFileSync(process.env.REDIS_CA, "utf8")] }
  : {};
const ONLY = arg("only");
// Emitters speak the classic protocol only: they cannot reach a sharded or streams cluster.
const NO_EMITTER = (arg("adapter") ?? "classic") !== "classic";
// The `emit` binary (sio_redis::Emitter): when given, the Rust emitter is checked like Node's.
const RUST_EMITTER = arg("rust-emitter");
const TIMEOUT = 3000;
const SETTLE = 300;
const BIN = [0, 1, 2, 3, 0xfd, 0xfe, 0xff];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const tag = (name) => `${name}-${process.pid}-${++seq}`;

// name -> { node, nsp, rooms }
const CLIENTS = {
  A0: { node: "A", nsp: "/", rooms: ["all", "side-A", "even", "u-A0"] },
  A1: { node: "A", nsp: "/", rooms: ["all", "side-A", "odd", "u-A1"] },
  B0: { node: "B", nsp: "/", rooms: ["all", "side-B", "even", "u-B0", "room #1 ü"] },
  B1: { node: "B", nsp: "/", rooms: ["all", "side-B", "odd", "u-B1"] },
  OA: { node: "A", nsp: "/other", rooms: ["all"] },
  OB: { node: "B", nsp: "/other", rooms: ["all"] },
};
const sockets = {};
const inbox = {}; // name -> tag -> [msg]

function open(name) {
  const c = CLIENTS[name];
  return new Promise((resolve, reject) => {
    const s = connect(URLS[c.node] + c.nsp, {
      transports: [name.endsWith("1") ? "polling" : "websocket"],
      auth: { name, rooms: c.rooms },
      reconnection: false,
      forceNew: true,
    });
    inbox[name] = {};
    s.on("msg", (m) => (inbox[name][m.tag] ??= []).push(m));
    s.on("ack-req", (m, cb) => cb({ name, tag: m.tag }));
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
    sockets[name] = s;
  });
}

const call = (name, event, req) => sockets[name].timeout(TIMEOUT + 2000).emitWithAck(event, req);

async function expectDelivery(t, expected) {
  const deadline = Date.now() + TIMEOUT;
  const done = () =>
    Object.entries(expected).every(([n, k]) => (inbox[n][t]?.length ?? 0) >= k);
  while (!done() && Date.now() < deadline) await sleep(20);
  await sleep(SETTLE);
  for (const name of Object.keys(sockets)) {
    const got = inbox[name]?.[t]?.length ?? 0;
    const want = expected[name] ?? 0;
    if (got !== want) throw new Error(`${name} got ${got} "${t}" messages, expected ${want}`);
  }
}

const assert = (cond, what) => {
  if (!cond) throw new Error(what);
};
const everyone = (k = 1) => ({ A0: k, A1: k, B0: k, B1: k });

const scenarios = {
  async "broadcast-all-from-A"() {
    const t = tag("all");
    await call("A0", "broadcast", { tag: t });
    await expectDelivery(t, everyone());
  },
  async "broadcast-all-from-B"() {
    const t = tag("all");
    await call("B1", "broadcast", { tag: t });
    await expectDelivery(t, everyone());
  },
  async "single-room"() {
    const t = tag("even");
    await call("A1", "broadcast", { tag: t, rooms: "even" });
    await expectDelivery(t, { A0: 1, B0: 1 });
  },
  async "multi-room-union"() {
    const t = tag("union");
    await call("A0", "broadcast", { tag: t, rooms: ["even", "side-B"] });
    await expectDelivery(t, { A0: 1, B0: 1, B1: 1 });
  },
  async "except"() {
    const t = tag("except");
    await call("A0", "broadcast", { tag: t, except: "odd" });
    await expectDelivery(t, { A0: 1, B0: 1 });
  },
  async "room-and-except"() {
    const t = tag("room-except");
    await call("B0", "broadcast", { tag: t, rooms: "all", except: ["side-B"] });
    await expectDelivery(t, { A0: 1, A1: 1 });
  },
  async "socket-id-room"() {
    const t = tag("sid");
    await call("A0", "broadcast", { tag: t, rooms: sockets.B1.id });
    await expectDelivery(t, { B1: 1 });
  },
  async "except-socket-id"() {
    const t = tag("except-sid");
    await call("A0", "broadcast", { tag: t, except: sockets.B1.id });
    await expectDelivery(t, { A0: 1, A1: 1, B0: 1 });
  },
  async "unknown-room"() {
    const t = tag("nobody");
    await call("A0", "broadcast", { tag: t, rooms: "no-such-room" });
    await expectDelivery(t, {});
  },
  async "odd-room-name"() {
    const t = tag("odd-name");
    await call("A0", "broadcast", { tag: t, rooms: "room #1 ü" });
    await expectDelivery(t, { B0: 1 });
  },
  async "except-self"() {
    const t = tag("except-self");
    await call("A0", "broadcast", { tag: t, exceptSelf: true });
    await expectDelivery(t, { A1: 1, B0: 1, B1: 1 });
  },
  async "local-stays-on-node"() {
    const t = tag("local");
    await call("B0", "broadcast", { tag: t, local: true });
    await expectDelivery(t, { B0: 1, B1: 1 });
  },
  async "namespace-isolation"() {
    const t = tag("other");
    await call("A0", "broadcast", { tag: t, nsp: "/other" });
    await expectDelivery(t, { OA: 1, OB: 1 });
  },
  async "binary-attachment"() {
    const t = tag("binary");
    await call("A0", "broadcast", { tag: t, binary: true });
    await expectDelivery(t, everyone());
    const bin = [...new Uint8Array(inbox.B0[t][0].bin)];
    assert(JSON.stringify(bin) === JSON.stringify(BIN), `binary arrived as ${bin}`);
  },
  async "ordering-through-redis"() {
    const t = tag("order");
    await call("A0", "broadcast", { tag: t, repeat: 20 });
    await expectDelivery(t, everyone(20));
    const seqs = inbox.B1[t].map((m) => m.seq);
    assert(seqs.every((s, i) => s === i), `out of order: ${seqs}`);
  },
  async "payload-types"() {
    const t = tag("types");
    const payload = { int: 42, neg: -7, float: 1.5, big: 2 ** 40, text: "héllo ✓", nil: null, yes: true, no: false, nested: { list: [1, "two", [3]], empty: {} } };
    await call("A0", "broadcast", { tag: t, payload });
    await expectDelivery(t, everyone());
    const got = inbox.B0[t][0].payload;
    assert(JSON.stringify(got) === JSON.stringify(payload), `payload arrived as ${JSON.stringify(got)}`);
  },
  async "volatile"() {
    const t = tag("volatile");
    await call("A0", "broadcast", { tag: t, volatile: true });
    await expectDelivery(t, everyone());
  },
  async "broadcast-room-event"() {
    const t = tag("broadcast-room");
    await call("B0", "broadcast-room", { tag: t, room: "odd" });
    await expectDelivery(t, { A1: 1, B1: 1 });
  },
  async "room-created-after-start"() {
    const room = tag("late-room");
    await call("B0", "sockets-join", { rooms: sockets.A0.id, join: room });
    await sleep(300);
    const t = tag("late");
    await call("B1", "broadcast", { tag: t, rooms: room });
    await expectDelivery(t, { A0: 1 });
  },
  async "broadcast-with-ack"() {
    const t = tag("ack-all");
    const res = await call("A0", "broadcast-with-ack", { tag: t });
    assert(res.ok, `not ok: ${JSON.stringify(res)}`);
    const names = res.responses.map((r) => r.name).sort();
    assert(JSON.stringify(names) === '["A0","A1","B0","B1"]', `responses ${JSON.stringify(names)}`);
  },
  async "broadcast-with-ack-zero-remote-clients-completes"() {
    for (const [from, side, names] of [["A0", "side-A", '["A0","A1"]'], ["B0", "side-A", '["A0","A1"]']]) {
      const started = Date.now();
      const res = await call(from, "broadcast-with-ack", { tag: tag("ack-side"), rooms: side, timeoutMs: 2500 });
      const ms = Date.now() - started;
      assert(res.ok, `not ok from ${from}: ${JSON.stringify(res)}`);
      assert(JSON.stringify(res.responses.map((r) => r.name).sort()) === names, `responses ${JSON.stringify(res.responses)}`);
      assert(ms < 1500, `waited ${ms} ms for a node with no client`);
    }
  },
  async "fetch-sockets"() {
    for (const from of ["A0", "B0"]) {
      const res = await call(from, "fetch", {});
      assert(res.ok && res.count === 4, `fetch from ${from}: ${JSON.stringify(res)}`);
      const b0 = res.sockets.find((s) => s.id === sockets.B0.id);
      assert(b0, "B0 missing");
      assert(b0.data.name === "B0" && typeof b0.data.node === "string", `B0 data ${JSON.stringify(b0.data)}`);
      assert(b0.rooms.includes(sockets.B0.id) && b0.rooms.includes("room #1 ü"), `B0 rooms ${b0.rooms}`);
    }
    const odd = await call("A0", "fetch", { rooms: "odd", except: "side-A" });
    assert(odd.count === 1 && odd.sockets[0].id === sockets.B1.id, `fetch odd: ${JSON.stringify(odd)}`);
  },
  async "server-count"() {
    for (const from of ["A0", "B0"]) {
      const res = await call(from, "server-count", {});
      assert(res.ok && res.count === 2, `server count from ${from}: ${JSON.stringify(res)}`);
    }
  },
  async "sockets-join-and-leave"() {
    const room = tag("j");
    await call("A0", "sockets-join", { rooms: "side-B", join: room });
    await sleep(300);
    let me = await call("B1", "whoami", {});
    assert(me.rooms.includes(room), `B1 rooms after join: ${me.rooms}`);
    await call("A0", "sockets-leave", { rooms: "side-B", leave: room });
    await sleep(300);
    me = await call("B1", "whoami", {});
    assert(!me.rooms.includes(room), `B1 rooms after leave: ${me.rooms}`);
    me = await call("A0", "whoami", {});
    assert(!me.rooms.includes(room), "A0 joined a room meant for side-B");
  },
  async "disconnect-sockets"() {
    for (const close of [false, true]) {
      const reason = new Promise((r) => sockets.B1.once("disconnect", r));
      await call("A0", "disconnect-sockets", { rooms: "u-B1", close });
      const why = await Promise.race([reason, sleep(TIMEOUT).then(() => "none")]);
      if (!sockets.B1.connected) await open("B1");
      // Node sends a DISCONNECT packet before closing, so the client reports the same reason.
      assert(why === "io server disconnect", `B1 disconnect reason ${why} (close: ${close})`);
      assert(sockets.A1.connected && sockets.B0.connected, "other sockets were disconnected");
    }
  },
  async "server-side-emit"() {
    const t = tag("sse");
    const res = await call("A0", "server-side-emit", { tag: t });
    assert(res.ok, JSON.stringify(res));
    await sleep(300);
    const [a, b] = await Promise.all([call("A0", "sse-log", { tag: t }), call("B0", "sse-log", { tag: t })]);
    assert(a.count === 0, `sender got its own server-side event`);
    assert(b.count === 1 && b.entries[0].nsp === "/" && b.entries[0].payload.tag === t, `B log ${JSON.stringify(b)}`);
  },
  async "server-side-emit-other-namespace"() {
    const t = tag("sse-other");
    await call("OB", "server-side-emit", { tag: t });
    await sleep(300);
    const a = await call("OA", "sse-log", { tag: t });
    assert(a.count === 1 && a.entries[0].nsp === "/other", `A log ${JSON.stringify(a)}`);
  },
  async "server-side-emit-with-ack"() {
    for (const [from, other] of [["A0", "B"], ["B0", "A"]]) {
      const t = tag("sse-ack");
      const res = await call(from, "server-side-emit", { tag: t, withAck: true });
      assert(res.ok && res.responses.length === 1, `from ${from}: ${JSON.stringify(res)}`);
      assert(res.responses[0].tag === t, `answer ${JSON.stringify(res.responses[0])}`);
      const log = await call(from === "A0" ? "B0" : "A0", "sse-log", { tag: t });
      assert(log.count === 1 && typeof log.node === "string", `other node ${other} log ${JSON.stringify(log)}`);
    }
  },
  async "emitter"() {
    if (NO_EMITTER) return;
    const redis = createClient({ url: REDIS_URL, socket: { ...REDIS_TLS } });
    await redis.connect();
    try {
      const emitter = new Emitter(redis);
      let t = tag("em-all");
      emitter.emit("msg", { tag: t, from: "emitter" });
      await expectDelivery(t, everyone());
      t = tag("em-room");
      emitter.to("even").emit("msg", { tag: t, from: "emitter" });
      await expectDelivery(t, { A0: 1, B0: 1 });
      t = tag("em-except");
      emitter.except("side-A").emit("msg", { tag: t, from: "emitter" });
      await expectDelivery(t, { B0: 1, B1: 1 });
      t = tag("em-bin");
      emitter.emit("msg", { tag: t, from: "emitter", bin: Buffer.from(BIN) });
      await expectDelivery(t, everyone());
      assert(JSON.stringify([...new Uint8Array(inbox.A1[t][0].bin)]) === JSON.stringify(BIN), "emitter binary");
      t = tag("em-other");
      emitter.of("/other").emit("msg", { tag: t, from: "emitter" });
      await expectDelivery(t, { OA: 1, OB: 1 });
      t = tag("em-sse");
      emitter.serverSideEmit("sse", { tag: t, from: "emitter" });
      await sleep(300);
      const logs = await Promise.all([call("A0", "sse-log", { tag: t }), call("B0", "sse-log", { tag: t })]);
      assert(logs.every((l) => l.count === 1), `emitter sse logs ${JSON.stringify(logs)}`);
      const room = tag("em-join");
      emitter.in("u-A1").socketsJoin(room);
      await sleep(300);
      const me = await call("A1", "whoami", {});
      assert(me.rooms.includes(room), `A1 rooms after emitter join: ${me.rooms}`);
    } finally {
      await redis.quit();
    }
  },
  async "rust-emitter"() {
    if (!RUST_EMITTER || NO_EMITTER) return;
    const { execFileSync } = await import("node:child_process");
    const emit = (...args) => execFileSync(RUST_EMITTER, ["--redis", REDIS_URL, ...args]);
    let t = tag("rs-all");
    emit("emit", "msg", JSON.stringify({ tag: t, from: "rust-emitter" }));
    await expectDelivery(t, everyone());
    t = tag("rs-room");
    emit("--to", "odd", "--except", "side-B", "emit", "msg", JSON.stringify({ tag: t }));
    await expectDelivery(t, { A1: 1 });
    t = tag("rs-bin");
    emit("--binary", "emit", "msg", JSON.stringify({ tag: t }));
    await expectDelivery(t, everyone());
    assert(JSON.stringify([...new Uint8Array(inbox.B1[t][0].bin)]) === JSON.stringify(BIN), "rust emitter binary");
    t = tag("rs-other");
    emit("--nsp", "other", "emit", "msg", JSON.stringify({ tag: t }));
    await expectDelivery(t, { OA: 1, OB: 1 });
    t = tag("rs-sse");
    emit("sse", "sse", JSON.stringify({ tag: t, from: "rust-emitter" }));
    await sleep(300);
    const logs = await Promise.all([call("A0", "sse-log", { tag: t }), call("B0", "sse-log", { tag: t })]);
    assert(logs.every((l) => l.count === 1), `rust emitter sse logs ${JSON.stringify(logs)}`);
    const room = tag("rs-join");
    emit("--to", "u-B0", "join", room);
    await sleep(300);
    const me = await call("B0", "whoami", {});
    assert(me.rooms.includes(room), `B0 rooms after rust emitter join: ${me.rooms}`);
  },
};

let passed = 0;
let failed = 0;
try {
  for (const name of Object.keys(CLIENTS)) await open(name);
  for (const [name, run] of Object.entries(scenarios)) {
    if (ONLY && !name.includes(ONLY)) continue;
    try {
      await run();
      passed++;
      console.log(`ok   ${name}`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${name}: ${err.message}`);
    }
  }
} catch (err) {
  failed++;
  console.log(`FAIL setup: ${err.message}`);
}
for (const s of Object.values(sockets)) s.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
