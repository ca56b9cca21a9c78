//! The Engine.IO handler of the Socket.IO layer: decodes each connection's packets and routes
//! them to its namespaces' sockets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use std::future::Future;

use crate::engine::{self, CloseReason, Message, Protocol};
use crate::handler::InFlight;
use crate::io::IoInner;
use crate::namespace::Nsp;
use crate::parser::{Decoder, Packet, PacketData, Parser};
use crate::recovery::{LoggedBroadcast, Missed, Session};
use crate::socket::{Conn, DisconnectReason, Socket, SocketRef};

/// Per-connection state: the sockets of each namespace and the packet decoder.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    slots: Mutex<Slots>,
    decoder: Mutex<Option<Decoder>>,
    /// Set once any namespace connected; the connect timeout checks it.
    connected_once: AtomicBool,
    /// Told when a namespace connects, so that the connect-timeout task ends then instead of
    /// keeping its task and timer alive for `connect_timeout` on every connected session.
    joined: tokio::sync::Notify,
    /// The connection's handlers that are waiting (see [`MAX_WAITING_HANDLERS`]).
    handlers: Arc<InFlight>,
    /// Made on this node to adopt a dead owner's POST (see [`crate::adoption`]): its sockets
    /// are let go, not disconnected, when it closes.
    adopted: AtomicBool,
}

/// How many of one connection's handlers may wait (on a database, a timer, an ack) before the
/// engine stops reading from that client until some finish. Without it a client could make
/// the server hold any number of handlers, each with its arguments, from one connection (a
/// single POST carries thousands of events). Reading later loses nothing: the client's own
/// buffer waits instead of the server's memory.
const MAX_WAITING_HANDLERS: usize = 256;

/// One place per namespace: a connection has at most one socket in each, and a CONNECT that
/// is still running its middlewares (or reading the session store) holds the place already,
/// so that a second CONNECT to the same namespace cannot make a second socket.
#[derive(Debug, Default)]
struct Slots {
    by_namespace: HashMap<String, Slot>,
    /// The connection closed: no socket may join any more.
    closed: bool,
    next_ticket: u64,
}

#[derive(Debug)]
enum Slot {
    Joining(u64),
    Joined(SocketRef),
}

/// The right to fill a namespace's place, handed out by [`Connection::reserve`].
#[derive(Debug)]
pub(crate) struct Ticket {
    ns: String,
    id: u64,
}

/// Why a reserved place could not be filled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FillError {
    /// The connection closed in the meantime.
    Closed,
}

impl Connection {
    /// Holds the place of namespace `ns` for a CONNECT; `None` when the connection is closed or
    /// the namespace is joined, or being joined, already.
    pub(crate) fn reserve(&self, ns: &str) -> Option<Ticket> {
        let mut slots = self.lock();
        if slots.closed || slots.by_namespace.contains_key(ns) {
            return None;
        }
        slots.next_ticket += 1;
        let id = slots.next_ticket;
        slots.by_namespace.insert(ns.to_owned(), Slot::Joining(id));
        Some(Ticket {
            ns: ns.to_owned(),
            id,
        })
    }

    /// Puts `socket` in the place `ticket` holds.
    pub(crate) fn fill(&self, ticket: &Ticket, socket: &SocketRef) -> Result<(), FillError> {
        let mut slots = self.lock();
        if slots.closed {
            return Err(FillError::Closed);
        }
        slots
            .by_namespace
            .insert(ticket.ns.clone(), Slot::Joined(socket.clone()));
        drop(slots);
        self.connected_once.store(true, Ordering::Release);
        // `notify_one` keeps a permit when the task is not waiting yet.
        self.joined.notify_one();
        Ok(())
    }

    /// Gives up the place `ticket` holds (the CONNECT was refused).
    fn abandon(&self, ticket: &Ticket) {
        let mut slots = self.lock();
        if matches!(slots.by_namespace.get(&ticket.ns), Some(Slot::Joining(id)) if *id == ticket.id)
        {
            slots.by_namespace.remove(&ticket.ns);
        }
    }

    /// Frees the place of `socket` (it left its namespace).
    pub(crate) fn remove(&self, socket: &SocketRef) {
        let mut slots = self.lock();
        let ns = socket.ns();
        if matches!(slots.by_namespace.get(ns), Some(Slot::Joined(s)) if s == socket) {
            slots.by_namespace.remove(ns);
        }
    }

    fn get(&self, ns: &str) -> Option<SocketRef> {
        match self.lock().by_namespace.get(ns) {
            Some(Slot::Joined(socket)) => Some(socket.clone()),
            _ => None,
        }
    }

    /// The connection's sockets, one per joined namespace.
    pub(crate) fn sockets(&self) -> Vec<SocketRef> {
        self.lock()
            .by_namespace
            .values()
            .filter_map(|slot| match slot {
                Slot::Joined(socket) => Some(socket.clone()),
                Slot::Joining(_) => None,
            })
            .collect()
    }

    /// Marks the connection closed and hands over its sockets: none can join after this.
    fn close(&self) -> Vec<SocketRef> {
        let mut slots = self.lock();
        slots.closed = true;
        std::mem::take(&mut slots.by_namespace)
            .into_values()
            .filter_map(|slot| match slot {
                Slot::Joined(socket) => Some(socket),
                Slot::Joining(_) => None,
            })
            .collect()
    }

    /// Whether [`Connection::close`] ran: a socket added to its namespace after that is not
    /// among the sockets it handed over.
    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Readies a connection made for an adoption: it decodes packets as a connection that
    /// opened, and lets its sockets go when it closes.
    pub(crate) fn start_adoption(&self, io: &IoInner) {
        self.adopted.store(true, Ordering::Release);
        *self
            .decoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Decoder::new(io.config.parser_limits.clone()).with_parser(io.config.parser));
    }

    /// The connection's waiting handlers.
    pub(crate) fn handlers(&self) -> &Arc<InFlight> {
        &self.handlers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The Socket.IO layer as an Engine.IO [`Handler`](engine::Handler).
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) io: Arc<IoInner>,
}

impl engine::Handler for Client {
    type Data = Connection;

    fn on_open(&self, conn: &Arc<Conn>) {
        *conn
            .data
            .decoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(
            Decoder::new(self.io.config.parser_limits.clone()).with_parser(self.io.config.parser),
        );
        // Socket.IO v4 (the protocol of Engine.IO v3 clients) joins `/` without asking.
        if legacy(conn) {
            self.connect(conn, "/".to_owned(), None);
        }
        // A connection that joins no namespace in time is closed (Node's `connectTimeout`).
        let timeout = self.io.config.connect_timeout;
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = conn.closed() => {}
                () = conn.data.joined.notified() => {}
                () = tokio::time::sleep(timeout) => {
                    if !conn.data.connected_once.load(Ordering::Acquire) {
                        tracing::debug!(sid = %conn.sid(), "no namespace joined in time, closing");
                        conn.close(CloseReason::ForcedClose);
                    }
                }
            }
        });
    }

    fn on_message(&self, conn: &Arc<Conn>, message: Message) {
        let decoded = {
            let mut decoder = conn
                .data
                .decoder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (decoder.as_mut(), message) {
                (Some(d), Message::Text(text)) => d.decode_text(&text),
                (Some(d), Message::Binary(data)) => d.decode_binary(data),
                (None, _) => return,
            }
        };
        match decoded {
            Ok(Some(packet)) => self.on_packet(conn, packet),
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(sid = %conn.sid(), %err, "invalid Socket.IO packet, closing");
                conn.close(CloseReason::ParseError);
            }
        }
    }

    fn ready(&self, conn: &Arc<Conn>) -> impl Future<Output = ()> + Send + use<> {
        let handlers = conn.data.handlers.clone();
        async move { handlers.below(MAX_WAITING_HANDLERS).await }
    }

    fn adopt(&self, conn: &Arc<Conn>) -> impl Future<Output = bool> + Send + use<> {
        let (io, conn) = (self.io.clone(), conn.clone());
        async move { crate::adoption::adopt(&io, &conn).await }
    }

    fn on_close(&self, conn: &Arc<Conn>, reason: CloseReason) {
        if conn.data.adopted.load(Ordering::Acquire) {
            crate::adoption::let_go(&self.io, conn, conn.data.close());
            return;
        }
        for socket in conn.data.close() {
            socket.nsp().remove_socket(&socket, reason.into());
        }
    }
}

impl Client {
    fn on_packet(&self, conn: &Arc<Conn>, packet: Packet) {
        let Packet { ns, data } = packet;
        match data {
            PacketData::Connect(auth) => self.connect(conn, ns, auth),
            data => {
                let Some(socket) = conn.data.get(&ns) else {
                    tracing::debug!(sid = %conn.sid(), %ns, "packet for a namespace not joined");
                    return;
                };
                match data {
                    PacketData::Event {
                        args,
                        id,
                        attachments,
                    } => {
                        let mut args = match args {
                            serde_json::Value::Array(args) => args.into_iter(),
                            _ => return,
                        };
                        let event = match args.next() {
                            Some(serde_json::Value::String(name)) => name,
                            Some(other) => other.to_string(),
                            None => return,
                        };
                        socket
                            .nsp()
                            .dispatch(&socket, event, args.collect(), id, attachments);
                    }
                    PacketData::Ack {
                        args,
                        id,
                        attachments,
                    } => {
                        let args = match args {
                            serde_json::Value::Array(args) => args,
                            other => vec![other],
                        };
                        socket.on_ack(id, args, attachments);
                    }
                    PacketData::Disconnect => {
                        socket
                            .nsp()
                            .remove_socket(&socket, DisconnectReason::ClientNamespaceDisconnect);
                    }
                    _ => {
                        tracing::debug!(sid = %conn.sid(), %ns, "unexpected packet from the client");
                    }
                }
            }
        }
    }

    /// Connects the client to a namespace: unknown namespaces and refused middlewares get a
    /// CONNECT_ERROR, the rest a CONNECT with the socket id, then the connect handler runs.
    fn connect(&self, conn: &Arc<Conn>, ns: String, auth: Option<serde_json::Value>) {
        // Socket.IO v4 clients put their auth in the namespace's query: `/chat?token=abc`.
        let (ns, auth) = match ns.split_once('?') {
            Some((path, query)) if legacy(conn) => (path.to_owned(), Some(query_object(query))),
            _ => (ns, auth),
        };
        let Some(nsp) = self.io.namespace(&ns) else {
            let refusal = crate::ConnectError::new("Invalid namespace");
            refuse(conn, self.io.config.parser, ns, &refusal);
            return;
        };
        let Some(ticket) = conn.data.reserve(&ns) else {
            tracing::debug!(sid = %conn.sid(), %ns, "namespace joined twice, ignored");
            return;
        };
        let auth = auth.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let wanted = wanted_session(&auth);
        if let (Some((pid, offset)), Some(store)) = (&wanted, nsp.session_store()) {
            // The session may have been left on any node of the cluster: ask the store.
            let taking = store.take(nsp.path(), &pid.to_string());
            let (pid, offset) = (*pid, offset.clone());
            let conn = conn.clone();
            tokio::spawn(async move {
                let session = match taking.await {
                    Ok(stored) => stored.and_then(Session::from_stored),
                    Err(err) => {
                        tracing::debug!(%err, "session store unreachable, new session");
                        None
                    }
                };
                let restored = match session.filter(|s| s.pid == pid) {
                    Some(session) => restoring(&nsp, session, offset).await,
                    None => None,
                };
                proceed(nsp, conn, ticket, auth, restored).await;
            });
            return;
        }
        let restored = wanted.and_then(|(pid, offset)| {
            let session = nsp.recovery()?.restore(pid, &offset)?;
            Some(Restoring {
                session,
                offset,
                fetched: None,
            })
        });
        let conn = conn.clone();
        if nsp.has_middlewares() {
            tokio::spawn(proceed(nsp, conn, ticket, auth, restored));
        } else {
            let socket = new_socket(&nsp, &conn, auth, restored.as_ref());
            finish_connect(socket, &ticket, restored);
        }
    }
}

/// A session taken back from the store, if what its client missed after `offset` can be sent:
/// read from the backend's log, or found in this node's memory (the client may come from any
/// node: this waits a little for this node to deliver what the client got there).
async fn restoring(nsp: &Nsp, session: Session, offset: String) -> Restored {
    let recovery = nsp.recovery()?;
    let fetched = match nsp.broadcast_log() {
        Some(log) => Some(crate::recovery::read_missed(recovery, log, nsp.path(), &offset).await?),
        None => {
            recovery.ready_for(&offset).await.then_some(())?;
            None
        }
    };
    Some(Restoring {
        session,
        offset,
        fetched,
    })
}

/// A session to take back, the offset after which the client missed broadcasts and, with a
/// backend log, the missed broadcasts read from it.
struct Restoring {
    session: Session,
    offset: String,
    fetched: Option<Vec<LoggedBroadcast>>,
}

type Restored = Option<Restoring>;

/// The `pid` and `offset` a reconnecting client sends in its CONNECT payload.
fn wanted_session(auth: &serde_json::Value) -> Option<(crate::engine::Sid, String)> {
    let pid = crate::engine::Sid::parse_socket_id(auth.get("pid")?.as_str()?).ok()?;
    let offset = auth.get("offset")?.as_str()?;
    Some((pid, offset.to_owned()))
}

/// Runs the middlewares (unless a recovered socket skips them), then connects the socket.
async fn proceed(
    nsp: Arc<Nsp>,
    conn: Arc<Conn>,
    ticket: Ticket,
    auth: serde_json::Value,
    restored: Restored,
) {
    let skip_middlewares =
        restored.is_some() && nsp.recovery().is_some_and(|r| r.config().skip_middlewares);
    let socket = new_socket(&nsp, &conn, auth, restored.as_ref());
    if nsp.has_middlewares()
        && !skip_middlewares
        && let Err(refusal) = nsp.run_middlewares(&socket).await
    {
        conn.data.abandon(&ticket);
        refuse(&conn, nsp.parser(), ticket.ns, &refusal);
        return;
    }
    finish_connect(socket, &ticket, restored);
}

fn new_socket(
    nsp: &Arc<Nsp>,
    conn: &Arc<Conn>,
    auth: serde_json::Value,
    restored: Option<&Restoring>,
) -> SocketRef {
    match restored {
        Some(r) => Socket::restore(nsp.clone(), conn.clone(), auth, &r.session),
        None => Socket::connect(nsp.clone(), conn.clone(), auth),
    }
}

/// Adds the socket to its namespace, answers the CONNECT (with `pid` when recovery is on),
/// sends a recovered socket what it missed, then runs the connect handler.
fn finish_connect(socket: SocketRef, ticket: &Ticket, restored: Restored) {
    let conn = socket.conn().clone();
    // The place first, then the namespace: a close that runs in between (on another thread)
    // either finds the socket in its place and removes it, or has marked the connection closed
    // and the socket is taken out again below.
    if conn.data.fill(ticket, &socket).is_err() {
        return;
    }
    let nsp = socket.nsp().clone();
    // No broadcast may slip between reading the log and the socket joining its rooms: it
    // would be missed, or sent twice (live and from the log).
    let gate = restored
        .as_ref()
        .and_then(|_| nsp.recovery())
        .map(|r| r.restoring());
    if !nsp.add_socket(socket.clone()) {
        // A recovered id that is live on this node already: the session is not for taking.
        drop(gate);
        conn.data.remove(&socket);
        let refusal = crate::ConnectError::new("session in use");
        refuse(&conn, nsp.parser(), ticket.ns.clone(), &refusal);
        return;
    }
    if conn.data.is_closed() {
        drop(gate);
        nsp.remove_socket(&socket, DisconnectReason::TransportClose);
        return;
    }
    // Socket.IO v4 clients compute their socket id themselves: the answer carries nothing.
    let reply = (!legacy(socket.conn())).then(|| {
        let mut reply = serde_json::Map::new();
        reply.insert("sid".into(), socket.id().to_string().into());
        if let Some(pid) = socket.pid() {
            reply.insert("pid".into(), pid.to_string().into());
        }
        reply.into()
    });
    let mut packets = vec![Packet {
        ns: nsp.path().to_owned(),
        data: PacketData::Connect(reply),
    }];
    if let Some(Restoring {
        session,
        offset,
        fetched,
    }) = restored
    {
        let missed: Option<Vec<Missed>> = match (nsp.recovery(), fetched) {
            (Some(r), Some(fetched)) => Some(r.missed_from_log(&session, &offset, fetched)),
            (Some(r), None) => r.missed(&session, &offset),
            (None, _) => Some(Vec::new()),
        };
        let Some(missed) = missed else {
            // The log dropped some of what the client missed since the session was taken
            // (while middlewares ran): rather than a recovery with gaps, the connection closes
            // and the client comes back, to a new session.
            tracing::warn!(sid = %socket.id(), ns = %nsp.path(), "missed broadcasts left the log during recovery; connection closed");
            drop(gate);
            conn.close(CloseReason::ForcedClose);
            return;
        };
        socket.join(session.rooms.clone());
        packets.extend(missed.into_iter().map(|(args, attachments)| Packet {
            ns: nsp.path().to_owned(),
            data: PacketData::Event {
                args,
                id: None,
                attachments,
            },
        }));
    }
    let sent = packets.iter().all(|p| socket.send_packet(p).is_ok());
    drop(gate);
    nsp.save_session(&socket);
    if sent {
        nsp.on_connected(&socket);
    }
}

fn refuse(conn: &Conn, parser: Parser, ns: String, error: &crate::ConnectError) {
    let payload = if legacy(conn) {
        error.to_legacy_payload()
    } else {
        error.to_payload()
    };
    let packet = Packet {
        ns,
        data: PacketData::ConnectError(payload),
    };
    let _ = conn.send_all(crate::emit::frames(parser, &packet));
}

/// Whether the connection speaks Socket.IO v4 (over Engine.IO v3, socket.io-client 2.x).
fn legacy(conn: &Conn) -> bool {
    matches!(conn.protocol(), Protocol::V3 { .. })
}

/// A query string as a JSON object of strings (the auth of a Socket.IO v4 client).
fn query_object(query: &str) -> serde_json::Value {
    let pairs: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(query).unwrap_or_default();
    pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
