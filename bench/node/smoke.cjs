// Checks that the server on 127.0.0.1:$PORT answers the bench-server contract on `/` and
// `/custom` (echo ack, join ack, room and broadcast reaching the sender): node smoke.cjs PORT
// With a second port (two nodes on one Redis): also that a broadcast sent to the node on PORT
// reaches a client of the node on PORT2.
const WebSocket = require("ws"); // socket.io's own dependency

const port = process.argv[2] || "3000";
const port2 = process.argv[3];

// Key order and whitespace may change (the contract): compare `prefix` and the parsed JSON.
const is = (prefix, value) => (m) => {
  if (!m.startsWith(prefix)) return false;
  try {
    return canonical(JSON.parse(m.slice(prefix.length))) === canonical(value);
  } catch {
    return false;
  }
};
const canonical = (v) =>
  v && typeof v === "object" && !Array.isArray(v)
    ? `{${Object.keys(v).sort().map((k) => `${k}:${canonical(v[k])}`)}}`
    : Array.isArray(v)
      ? `[${v.map(canonical)}]`
      : JSON.stringify(v);

function check(ns) {
  const p = ns === "/" ? "" : `${ns},`;
  const steps = [
    [`40${p}`, (m) => m.startsWith(`40${p}{`)],
    [`42${p}1["echo",{"t":1,"p":"x"}]`, is(`43${p}1`, [{ t: 1, p: "x" }])],
    [`42${p}2["join","r3"]`, is(`43${p}2`, ["r3"])],
    [`42${p}["room",{"room":"r3","data":{"t":2,"p":"y"}}]`, is(`42${p}`, ["bcast", { t: 2, p: "y" }])],
    [`42${p}["broadcast",{"t":3,"p":"z"}]`, is(`42${p}`, ["bcast", { t: 3, p: "z" }])],
  ];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    const timer = setTimeout(() => reject(new Error(`${ns}: timed out at step ${i}`)), 3000);
    let i = -1;
    ws.on("error", reject);
    ws.on("message", (data) => {
      const m = data.toString();
      if (m === "2") return ws.send("3");
      if (i >= 0 && !steps[i][1](m)) {
        clearTimeout(timer);
        ws.close();
        return reject(new Error(`${ns}: after ${steps[i][0]} got ${m}`));
      }
      i += 1;
      if (i === steps.length) {
        clearTimeout(timer);
        ws.close();
        return resolve();
      }
      ws.send(steps[i][0]);
    });
  });
}

// Resolves with an open websocket once its Socket.IO CONNECT to `/` is answered.
function join(at) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${at}/socket.io/?EIO=4&transport=websocket`);
    const timer = setTimeout(() => reject(new Error(`port ${at}: no CONNECT answer`)), 3000);
    ws.on("error", reject);
    ws.on("message", function first(data) {
      const m = data.toString();
      if (m.startsWith("0")) return ws.send("40");
      if (m.startsWith("40")) {
        clearTimeout(timer);
        ws.off("message", first);
        resolve(ws);
      }
    });
  });
}

async function cluster() {
  const [receiver, sender] = [await join(port2), await join(port)];
  const expected = is("42", ["bcast", { t: 4, p: "w" }]);
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`broadcast on ${port} not seen on ${port2}`)), 3000);
      receiver.on("message", (data) => {
        if (expected(data.toString())) {
          clearTimeout(timer);
          resolve();
        }
      });
      sender.send(`42["broadcast",{"t":4,"p":"w"}]`);
    });
  } finally {
    receiver.close();
    sender.close();
  }
}

check("/")
  .then(() => check("/custom"))
  .then(() => port2 && cluster())
  .then(() => console.log(`port ${port}: contract ok on / and /custom${port2 ? `, broadcasts reach ${port2}` : ""}`))
  .catch((e) => {
    console.error(`port ${port}: ${e.message}`);
    process.exit(1);
  });
