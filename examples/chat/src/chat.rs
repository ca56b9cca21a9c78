//! The chat's Socket.IO side: the namespace `/`, written with the macro DSL, and the small
//! pure functions it is built on (validation, room and user lists), which are unit-tested.
//!
//! Events from the page (each answered through its ack by the handler's return value, so the
//! page learns of success or failure on the request itself):
//!
//! | event | payload | ack |
//! | --- | --- | --- |
//! | `join` | room name | `{room, users}` |
//! | `leave` | room name | `{room}` |
//! | `rooms` | none | `[{name, members}]` |
//! | `users` | room name | `[{name, node}]` |
//! | `msg` | `{room, text, cid?}` | `{id, at, node}`: the message was relayed (the "delivered" mark) |
//! | `typing` | `{room, typing}` | none (volatile: a lost typing hint is not worth a retry) |
//!
//! Events to the page: `welcome` (after each connection: name, node, whether the session was
//! recovered, the rooms it is in), `msg`, `typing`, `presence` (someone joined, left or lost
//! their connection, with the room's new user list) and `rooms` (the room list with member
//! counts, a moment after changes).
//!
//! Every event counts against its socket's budget ([`rate_limit`](crate::rate_limit)): past
//! it, events are dropped and their acks answered `{"error": "too many events: slow down"}`.
//! The room list is computed once for many changes and requests ([`room_list`](crate::room_list)),
//! and a socket is in at most [`MAX_ROOMS`] rooms, so what one client makes the cluster do stays
//! bounded.
//!
//! `cid`, when the client sends one, is its own counter of messages (1, 2, 3...): a client that
//! sends again a message whose ack it did not get (socket.io-client's `retries`, after a node
//! went away) gets the ack again, but the room gets the message once. The last relayed `cid`
//! is kept in `socket.data`, so it survives connection state recovery, on any node.
//!
//! Everything that describes the cluster (user lists, member counts) comes from
//! `fetch_sockets()`, so with the Redis adapter it covers every node, not only this one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sio_core::{ConnectError, RemoteSocket, SocketRef};

/// The longest nickname, in characters: long enough for a name, short enough for the user list.
pub(crate) const MAX_NAME_CHARS: usize = 24;
/// The longest room name, in characters.
pub(crate) const MAX_ROOM_CHARS: usize = 32;
/// The longest message, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1000;
/// The most rooms a socket may be in: each costs a cluster-wide lookup and a broadcast when
/// the socket disconnects or comes back.
pub(crate) const MAX_ROOMS: usize = 20;

/// Chat rooms are Socket.IO rooms named `room:<name>`. The prefix keeps them apart from the room
/// every socket has under its own id: without it a user could "join" another user's id and read
/// what is sent to that user alone.
const ROOM_PREFIX: &str = "room:";

/// How long a cluster-wide lookup waits for the other nodes. Short: a node that does not answer
/// in time (one being stopped) only leaves its users out of one list.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's name (`NODE_NAME`), given to the handlers as state: the page shows which node it
/// talks to, and every message which node relayed it.
#[derive(Debug, Clone)]
pub(crate) struct NodeName(pub(crate) String);

/// Why a request from the page was refused; the ack carries `{"error": "<this text>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChatError {
    /// The room name is empty, too long or has characters other than letters, digits, `-`, `_`.
    BadRoom(&'static str),
    /// The socket is not in the room it talks to.
    NotInRoom(String),
    /// The message is empty or too long.
    BadMessage(&'static str),
    /// The other nodes could not be asked.
    Cluster(String),
    /// The socket is in [`MAX_ROOMS`] rooms already.
    TooManyRooms,
    /// The socket sent more events than its budget allows (see [`rate_limit`](crate::rate_limit)).
    TooManyEvents,
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::BadRoom(why) => write!(f, "invalid room name: {why}"),
            ChatError::NotInRoom(room) => write!(f, "you are not in room {room}"),
            ChatError::BadMessage(why) => write!(f, "invalid message: {why}"),
            ChatError::Cluster(err) => write!(f, "the cluster did not answer: {err}"),
            ChatError::TooManyRooms => write!(f, "you are in {MAX_ROOMS} rooms already"),
            ChatError::TooManyEvents => write!(f, "too many events: slow down"),
        }
    }
}

/// The nickname in a CONNECT payload (`auth: {name}` in the page), trimmed; the refusal says
/// why in `err.data.reason` (and the limit in `err.data.max`), so the page can explain it
/// without parsing the message.
pub(crate) fn check_name(auth: &Value) -> Result<String, ConnectError> {
    let name = auth
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let refuse = |reason: &str| {
        ConnectError::new("invalid nickname")
            .with_data(json!({ "reason": reason, "max": MAX_NAME_CHARS }))
    };
    if name.is_empty() {
        return Err(refuse("empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(refuse("too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse("control characters"));
    }
    Ok(name.to_owned())
}

/// A room name, trimmed and checked: 1 to 32 letters, digits, `-` or `_` (names that read well
/// in a list and in a URL).
pub(crate) fn check_room(room: &str) -> Result<String, ChatError> {
    let room = room.trim();
    if room.is_empty() {
        return Err(ChatError::BadRoom("empty"));
    }
    if room.chars().count() > MAX_ROOM_CHARS {
        return Err(ChatError::BadRoom("longer than 32 characters"));
    }
    if !room
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ChatError::BadRoom("only letters, digits, - and _"));
    }
    Ok(room.to_owned())
}

/// A message text, checked (not trimmed: the sender's spacing is kept).
pub(crate) fn check_text(text: &str) -> Result<(), ChatError> {
    if text.trim().is_empty() {
        return Err(ChatError::BadMessage("empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ChatError::BadMessage("longer than 1000 characters"));
    }
    Ok(())
}

/// The Socket.IO room of a chat room.
pub(crate) fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// The chat rooms among a socket's Socket.IO rooms.
pub(crate) fn chat_rooms<'a>(rooms: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut rooms: Vec<String> = rooms
        .into_iter()
        .filter_map(|r| r.strip_prefix(ROOM_PREFIX))
        .map(str::to_owned)
        .collect();
    rooms.sort();
    rooms
}

/// A user as lists show them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct User {
    pub(crate) name: String,
    /// The node the user is connected to.
    pub(crate) node: String,
}

/// A room and how many sockets are in it, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RoomInfo {
    pub(crate) name: String,
    pub(crate) members: usize,
}

/// The users among `sockets`, sorted by name, leaving out the socket `without` (one that is
/// leaving but may still be listed).
pub(crate) fn users_of(sockets: &[RemoteSocket], without: Option<&str>) -> Vec<User> {
    let mut users: Vec<User> = sockets
        .iter()
        .filter(|s| Some(s.id.as_str()) != without)
        .map(|s| User {
            name: s.data["name"].as_str().unwrap_or("?").to_owned(),
            node: s.data["node"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    users.sort();
    users
}

/// Every chat room that has someone in it, with its member count, sorted by name.
pub(crate) fn rooms_of(sockets: &[RemoteSocket]) -> Vec<RoomInfo> {
    let mut counts = BTreeMap::<String, usize>::new();
    for socket in sockets {
        for room in chat_rooms(&socket.rooms) {
            *counts.entry(room).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(name, members)| RoomInfo { name, members })
        .collect()
}

/// The nickname stored on a socket by the connect handler.
fn name_of(socket: &SocketRef) -> String {
    socket.data()["name"].as_str().unwrap_or("?").to_owned()
}

/// Milliseconds since the Unix epoch: the time stamp of a message, in the unit JavaScript's
/// `Date` takes.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The users of a room on every node, without `without`.
async fn room_users(
    socket: &SocketRef,
    room: &str,
    without: Option<&str>,
) -> Result<Vec<User>, ChatError> {
    let sockets = socket
        .within(room_key(room))
        .timeout(FETCH_TIMEOUT)
        .fetch_sockets()
        .await
        .map_err(|err| ChatError::Cluster(err.to_string()))?;
    Ok(users_of(&sockets, without))
}

/// Tells a room's other users that `socket` joined, left or came back (`what`), with the room's
/// new user list, which it returns. `leaving` leaves the socket out of the list, as it may still
/// be in its rooms while it disconnects.
async fn announce(
    socket: &SocketRef,
    room: &str,
    what: &str,
    leaving: bool,
) -> Result<Vec<User>, ChatError> {
    let without = leaving.then(|| socket.id().to_string());
    let users = room_users(socket, room, without.as_deref()).await?;
    let presence = json!({
        "room": room,
        "name": name_of(socket),
        "what": what,
        "users": users,
    });
    let _ = socket.to(room_key(room)).emit("presence", &presence);
    Ok(users)
}

/// [`announce`] for a change whose ack does not depend on it: a failure is only logged.
async fn announce_or_log(socket: &SocketRef, room: &str, what: &str, leaving: bool) {
    if let Err(err) = announce(socket, room, what, leaving).await {
        tracing::warn!(%err, room, "cannot list the room's users");
    }
}

/// What a message's sender gets back: the message was relayed to the room.
#[derive(Debug, Serialize)]
pub(crate) struct Delivered {
    /// The message's id, as the other users got it.
    id: String,
    at: u64,
    node: String,
}

/// A message from the page.
#[derive(Debug, Deserialize)]
pub(crate) struct Outgoing {
    room: String,
    text: String,
    /// The sender's number for this message, increasing; see the module's documentation.
    #[serde(default)]
    cid: Option<u64>,
}

/// The key of `socket.data` that holds the last `cid` relayed for the socket.
const LAST_RELAYED: &str = "last";

/// Whether the message numbered `cid` was relayed already for the socket whose data is `data`
/// (a client's retry of a message whose ack was lost).
pub(crate) fn already_relayed(data: &Value, cid: u64) -> bool {
    data.get(LAST_RELAYED)
        .and_then(Value::as_u64)
        .is_some_and(|last| cid <= last)
}

/// `data` with `cid` as the last relayed message.
pub(crate) fn with_last_relayed(mut data: Value, cid: u64) -> Value {
    if let Value::Object(map) = &mut data {
        map.insert(LAST_RELAYED.to_owned(), cid.into());
    }
    data
}

/// A typing hint from the page.
#[derive(Debug, Deserialize)]
pub(crate) struct Typing {
    room: String,
    typing: bool,
}

/// The join ack: the room's users, the joiner included.
#[derive(Debug, Serialize)]
pub(crate) struct Joined {
    room: String,
    users: Vec<User>,
}

/// The chat namespace; `handlers::namespace()` registers every handler below, in order.
#[sio_core::namespace("/")]
pub(crate) mod handlers {
    use serde_json::{Value, json};
    use sio_core::{
        Auth, ConnectError, Data, DisconnectReason, SocketRef, State, middleware, on, on_connect,
        on_disconnecting,
    };

    use super::{
        ChatError, Delivered, Joined, LAST_RELAYED, MAX_ROOMS, NodeName, Outgoing, RoomInfo,
        Typing, User, already_relayed, announce, announce_or_log, chat_rooms, check_name,
        check_room, check_text, name_of, now_ms, room_key, room_users, with_last_relayed,
    };
    use crate::rate_limit::WithinRate;
    use crate::room_list::RoomList;

    /// Lets in only clients with a usable nickname (`auth: {name}`); the others get a
    /// CONNECT_ERROR whose `data` says why, so the page asks again. It does not run for a
    /// recovered session, which was checked when it first connected.
    #[middleware]
    async fn nickname(Auth(auth): Auth<Value>) -> Result<(), ConnectError> {
        check_name(&auth).map(drop)
    }

    /// Stores the nickname and node on the socket (other nodes read them through
    /// `fetch_sockets`), and tells the page where it stands. A recovered socket is back in its
    /// rooms already: its rooms hear that it is back.
    #[on_connect]
    async fn connected(
        socket: SocketRef,
        State(node): State<NodeName>,
        State(room_list): State<RoomList>,
        Auth(auth): Auth<Value>,
    ) {
        // Checked by the middleware, or at the first connection of a recovered session.
        let name = check_name(&auth).unwrap_or_else(|_| "?".to_owned());
        let recovered = socket.recovered();
        let mut data = json!({ "name": name, "node": node.0 });
        // A recovered socket keeps what it relayed: a retry after the recovery is still one.
        if let Some(last) = recovered
            .then(|| socket.data()[LAST_RELAYED].as_u64())
            .flatten()
        {
            data = with_last_relayed(data, last);
        }
        // Each change is a write to the session store: a socket recovered on its own node
        // has this data already.
        if socket.data() != data {
            let _ = socket.set_data(&data);
        }
        let rooms = chat_rooms(&socket.rooms());
        tracing::info!(socket = %socket.id(), %name, recovered, ?rooms, "connected");
        let welcome = json!({
            "name": name,
            "node": node.0,
            "recovered": recovered,
            "rooms": rooms,
        });
        let _ = socket.emit("welcome", &welcome);
        if !rooms.is_empty() {
            room_list.changed(&socket);
        }
        for room in &rooms {
            announce_or_log(&socket, room, "back", false).await;
        }
    }

    /// Joins a room; the ack carries the room's users. Joining a room again changes nothing
    /// and tells no one.
    #[on("join")]
    async fn join(
        _: WithinRate,
        socket: SocketRef,
        State(room_list): State<RoomList>,
        Data(room): Data<String>,
    ) -> Result<Joined, ChatError> {
        let room = check_room(&room)?;
        let key = room_key(&room);
        let rooms = socket.rooms();
        if rooms.contains(&key) {
            let users = room_users(&socket, &room, None).await?;
            return Ok(Joined { room, users });
        }
        if chat_rooms(&rooms).len() >= MAX_ROOMS {
            return Err(ChatError::TooManyRooms);
        }
        socket.join(key);
        tracing::debug!(socket = %socket.id(), %room, "joined");
        room_list.changed(&socket);
        let users = announce(&socket, &room, "joined", false).await?;
        Ok(Joined { room, users })
    }

    /// Leaves a room (leaving a room one is not in changes nothing and tells no one).
    #[on("leave")]
    async fn leave(
        _: WithinRate,
        socket: SocketRef,
        State(room_list): State<RoomList>,
        Data(room): Data<String>,
    ) -> Result<Value, ChatError> {
        let room = check_room(&room)?;
        let key = room_key(&room);
        if socket.rooms().contains(&key) {
            socket.leave(key);
            room_list.changed(&socket);
            announce_or_log(&socket, &room, "left", false).await;
        }
        Ok(json!({ "room": room }))
    }

    /// The room list, with member counts on every node (at most a second old).
    #[on("rooms")]
    async fn list_rooms(
        _: WithinRate,
        socket: SocketRef,
        State(room_list): State<RoomList>,
    ) -> Result<Vec<RoomInfo>, ChatError> {
        room_list.get(&socket).await
    }

    /// A room's users on every node.
    #[on("users")]
    async fn list_users(
        _: WithinRate,
        socket: SocketRef,
        Data(room): Data<String>,
    ) -> Result<Vec<User>, ChatError> {
        let room = check_room(&room)?;
        room_users(&socket, &room, None).await
    }

    /// Relays a message to the room's other users (on every node). The ack is the page's
    /// "delivered" mark: the server accepted the message and handed it to the room. A message
    /// whose `cid` was relayed already is acked again, not relayed again.
    #[on("msg")]
    async fn msg(
        _: WithinRate,
        socket: SocketRef,
        State(node): State<NodeName>,
        Data(out): Data<Outgoing>,
    ) -> Result<Delivered, ChatError> {
        let room = check_room(&out.room)?;
        check_text(&out.text)?;
        if !socket.rooms().contains(&room_key(&room)) {
            return Err(ChatError::NotInRoom(room));
        }
        let at = now_ms();
        let id = match out.cid {
            Some(cid) => format!("{}-c{cid}", socket.id()),
            None => format!("{}-{at}", socket.id()),
        };
        let repeated = out
            .cid
            .is_some_and(|cid| already_relayed(&socket.data(), cid));
        if !repeated {
            let message = json!({
                "id": id,
                "cid": out.cid,
                "room": room,
                "from": name_of(&socket),
                "text": out.text,
                "at": at,
                "node": node.0,
            });
            socket
                .to(room_key(&room))
                .emit("msg", &message)
                .map_err(|err| ChatError::Cluster(err.to_string()))?;
            // A write to the session store, only when the client numbers its messages: a
            // retry on another node must find the cid there. A repeated cid writes nothing.
            if let Some(cid) = out.cid {
                let _ = socket.set_data(&with_last_relayed(socket.data(), cid));
            }
        }
        Ok(Delivered {
            id,
            at,
            node: node.0,
        })
    }

    /// Tells the room's other users that someone is (or stopped) typing. Volatile: a hint that
    /// cannot go out at once is stale by the time it could.
    #[on("typing")]
    async fn typing(_: WithinRate, socket: SocketRef, Data(hint): Data<Typing>) {
        let Ok(room) = check_room(&hint.room) else {
            return;
        };
        let key = room_key(&room);
        if !socket.rooms().contains(&key) {
            return;
        }
        let hint = json!({ "room": room, "name": name_of(&socket), "typing": hint.typing });
        let _ = socket.to(key).volatile().emit("typing", &hint);
    }

    /// Tells the rooms of a leaving socket (still in them here, unlike in `on_disconnect`) that
    /// it left, or only lost its connection when it may come back with its session.
    #[on_disconnecting]
    async fn disconnecting(
        socket: SocketRef,
        State(room_list): State<RoomList>,
        reason: DisconnectReason,
    ) {
        let rooms = chat_rooms(&socket.rooms());
        tracing::info!(socket = %socket.id(), reason = reason.as_str(), ?rooms, "disconnected");
        let what = if reason.is_recoverable() {
            "disconnected"
        } else {
            "left"
        };
        // The new list goes out after a delay, by when the socket has left its rooms (it
        // leaves them once this handler first waits).
        if !rooms.is_empty() {
            room_list.changed(&socket);
        }
        for room in &rooms {
            announce_or_log(&socket, room, what, true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(id: &str, name: &str, rooms: &[&str]) -> RemoteSocket {
        RemoteSocket {
            id: id.to_owned(),
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            handshake: json!({}),
            data: json!({ "name": name, "node": "n1" }),
        }
    }

    #[test]
    fn nicknames_are_trimmed_and_bounded() {
        assert_eq!(
            check_name(&json!({ "name": "  ada " })).ok(),
            Some("ada".into())
        );
        let reason = |auth: Value| {
            check_name(&auth)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(reason(json!({ "name": "   " })), "invalid nickname");
        assert!(check_name(&json!({})).is_err());
        assert!(check_name(&json!({ "name": 5 })).is_err());
        assert!(check_name(&json!({ "name": "a".repeat(MAX_NAME_CHARS) })).is_ok());
        assert!(check_name(&json!({ "name": "a".repeat(MAX_NAME_CHARS + 1) })).is_err());
        // Characters, not bytes.
        assert!(check_name(&json!({ "name": "é".repeat(MAX_NAME_CHARS) })).is_ok());
    }

    #[test]
    fn room_names_are_words() {
        assert_eq!(check_room(" rust-lang ").ok(), Some("rust-lang".into()));
        assert!(check_room("").is_err());
        assert!(check_room("a b").is_err());
        assert!(check_room(&"r".repeat(MAX_ROOM_CHARS + 1)).is_err());
    }

    #[test]
    fn messages_are_bounded() {
        assert!(check_text("hi").is_ok());
        assert!(check_text("  ").is_err());
        assert!(check_text(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }

    #[test]
    fn a_repeated_cid_is_not_relayed_again() {
        let data = json!({ "name": "ada" });
        assert!(!already_relayed(&data, 1));
        let data = with_last_relayed(data, 1);
        assert!(already_relayed(&data, 1));
        assert!(!already_relayed(&data, 2));
        let data = with_last_relayed(data, 7);
        assert!(already_relayed(&data, 5));
        assert_eq!(data["name"], "ada");
    }

    #[test]
    fn lists_leave_out_socket_rooms_and_the_leaving_socket() {
        let sockets = [
            remote("s1", "bob", &["s1", "room:rust", "room:lobby"]),
            remote("s2", "ada", &["s2", "room:rust"]),
        ];
        assert_eq!(
            rooms_of(&sockets),
            vec![
                RoomInfo {
                    name: "lobby".into(),
                    members: 1
                },
                RoomInfo {
                    name: "rust".into(),
                    members: 2
                },
            ]
        );
        let names: Vec<String> = users_of(&sockets, None)
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["ada", "bob"]);
        assert_eq!(users_of(&sockets, Some("s2")).len(), 1);
    }
}
