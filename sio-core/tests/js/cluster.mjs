// Two sio nodes sharing a cluster backend, each with its own official socket.io-client:
// broadcasts, room messages, socket lookups, remote room joins and remote disconnections cross
// the node boundary. Usage: node cluster.mjs http://NODE_A http://NODE_B
import { io } from "socket.io-client";
import { check, report, target, within } from "./harness.mjs";

const urlA = target("cluster.mjs");
const urlB = process.argv[3];
const once = (socket, event) => within(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), event);
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}
const connect = (url) => io(url, { forceNew: true, reconnection: false });

const a = connect(urlA);
const b = connect(urlB);
await check("both nodes accept a client", async () => {
  await Promise.all([once(a, "connect"), once(b, "connect")]);
});
await check("a broadcast reaches the other node", async () => {
  const got = once(b, "bcast");
  a.emit("broadcast", "hi from A");
  eq((await got)[0], "hi from A", "bcast");
});
await check("a room message reaches members on the other node only", async () => {
  await within(b.emitWithAck("join", "r"), "join");
  const got = once(b, "room-msg");
  let leaked = false;
  a.once("room-msg", () => { leaked = true; });
  a.emit("to-room", { room: "r", msg: "x" });
  eq((await got)[0], "x", "room-msg");
  eq(leaked, false, "non-member got the room message");
});
await check("fetch sockets sees both nodes", async () => {
  eq(await within(a.emitWithAck("count"), "count"), 2, "sockets in the cluster");
});
await check("sockets join a room on every node", async () => {
  await within(a.emitWithAck("join-all", "everyone"), "join-all");
  const rooms = await within(b.emitWithAck("my-rooms"), "rooms");
  eq(rooms.includes("everyone"), true, `rooms ${rooms}`);
});
await check("acks are collected from the sockets of every node", async () => {
  a.on("ask", (cb) => cb("a"));
  b.on("ask", (cb) => cb("b"));
  eq(await within(a.emitWithAck("ask-all"), "ask-all"), ["a", "b"], "answers");
});
await check("disconnect sockets on another node", async () => {
  const gone = once(b, "disconnect");
  a.emit("kick", "r");
  eq((await gone)[0], "io server disconnect", "reason");
});
a.close();
b.close();
report();
