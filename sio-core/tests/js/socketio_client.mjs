// Drives a sio server with the official socket.io-client (npm), over each transport setup,
// and checks every Socket.IO feature the server under test (tests/socketio_client.rs) offers.
// Usage: node socketio_client.mjs http://127.0.0.1:PORT
// Prints one line per check and "N passed, M failed" last; exits non-zero on any failure.
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { check, report, target, within } from "./harness.mjs";

const url = target("socketio_client.mjs");
// Resolves with the event's arguments.
const once = (socket, event) => within(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), event);
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}
// `msgpack` as second argument: every client uses socket.io-msgpack-parser.
const parser = process.argv[3] === "msgpack" ? { parser: msgpackParser } : {};
function connect(opts, nsp = "/") {
  return io(url + nsp, { forceNew: true, reconnection: false, ...parser, ...opts });
}
async function connected(socket) {
  if (!socket.connected) await once(socket, "connect");
  return socket;
}

const setups = {
  polling: { transports: ["polling"] },
  websocket: { transports: ["websocket"] },
  upgrade: {},
};
for (const setup of Object.values(setups)) Object.assign(setup, parser);

for (const [label, opts] of Object.entries(setups)) {
  const a = connect({ ...opts, auth: { name: "a" } });
  const b = connect(opts);
  const welcome = once(a, "welcome");
  await check(`${label}: connect and auth payload`, async () => {
    await connected(a);
    await connected(b);
    const [w] = await welcome;
    eq(w, { id: a.id, auth: { name: "a" } }, "welcome");
  });
  if (label === "upgrade") {
    await check(`${label}: upgrades to websocket`, async () => {
      if (a.io.engine.transport.name !== "websocket") await within(new Promise((r) => a.io.engine.once("upgrade", r)), "upgrade");
      eq(a.io.engine.transport.name, "websocket", "transport");
    });
  }
  await check(`${label}: ack with several arguments`, async () => {
    const res = await within(new Promise((r) => a.emit("echo", 1, "2", { 3: [true] }, (...args) => r(args))), "echo ack");
    eq(res, [1, "2", { 3: [true] }], "ack args");
  });
  await check(`${label}: emitWithAck`, async () => {
    eq(await within(a.emitWithAck("echo", { x: 1 }), "emitWithAck"), { x: 1 }, "ack");
  });
  await check(`${label}: binary both ways`, async () => {
    const res = await within(a.emitWithAck("echo-bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) }), "bin ack");
    eq(res, [3, 1], "lengths of the attachments the server got");
    const [buf] = await within(new Promise((r) => { a.once("bin", (...args) => r(args)); a.emit("send-bin"); }), "bin event");
    eq([...buf], [9, 8, 7], "binary from server");
  });
  await check(`${label}: server asks the client for an ack`, async () => {
    a.once("ask", (q, cb) => cb(q + 1));
    const [answer] = await within(new Promise((r) => { a.once("answer", (...x) => r(x)); a.emit("server-ack", 41); }), "answer");
    eq(answer, 42, "client ack seen by the server");
  });
  await check(`${label}: rooms and broadcast operators`, async () => {
    await within(a.emitWithAck("join", "r1"), "join");
    const got = once(a, "room-msg");
    b.emit("to-room", "r1", "hi r1");
    eq((await got)[0], "hi r1", "room message");
    const gotB = once(b, "bcast");
    const notSelf = new Promise((resolve, reject) => { a.once("bcast", () => reject(new Error("sender got its own broadcast"))); setTimeout(resolve, 200); });
    a.emit("broadcast", "to others");
    eq((await gotB)[0], "to others", "broadcast");
    await notSelf;
  });
  await check(`${label}: fetch sockets and room membership`, async () => {
    const rooms = await within(a.emitWithAck("my-rooms"), "rooms");
    eq(rooms.sort(), [a.id, "r1"].sort(), "rooms");
  });
  if (label === "websocket") {
    await check(`${label}: volatile events are dropped while the client is busy`, async () => {
      const got = [];
      a.on("burst", (i) => got.push(i));
      const end = once(a, "burst-end");
      a.emit("volatile-burst");
      await end;
      a.off("burst");
      eq(got, [0], "volatile events received");
    });
  }
  await check(`${label}: a failing handler answers the ack with its error`, async () => {
    eq(await within(a.emitWithAck("fail", false), "fail"), { error: "refused by the handler" }, "ack");
  });
  await check(`${label}: disconnecting still sees the rooms`, async () => {
    const c = await connected(connect(opts));
    await within(c.emitWithAck("join", "watch"), "join");
    await within(a.emitWithAck("join", "watch"), "join");
    const id = c.id;
    const left = once(a, "left");
    c.close();
    eq((await left)[0], id, "left");
  });
  await check(`${label}: server-side disconnect with reason`, async () => {
    const reason = once(b, "disconnect");
    b.emit("disconnect-me");
    eq((await reason)[0], "io server disconnect", "reason");
  });
  await check(`${label}: middleware refuses with data`, async () => {
    const s = connect(opts, "/admin");
    const [err] = await once(s, "connect_error");
    eq([err.message, err.data], ["not authorized", { code: 401 }], "connect_error");
    s.close();
  });
  await check(`${label}: middleware accepts`, async () => {
    const s = connect({ ...opts, auth: { token: "secret" } }, "/admin");
    await connected(s);
    s.close();
  });
  await check(`${label}: unknown namespace`, async () => {
    const s = connect(opts, "/nope");
    const [err] = await once(s, "connect_error");
    eq(err.message, "Invalid namespace", "message");
    s.close();
  });
  await check(`${label}: dynamic namespace`, async () => {
    const s = connect(opts, "/dyn-42");
    await connected(s);
    eq(await within(s.emitWithAck("where"), "where"), "/dyn-42", "namespace");
    s.close();
  });
  await check(`${label}: typed tuple data`, async () => {
    eq(await within(a.emitWithAck("add", 2, 3), "add"), 5, "sum");
  });
  await check(`${label}: connection state recovery after a lost connection`, async () => {
    const c = io(url, { ...opts, forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    const d = await connected(connect(opts));
    await connected(c);
    const id = c.id;
    await within(c.emitWithAck("join", "rec"), "join");
    await within(c.emitWithAck("set-data", { name: "ada" }), "set-data");
    const m1 = once(c, "room-msg");
    d.emit("to-room", "rec", "m1");
    eq((await m1)[0], "m1", "first message");
    const gone = once(c, "disconnect");
    c.io.engine.close();
    await gone;
    const back = once(c, "connect");
    const m2 = once(c, "room-msg");
    d.emit("to-room", "rec", "m2");
    await back;
    eq([c.recovered, c.id], [true, id], "recovered with the same id");
    eq((await m2)[0], "m2", "missed message");
    const rooms = await within(c.emitWithAck("my-rooms"), "rooms");
    eq(rooms.sort(), [id, "rec"].sort(), "rooms kept");
    eq(await within(c.emitWithAck("my-data"), "data"), { name: "ada" }, "socket.data kept");
    c.close();
    d.close();
  });
  a.close();
  b.close();
}

report();
