// Drives a bare sio Engine.IO echo server with the official engine.io-client (npm): polling only,
// WebSocket only, and polling upgraded to WebSocket, each with text and binary messages.
// Usage: node engine_client.mjs http://127.0.0.1:PORT
// Prints one line per check and "N passed, M failed" last; exits non-zero on any failure.
import { Socket } from "engine.io-client";
import { check, report, target, within } from "./harness.mjs";

const url = target("engine_client.mjs");
// Resolves with the event's first argument.
const once = (emitter, event) => within(new Promise((resolve) => emitter.once(event, resolve)), event);

async function echo(socket, data) {
  const got = once(socket, "message");
  socket.send(data);
  return got;
}

const setups = {
  polling: { transports: ["polling"] },
  websocket: { transports: ["websocket"] },
  upgrade: { transports: ["polling", "websocket"] },
};

for (const [label, opts] of Object.entries(setups)) {
  const socket = new Socket(url, { ...opts, path: "/engine.io/" });
  await check(`${label}: open`, async () => {
    await once(socket, "open");
    if (!socket.id) throw new Error("no session id");
  });
  if (label === "upgrade") {
    await check(`${label}: upgrade to websocket`, async () => {
      if (socket.transport.name !== "websocket") await once(socket, "upgrade");
      if (socket.transport.name !== "websocket") throw new Error(`still on ${socket.transport.name}`);
    });
  }
  await check(`${label}: text echo`, async () => {
    const got = await echo(socket, "hello é ✓");
    if (got !== "hello é ✓") throw new Error(`got ${JSON.stringify(got)}`);
  });
  await check(`${label}: binary echo`, async () => {
    const got = await echo(socket, Uint8Array.from([0, 1, 2, 255]));
    const bytes = [...new Uint8Array(got)];
    if (JSON.stringify(bytes) !== "[0,1,2,255]") throw new Error(`got ${JSON.stringify(bytes)}`);
  });
  await check(`${label}: messages keep their order`, async () => {
    const seen = [];
    const all = within(new Promise((resolve) => {
      socket.on("message", (m) => { seen.push(m); if (seen.length === 20) resolve(); });
    }), "20 echoes");
    for (let i = 0; i < 20; i++) socket.send(String(i));
    await all;
    socket.off("message");
    if (seen.join(",") !== [...Array(20).keys()].join(",")) throw new Error(`order ${seen.join(",")}`);
  });
  await check(`${label}: close`, async () => {
    const closed = once(socket, "close");
    socket.close();
    await closed;
  });
}

report();
