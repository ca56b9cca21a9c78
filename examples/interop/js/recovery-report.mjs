// What the recovery scripts (failover.mjs, late-recovery.mjs) share: their clients, and their
// verdict. The verdict waits (bounded) for
// every client to be back with every broadcast, then counts, per client, broadcasts lost,
// duplicated and reordered, and whether it was recovered (same id, rooms and data as before,
// now on a node that `isSurvivor` accepts). Broadcasts lost by clients now on node `lenient`
// are counted apart (`lostOnLenient`) and do not fail: a Node node recovering a client while
// it broadcasts can lose one (its restoreSession reads the stream, then the socket joins its
// rooms; a broadcast delivered in between never reaches it). Prints `COUNTS {json}` and the
// problems; whether all is well.
import { io as connect } from "socket.io-client";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const within = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`timeout: ${what}`)))]);

// Client `i`, in room "r" on node `url`, noting the tags of the "msg" events it gets; once
// disconnected it retries against `next` (recovery then happens there). `options` go to the
// client (`transports`: WebSocket only by default).
export function client(url, i, next, options = {}) {
  const s = connect(url, {
    transports: ["websocket"],
    ...options,
    auth: { name: `c${i}`, rooms: ["r"] },
    forceNew: true,
    // The official client's default waits 500 to 1,500 ms before it reconnects; a fixed 500 ms
    // is the shortest of those. A Node node recovers a killed sio node's clients only once a
    // surviving sio node has handed their sessions over to Node's keys (within about 100 ms of
    // the kill: a connected socket's session is not takeable before), so a client that came
    // back sooner than any real one would get a new session there.
    reconnectionDelay: 500,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
  });
  const c = { s, got: [] };
  s.on("msg", (m) => c.got.push(m.tag));
  s.on("disconnect", () => {
    s.io.uri = next;
  });
  return c;
}

// Waits for the clients on node A and a sender on node B; what `whoami` said of each client
// (to compare after the recovery), and the sender.
export async function start(clients, B) {
  await within(
    Promise.all(clients.map((c) => new Promise((r) => (c.s.connected ? r() : c.s.once("connect", r))))),
    5000,
    "clients connect to A",
  );
  const before = await Promise.all(clients.map((c) => c.s.timeout(3000).emitWithAck("whoami", {})));
  const sender = connect(B, { transports: ["websocket"], forceNew: true, auth: { name: "sender" } });
  await within(new Promise((r) => sender.once("connect", r)), 5000, "sender connects to B");
  return { before, sender };
}

// Waits (at most 10 s) until every client got `n` broadcasts. A client recovers from the offset
// of the last broadcast it got, so one that got none before its node went away cannot: on a
// loaded machine a node can be killed before it delivered what it was sent.
export async function received(clients, n) {
  const deadline = Date.now() + 10000;
  while (clients.some((c) => c.got.length < n)) {
    if (Date.now() > deadline) {
      const got = clients.map((c) => c.got.length).join(",");
      throw new Error(`the clients got ${got} broadcasts within 10 s, not ${n} each, before their node went away`);
    }
    await sleep(20);
  }
}

export async function report(clients, sent, before, isSurvivor, lenient) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && clients.some((c) => !c.s.connected || c.got.length < sent)) {
    await sleep(50);
  }
  await sleep(300);
  const after = await Promise.all(
    clients.map((c) => c.s.timeout(3000).emitWithAck("whoami", {}).catch(() => null)),
  );
  const counts = { sent, delivered: 0, lost: 0, lostOnLenient: 0, duplicated: 0, reordered: 0, recovered: 0, clients: clients.length };
  const problems = [];
  clients.forEach((c, i) => {
    const seen = new Set(c.got);
    counts.delivered += c.got.length;
    counts.duplicated += c.got.length - seen.size;
    const lost = [];
    for (let t = 0; t < sent; t++) if (!seen.has(t)) lost.push(t);
    if (lenient !== undefined && after[i]?.node === lenient) counts.lostOnLenient += lost.length;
    else counts.lost += lost.length;
    if (lost.length) problems.push(`c${i} (now on ${after[i]?.node}) lost ${lost.join(",")}`);
    for (let k = 1; k < c.got.length; k++) if (c.got[k] < c.got[k - 1]) counts.reordered++;
    const w = after[i];
    const same =
      c.s.recovered &&
      w &&
      w.id === before[i].id &&
      isSurvivor(w.node) &&
      JSON.stringify(w.rooms) === JSON.stringify(before[i].rooms) &&
      JSON.stringify(w.data) === JSON.stringify(before[i].data);
    if (same) counts.recovered++;
    else problems.push(`c${i}: recovered=${c.s.recovered} now ${JSON.stringify(w)} was ${JSON.stringify(before[i])}`);
  });
  console.log(`COUNTS ${JSON.stringify(counts)}`);
  for (const p of problems) console.log(p);
  return (
    counts.lost === 0 && counts.duplicated === 0 && counts.reordered === 0 && counts.recovered === clients.length
  );
}
