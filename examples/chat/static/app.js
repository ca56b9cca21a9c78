// The chat page: plain JS on the official socket.io-client (the global `io` of
// /socket.io.min.js). Every user text goes into the page as textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const ACK_TIMEOUT_MS = 5000;
// A typing hint is sent at most this often while keys are pressed...
const TYPING_REPEAT_MS = 2000;
// ..."stopped" follows this long after the last key...
const TYPING_IDLE_MS = 2500;
// ...and a receiver forgets a hint this long after it came (a lost "stopped" must not stick).
const TYPING_SHOWN_MS = 4000;

const state = {
  name: null,
  node: null,
  current: null,
  // room name -> { messages: [], users: [], unread: 0 }; the rooms this page is in.
  joined: new Map(),
  // [{name, members}] of every node, from the server.
  rooms: [],
  // room -> Map(name -> time the hint expires)
  typers: new Map(),
  everConnected: false,
  typingSentAt: 0,
  typingTimer: null,
};

// autoConnect off: the nickname is asked first, then sent as the CONNECT payload (`auth`).
const socket = io({ autoConnect: false });
// For tests and the curious: `window.chat.socket.io.engine.close()` simulates a lost connection.
window.chat = { socket, state };

// --- connection --------------------------------------------------------------------------

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  socket.auth = { name: $("name-input").value };
  $("login-error").hidden = true;
  socket.connect();
});

socket.on("connect", () => {
  $("login").hidden = true;
  setStatus("ok", `online (${socket.io.engine.transport.name})`);
  socket.io.engine.once("upgrade", (t) => setStatus("ok", `online (${t.name})`));
});

socket.on("connect_error", (err) => {
  if (socket.active) {
    // A network failure: the client retries by itself.
    setStatus("warn", "cannot connect, retrying…");
    return;
  }
  // Refused by the server's middleware: `err.data` says why; ask for another nickname.
  const reasons = {
    empty: "A nickname is needed.",
    "too long": `At most ${err.data && err.data.max} characters, please.`,
    "control characters": "Letters, digits and spaces only, please.",
  };
  const why = (err.data && reasons[err.data.reason]) || err.message;
  $("login-error").textContent = why;
  $("login-error").hidden = false;
  $("login").hidden = false;
  setStatus("bad", "offline");
});

socket.on("disconnect", (reason) => {
  setStatus("bad", "offline");
  if (socket.active) {
    banner("warn", `Connection lost (${reason}). Reconnecting…`);
  }
});

socket.on("welcome", (w) => {
  state.name = w.name;
  state.node = w.node;
  $("me").textContent = `you are ${w.name}`;
  $("me").hidden = false;
  $("node").textContent = w.node;
  const serverRooms = new Set(w.rooms);
  if (w.recovered) {
    // Connection state recovery: same socket id, same rooms, and the messages sent meanwhile
    // arrive right after this.
    banner("ok", `Reconnected to ${w.node}: session recovered, still in ${list(w.rooms)}.`);
  } else if (state.everConnected && state.joined.size > 0) {
    // A new session (the old one expired, or this is another node): join the rooms again.
    const rooms = [...state.joined.keys()];
    rooms.filter((r) => !serverRooms.has(r)).forEach((r) => join(r, false));
    banner("ok", `Reconnected to ${w.node} with a new session: rejoined ${list(rooms)}.`);
  } else if (!state.everConnected) {
    join("lobby", true);
  }
  state.everConnected = true;
  refreshRooms();
  if (state.current) refreshUsers(state.current);
});

function list(rooms) {
  return rooms.length ? rooms.join(", ") : "no room";
}

function setStatus(kind, text) {
  const s = $("status");
  s.className = `status ${kind}`;
  s.textContent = text;
}

let bannerTimer = null;
function banner(kind, text) {
  const b = $("banner");
  b.className = `banner ${kind}`;
  b.textContent = text;
  b.hidden = false;
  clearTimeout(bannerTimer);
  if (kind === "ok") bannerTimer = setTimeout(() => (b.hidden = true), 15000);
}

// --- rooms ---------------------------------------------------------------------------------

async function join(room, switchTo) {
  try {
    const res = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("join", room);
    if (res.error) throw new Error(res.error);
    const r = roomState(res.room);
    r.users = res.users;
    if (switchTo || !state.current) show(res.room);
    else render();
    $("join-error").hidden = true;
  } catch (err) {
    $("join-error").textContent = err.message;
    $("join-error").hidden = false;
  }
}

function roomState(room) {
  if (!state.joined.has(room)) state.joined.set(room, { messages: [], users: [], unread: 0 });
  return state.joined.get(room);
}

async function leave(room) {
  await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("leave", room).catch(() => {});
  state.joined.delete(room);
  state.typers.delete(room);
  if (state.current === room) state.current = state.joined.keys().next().value || null;
  render();
}

async function refreshRooms() {
  try {
    const rooms = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("rooms");
    if (Array.isArray(rooms)) {
      state.rooms = rooms;
      renderRooms();
    }
  } catch (_) {
    // Next `rooms` event will do.
  }
}

async function refreshUsers(room) {
  try {
    const users = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("users", room);
    if (Array.isArray(users) && state.joined.has(room)) {
      state.joined.get(room).users = users;
      renderUsers();
    }
  } catch (_) {
    // Next `presence` event will do.
  }
}

socket.on("rooms", (rooms) => {
  state.rooms = rooms;
  renderRooms();
});

socket.on("presence", (p) => {
  if (!state.joined.has(p.room)) return;
  const r = state.joined.get(p.room);
  r.users = p.users;
  const says = { joined: "joined", left: "left", disconnected: "lost their connection", back: "is back" };
  r.messages.push({ system: `${p.name} ${says[p.what] || p.what}` });
  if (p.what !== "joined" && p.what !== "back") stopTyping(p.room, p.name);
  if (p.room === state.current) render();
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = $("join-input").value.trim();
  if (!room) return;
  $("join-input").value = "";
  if (state.joined.has(room)) show(room);
  else join(room, true);
});

$("leave").addEventListener("click", () => state.current && leave(state.current));

function show(room) {
  state.current = room;
  roomState(room).unread = 0;
  render();
  $("text").focus();
}

// --- messages ------------------------------------------------------------------------------

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value;
  const room = state.current;
  if (!text.trim() || !room) return;
  $("text").value = "";
  sendTyping(false);
  const msg = { mine: true, from: state.name, text, at: Date.now(), status: "sending" };
  roomState(room).messages.push(msg);
  render();
  try {
    // The server's ack is the "delivered" mark: it took the message and relayed it to the room.
    const res = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("msg", { room, text });
    if (res.error) throw new Error(res.error);
    Object.assign(msg, { status: "delivered", id: res.id, at: res.at, node: res.node });
  } catch (err) {
    Object.assign(msg, { status: "failed", error: err.message });
  }
  if (room === state.current) render();
});

socket.on("msg", (m) => {
  if (!state.joined.has(m.room)) return;
  const r = state.joined.get(m.room);
  // A recovered session may get again what it already had.
  if (r.messages.some((x) => x.id === m.id)) return;
  r.messages.push(m);
  stopTyping(m.room, m.from);
  if (m.room === state.current) render();
  else {
    r.unread += 1;
    renderRooms();
  }
});

// --- typing --------------------------------------------------------------------------------

$("text").addEventListener("input", () => {
  if (!$("text").value) return sendTyping(false);
  if (Date.now() - state.typingSentAt > TYPING_REPEAT_MS) sendTyping(true);
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => sendTyping(false), TYPING_IDLE_MS);
});

function sendTyping(typing) {
  if (!state.current || !socket.connected) return;
  if (!typing && state.typingSentAt === 0) return;
  clearTimeout(state.typingTimer);
  state.typingSentAt = typing ? Date.now() : 0;
  socket.volatile.emit("typing", { room: state.current, typing });
}

socket.on("typing", (t) => {
  if (!state.joined.has(t.room)) return;
  if (!state.typers.has(t.room)) state.typers.set(t.room, new Map());
  if (t.typing) state.typers.get(t.room).set(t.name, Date.now() + TYPING_SHOWN_MS);
  else state.typers.get(t.room).delete(t.name);
  renderTyping();
});

function stopTyping(room, name) {
  const typers = state.typers.get(room);
  if (typers && typers.delete(name)) renderTyping();
}

setInterval(renderTyping, 1000);

// --- rendering -----------------------------------------------------------------------------

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render() {
  renderRooms();
  renderMessages();
  renderUsers();
  renderTyping();
  const inRoom = Boolean(state.current);
  $("room-title").textContent = inRoom ? `# ${state.current}` : "No room";
  $("leave").disabled = !inRoom;
  $("text").disabled = !inRoom;
  document.querySelector("#composer button").disabled = !inRoom;
}

function renderRooms() {
  const ul = $("rooms");
  ul.replaceChildren();
  const counts = new Map(state.rooms.map((r) => [r.name, r.members]));
  // Rooms this page is in show even before the server's list mentions them.
  const names = new Set([...counts.keys(), ...state.joined.keys()]);
  for (const name of [...names].sort()) {
    const li = el("li");
    li.dataset.room = name;
    if (state.joined.has(name)) li.classList.add("joined");
    if (name === state.current) li.classList.add("current");
    li.append(el("span", "name", `# ${name}`));
    const unread = state.joined.get(name)?.unread;
    if (unread) li.append(el("span", "unread", String(unread)));
    li.append(el("span", "count", String(counts.get(name) ?? 0)));
    li.title = `${counts.get(name) ?? 0} member(s); click to ${state.joined.has(name) ? "open" : "join"}`;
    li.addEventListener("click", () => (state.joined.has(name) ? show(name) : join(name, true)));
    ul.append(li);
  }
}

// The state of the room on screen, if any.
function currentRoom() {
  return state.current ? state.joined.get(state.current) : undefined;
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  const r = currentRoom();
  if (!r) return;
  for (const m of r.messages) {
    if (m.system) {
      box.append(el("div", "system", m.system));
      continue;
    }
    const div = el("div", `msg${m.mine ? " mine" : ""}${m.status ? ` ${m.status}` : ""}`);
    const meta = el("div", "meta");
    meta.append(el("span", "from", m.from));
    meta.append(el("span", "time", new Date(m.at).toLocaleTimeString()));
    if (m.node) meta.append(el("span", "via", `via ${m.node}`));
    div.append(meta, el("div", "text", m.text));
    if (m.mine) {
      const status = { sending: "sending…", delivered: "✓ delivered", failed: `✗ not sent: ${m.error}` };
      div.append(el("div", "status", status[m.status]));
    }
    box.append(div);
  }
  box.scrollTop = box.scrollHeight;
}

function renderUsers() {
  const ul = $("users");
  ul.replaceChildren();
  const r = currentRoom();
  if (!r) return;
  for (const u of r.users) {
    const li = el("li", null, u.name);
    li.dataset.name = u.name;
    li.append(el("span", "where", `@ ${u.node}`));
    ul.append(li);
  }
}

function renderTyping() {
  const now = Date.now();
  const typers = state.typers.get(state.current);
  const names = [];
  if (typers) {
    for (const [name, until] of typers) {
      if (until < now) typers.delete(name);
      else names.push(name);
    }
  }
  const text =
    names.length === 0 ? "" :
    names.length === 1 ? `${names[0]} is typing…` :
    `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
  if ($("typing").textContent !== text) $("typing").textContent = text;
}
