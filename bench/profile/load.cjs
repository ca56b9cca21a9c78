// A fixed amount of work for a server under `valgrind --tool=callgrind` (bench/profile/run.sh):
// the same frames in the same order every run, so that the instruction count per operation is
// repeatable. Raw Engine.IO v4 / Socket.IO v5 frames over `ws`, nothing timed.
//   node load.cjs PORT connect CLIENTS          connect CLIENTS sockets (40), then close them
//   node load.cjs PORT echo CLIENTS COUNT       each client sends COUNT `echo` acks, 8 in flight
//   node load.cjs PORT fanout CLIENTS COUNT     CLIENTS receivers; one of them emits COUNT
//                                               `broadcast`s, one at a time once all got the last
//   node load.cjs PORT polling CLIENTS COUNT    long-polling clients (keep-alive HTTP/1.1), each
//                                               sends COUNT `echo` acks, one at a time
// Prints one line: {"scenario", "ops"} where ops is connects, acks or deliveries.
const http = require("node:http");
const WebSocket = require("../node/node_modules/ws");

const [port, scenario, clientsArg, countArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const count = Number(countArg || 0);
const url = `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`;
const payload = JSON.stringify({ t: 1, p: "x".repeat(32) });
// Under valgrind the server is ~50 times slower: generous, but bounded.
const watchdog = setTimeout(() => {
  console.error(`${scenario}: gave up after 600 s`);
  process.exit(1);
}, 600_000);

function connect(onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on("error", reject);
    ws.on("message", (data) => {
      const m = data.toString();
      if (m === "2") return ws.send("3");
      if (m.startsWith("0{")) return ws.send("40");
      if (m.startsWith("40{")) return resolve(ws);
      onMessage(ws, m);
    });
  });
}

async function connectAll(onMessage) {
  const sockets = [];
  // 16 at a time, as a browser fleet would arrive.
  for (let i = 0; i < clients; i += 16) {
    const batch = [];
    for (let j = i; j < Math.min(clients, i + 16); j++) batch.push(connect(onMessage));
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

async function echo() {
  const done = [];
  const sockets = await connectAll((ws, m) => {
    if (m.startsWith("43")) ws.next();
  });
  await Promise.all(
    sockets.map(
      (ws, i) =>
        new Promise((resolve) => {
          let sent = 0;
          let acked = 0;
          ws.next = () => {
            acked += 1;
            if (acked === count) return resolve();
            if (sent < count) ws.send(`42${sent++}["echo",${payload}]`);
          };
          for (let k = 0; k < Math.min(8, count); k++) ws.send(`42${sent++}["echo",${payload}]`);
          done[i] = ws;
        }),
    ),
  );
  return { sockets, ops: clients * count };
}

async function fanout() {
  let received = 0;
  let wake = () => {};
  const sockets = await connectAll((_ws, m) => {
    if (m.startsWith('42["bcast"')) {
      received += 1;
      if (received % clients === 0) wake();
    }
  });
  for (let b = 0; b < count; b++) {
    const all = new Promise((resolve) => (wake = resolve));
    sockets[0].send(`42["broadcast",${payload}]`);
    await all;
  }
  return { sockets, ops: received };
}

async function connectOnly() {
  return { sockets: await connectAll(() => {}), ops: clients };
}

/// One HTTP request on the client's own keep-alive agent; resolves with the body.
function request(agent, method, query, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { agent, host: "127.0.0.1", port, method, path: `/socket.io/?EIO=4&transport=polling${query}` },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks).toString()));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function pollingClient() {
  // One connection for the poll, one for the POSTs, as a browser holds them.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const open = await request(agent, "GET", "");
  const sid = JSON.parse(open.slice(1)).sid;
  const q = `&sid=${sid}`;
  await request(agent, "POST", q, "40");
  let inbox = (await request(agent, "GET", q)).split("\x1e");
  const next = async (prefix) => {
    for (;;) {
      const i = inbox.findIndex((p) => p.startsWith(prefix));
      if (i >= 0) return inbox.splice(i, 1)[0];
      const got = (await request(agent, "GET", q)).split("\x1e");
      for (const p of got) {
        if (p === "2") await request(agent, "POST", q, "3");
        else inbox.push(p);
      }
    }
  };
  await next("40{");
  for (let k = 0; k < count; k++) {
    const ack = next(`43${k}[`);
    await request(agent, "POST", q, `42${k}["echo",${payload}]`);
    await ack;
  }
  await request(agent, "POST", q, "1");
  agent.destroy();
}

async function polling() {
  await Promise.all(Array.from({ length: clients }, pollingClient));
  return { sockets: [], ops: clients * count };
}

const scenarios = { connect: connectOnly, echo, fanout, polling };
(scenarios[scenario] || (() => Promise.reject(new Error(`unknown scenario ${scenario}`))))()
  .then(({ sockets, ops }) => {
    for (const ws of sockets) ws.close();
    clearTimeout(watchdog);
    console.log(JSON.stringify({ scenario, ops }));
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
