// socket.io-client 2.x (Engine.IO v3, Socket.IO protocol v4) against a sio server that allows
// EIO3: connection, acks, binary, rooms, namespaces with query auth, refusals, disconnect.
// Usage: node socketio_client_v2.mjs http://127.0.0.1:PORT
import { createRequire } from "node:module";
import { check, report, target, within } from "./harness.mjs";

const io = createRequire(import.meta.url)("socket.io-client-v2");
const url = target("socketio_client_v2.mjs");
const once = (socket, event) => within(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), event);
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}
const ack = (socket, ...args) => within(new Promise((resolve) => socket.emit(...args, (...res) => resolve(res))), args[0]);

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  const label = transports.join("+");
  const opts = { forceNew: true, reconnection: false, transports };
  const a = io(url, opts);
  const b = io(url, opts);
  await check(`${label}: connect to the main namespace`, async () => {
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    eq(a.id, a.io.engine.id, "socket id is the session id");
  });
  await check(`${label}: ack with several arguments`, async () => {
    eq(await ack(a, "echo", 1, "2", { 3: [true] }), [1, "2", { 3: [true] }], "ack");
  });
  await check(`${label}: binary both ways`, async () => {
    eq(await ack(a, "echo-bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) }), [[3, 1]], "lengths");
    const got = once(a, "bin");
    a.emit("send-bin");
    eq([...(await got)[0]], [9, 8, 7], "binary from the server");
  });
  await check(`${label}: rooms`, async () => {
    await ack(b, "join", "v2-room");
    const got = once(b, "room-msg");
    a.emit("to-room", "v2-room", "hello v2");
    eq((await got)[0], "hello v2", "room message");
  });
  await check(`${label}: namespace with query auth, middleware`, async () => {
    // socket.io-client 2 writes the query into the options object it is given: one each.
    const ok = io(`${url}/admin?token=secret`, { ...opts });
    await once(ok, "connect");
    ok.close();
    const refused = io(`${url}/admin`, { ...opts });
    const [err] = await once(refused, "error");
    eq(err, { code: 401 }, "refusal data");
    refused.close();
  });
  await check(`${label}: unknown namespace`, async () => {
    const s = io(`${url}/nope`, opts);
    const [err] = await once(s, "error");
    eq(err, "Invalid namespace", "error");
    s.close();
  });
  await check(`${label}: server-side disconnect`, async () => {
    const gone = once(b, "disconnect");
    b.emit("disconnect-me");
    eq((await gone)[0], "io server disconnect", "reason");
  });
  a.close();
  b.close();
}
report();
