//! A Socket.IO socket: one client connected to one namespace.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::ack::{AckError, AckResponse};
use crate::adapter::{BroadcastOptions, RemoteSocket, Room};
use crate::client::Connection;
use crate::emit::{EmitError, frames};
use crate::engine::{self, CloseReason, Protocol, RequestInfo, Sid, TransportKind};
use crate::extensions::Extensions;
use crate::namespace::Nsp;
use crate::operators::{BroadcastOperators, RoomParam};
use crate::parser::{Packet, PacketData};
use crate::recovery::Session;

/// The Engine.IO session a socket travels on.
pub(crate) type Conn = engine::Socket<Connection>;

/// Why a socket disconnected, named as Node's server names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The connection was closed (the client went away or closed it).
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent something that is not a Socket.IO packet.
    ParseError,
    /// The client read too slowly and its outbound buffer filled up.
    BufferFull,
    /// The server closed the connection (`io.close()` or the Engine.IO session was closed).
    ForcedClose,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The server closed the connection with [`Socket::close`].
    ForcedServerClose,
    /// The client left the namespace (`socket.disconnect()` in the client).
    ClientNamespaceDisconnect,
    /// The server removed the socket from the namespace ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// The reason as Node's server writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::BufferFull => "buffer full",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }
}

impl DisconnectReason {
    /// Whether a client that disconnected for this reason may recover its session (Node's list:
    /// not when either side left the namespace on purpose).
    pub fn is_recoverable(self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
                | DisconnectReason::ParseError
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::BufferFull => DisconnectReason::BufferFull,
            CloseReason::ServerShutdown => DisconnectReason::ServerShuttingDown,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            _ => DisconnectReason::TransportError,
        }
    }
}

/// What the client sent when it connected to the namespace.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The CONNECT payload (`auth` in the JS client); `{}` when there was none.
    pub auth: Value,
}

/// A client connected to a namespace. Handlers get it as a [`SocketRef`].
pub struct Socket {
    id: Sid,
    /// The private session id, with connection state recovery on.
    pid: Option<Sid>,
    recovered: bool,
    nsp: Arc<Nsp>,
    conn: Arc<Conn>,
    handshake: Handshake,
    connected: AtomicBool,
    /// Held while the socket's rooms or recovery session change, and by its disconnection:
    /// nothing joins it to a room or saves its session once it is gone (a handler that runs
    /// on after the client left would leak a room entry, or bring back a kicked session).
    membership: Mutex<()>,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckResponse>>>,
    /// Typed per-socket data, for this node only.
    pub extensions: Extensions,
    /// JSON per-socket data (`socket.data` in Node): travels to other nodes in
    /// `fetch_sockets()` answers.
    data: Mutex<Value>,
}

/// A shared handle to a [`Socket`]; what handlers receive.
#[derive(Clone)]
pub struct SocketRef(pub(crate) Arc<Socket>);

impl Deref for SocketRef {
    type Target = Socket;

    fn deref(&self) -> &Socket {
        &self.0
    }
}

impl fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for SocketRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("ns", &self.nsp.path())
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn connect(nsp: Arc<Nsp>, conn: Arc<Conn>, auth: Value) -> SocketRef {
        let node = conn.sid().node_id();
        let pid = nsp.recovery().map(|_| Sid::new(node));
        // A Socket.IO v4 client takes its main namespace socket's id to be the session id.
        let id = match conn.protocol() {
            Protocol::V3 { .. } if nsp.path() == "/" => conn.sid(),
            _ => Sid::new(node),
        };
        Self::build(nsp, conn, auth, id, pid, false)
    }

    /// A socket that takes back the id of a recovered session.
    pub(crate) fn restore(
        nsp: Arc<Nsp>,
        conn: Arc<Conn>,
        auth: Value,
        session: &Session,
    ) -> SocketRef {
        let socket = Self::build(nsp, conn, auth, session.sid, Some(session.pid), true);
        // `socket.data` comes back with the session, as in Node.
        *socket
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = session.data.clone();
        socket
    }

    fn build(
        nsp: Arc<Nsp>,
        conn: Arc<Conn>,
        auth: Value,
        id: Sid,
        pid: Option<Sid>,
        recovered: bool,
    ) -> SocketRef {
        SocketRef(Arc::new(Socket {
            id,
            pid,
            recovered,
            nsp,
            conn,
            handshake: Handshake { auth },
            connected: AtomicBool::new(false),
            membership: Mutex::new(()),
            acks: Mutex::new(HashMap::new()),
            extensions: Extensions::default(),
            data: Mutex::new(Value::Object(serde_json::Map::new())),
        }))
    }

    /// The socket's id (`socket.id`); unique per namespace connection.
    pub fn id(&self) -> Sid {
        self.id
    }

    /// Whether this socket took back the session of a client that lost its connection
    /// (connection state recovery): same id, same rooms, missed broadcasts sent again.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    pub(crate) fn pid(&self) -> Option<Sid> {
        self.pid
    }

    /// The namespace's path.
    pub fn ns(&self) -> &str {
        self.nsp.path()
    }

    /// What the client sent when it connected.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The socket's JSON data (`socket.data` in Node): `{}` until [`set_data`](Self::set_data).
    /// Unlike [`extensions`](Self::extensions), other nodes see it in
    /// [`fetch_sockets`](crate::BroadcastOperators::fetch_sockets).
    ///
    /// ```
    /// # async fn f(socket: sio_core::SocketRef) {
    /// socket.set_data(&serde_json::json!({"name": "ada"})).ok();
    /// assert_eq!(socket.data()["name"], "ada");
    /// # }
    /// ```
    pub fn data(&self) -> Value {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the socket's JSON data (`socket.data = ...` in Node).
    pub fn set_data<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), serde_json::Error> {
        let data = serde_json::to_value(data)?;
        *self
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = data;
        self.nsp.save_session(self);
        Ok(())
    }

    /// The HTTP request that opened the connection (headers, query, peer address).
    pub fn request(&self) -> &RequestInfo {
        self.conn.request()
    }

    /// The transport the connection uses now.
    pub fn transport(&self) -> TransportKind {
        self.conn.transport()
    }

    /// Whether the socket is still connected to its namespace.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Sends an event to this client. `data` becomes the arguments: a tuple is several, `()`
    /// none, anything else one (see [`Args`](crate::Args)).
    ///
    /// ```
    /// # async fn f(socket: sio_core::SocketRef) {
    /// socket.emit("welcome", "hello").ok();
    /// socket.emit("position", &(10, 20)).ok();
    /// # }
    /// ```
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.bin(Vec::new()).emit(event, data)
    }

    /// Sends an event and waits for the client's ack, deserialized as `V`, for at most the
    /// server's `ack_timeout`.
    pub async fn emit_with_ack<V: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<V, AckError> {
        self.bin(Vec::new()).emit_with_ack(event, data).await
    }

    /// Binary attachments for the next emit: each becomes one more argument (a `Buffer` in the
    /// JS client), unless the arguments already hold placeholders for them.
    pub fn bin(&self, attachments: Vec<Bytes>) -> SocketEmit<'_> {
        SocketEmit {
            socket: self,
            attachments,
            timeout: None,
            volatile: false,
        }
    }

    /// How long the next `emit_with_ack` waits.
    pub fn timeout(&self, timeout: Duration) -> SocketEmit<'_> {
        SocketEmit {
            socket: self,
            attachments: Vec::new(),
            timeout: Some(timeout),
            volatile: false,
        }
    }

    /// Drops the next emit if the client is not ready to take it at once (see
    /// [`BroadcastOperators::volatile`]).
    pub fn volatile(&self) -> SocketEmit<'_> {
        self.bin(Vec::new()).volatile()
    }

    /// Joins rooms; a socket that disconnected joins nothing.
    pub fn join(&self, rooms: impl RoomParam) {
        let _membership = self.membership();
        if self.connected() {
            self.nsp.join(self.id, rooms.into_rooms());
            self.nsp.write_session(self);
        }
    }

    /// Leaves rooms.
    pub fn leave(&self, rooms: impl RoomParam) {
        let _membership = self.membership();
        if self.connected() {
            self.nsp.leave(self.id, rooms.into_rooms());
            self.nsp.write_session(self);
        }
    }

    /// The rooms the socket is in (its own id's room included).
    pub fn rooms(&self) -> Vec<Room> {
        self.nsp.adapter().rooms_of(self.id)
    }

    /// Every other socket in these rooms (`socket.to(room)`).
    pub fn to(&self, rooms: impl RoomParam) -> BroadcastOperators {
        self.broadcast().to(rooms)
    }

    /// Every socket of the namespace, this one included (`socket.nsp` in Node).
    pub fn namespace(&self) -> BroadcastOperators {
        BroadcastOperators::new(self.nsp.clone(), BroadcastOptions::default())
    }

    /// Every socket in these rooms, this one included if it is in them (`io.in(room)` for
    /// this socket's namespace).
    pub fn within(&self, rooms: impl RoomParam) -> BroadcastOperators {
        self.namespace().to(rooms)
    }

    /// Every other socket of the namespace (`socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperators {
        BroadcastOperators::new(
            self.nsp.clone(),
            BroadcastOptions {
                except_sid: Some(self.id),
                ..Default::default()
            },
        )
    }

    /// Removes the socket from its namespace; the client gets a DISCONNECT packet. The
    /// connection stays open for its other namespaces.
    pub fn disconnect(&self) {
        let packet = Packet {
            ns: self.ns().to_owned(),
            data: PacketData::Disconnect,
        };
        let _ = self.send_packet(&packet);
        self.nsp
            .remove_socket(self, DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the client's whole connection (every namespace), as `socket.disconnect(true)`
    /// does in Node.
    pub fn close(&self) {
        for socket in self.conn.data.sockets() {
            socket.disconnect();
        }
        self.conn.close(CloseReason::ForcedClose);
    }

    /// This socket as another node sees it.
    pub(crate) fn describe(&self) -> RemoteSocket {
        RemoteSocket {
            id: self.id.to_string(),
            rooms: self.rooms(),
            handshake: crate::describe::handshake(self.request(), &self.handshake.auth),
            data: self.data(),
        }
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub(crate) fn nsp(&self) -> &Arc<Nsp> {
        &self.nsp
    }

    /// See [`Socket::membership`]'s field.
    pub(crate) fn membership(&self) -> std::sync::MutexGuard<'_, ()> {
        self.membership
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn send_packet(&self, packet: &Packet) -> Result<(), EmitError> {
        self.conn.send_all(frames(self.nsp.parser(), packet))?;
        Ok(())
    }

    /// Registers an ack request under `id` (ids come from the namespace, so that a broadcast
    /// can use one id for all its sockets); the receiver gets the client's answer.
    pub(crate) fn register_ack(&self, id: u64) -> oneshot::Receiver<AckResponse> {
        let (tx, rx) = oneshot::channel();
        self.lock_acks().insert(id, tx);
        rx
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        self.lock_acks().remove(&id);
    }

    /// Waits at most `timeout` for the answer to ack request `id`.
    pub(crate) async fn await_ack(
        &self,
        id: u64,
        rx: oneshot::Receiver<AckResponse>,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.forget_ack(id);
                Err(AckError::Timeout)
            }
        }
    }

    /// A client's answer to one of our ack requests.
    pub(crate) fn on_ack(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        match self.lock_acks().remove(&id) {
            Some(tx) => {
                let _ = tx.send(AckResponse { args, attachments });
            }
            None => tracing::debug!(id, socket = %self.id, "ack for no pending request"),
        }
    }

    /// The ack requests that wait for the client's answer.
    pub(crate) fn pending_acks(&self) -> usize {
        self.lock_acks().len()
    }

    /// Fails every pending ack request (the socket is gone).
    pub(crate) fn drop_acks(&self) {
        self.lock_acks().clear();
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<AckResponse>>> {
        self.acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An emit to one socket with options (binary attachments, ack timeout).
#[derive(Debug)]
#[must_use]
pub struct SocketEmit<'a> {
    socket: &'a Socket,
    attachments: Vec<Bytes>,
    timeout: Option<Duration>,
    volatile: bool,
}

impl SocketEmit<'_> {
    /// Binary attachments (see [`Socket::bin`]).
    pub fn bin(mut self, attachments: Vec<Bytes>) -> Self {
        self.attachments = attachments;
        self
    }

    /// How long `emit_with_ack` waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Drops the emit if the client is not ready to take it at once.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Sends the event (unless it is volatile and the client is busy).
    pub fn emit<T: Serialize + ?Sized>(self, event: &str, data: &T) -> Result<(), EmitError> {
        if self.volatile && !self.socket.conn.is_writable() {
            return Ok(());
        }
        let packet = self.packet(event, data, None)?;
        self.socket.send_packet(&packet)
    }

    /// Sends the event and waits for the client's ack.
    pub async fn emit_with_ack<V: DeserializeOwned, T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<V, AckError> {
        let socket = self.socket;
        let timeout = self.timeout.unwrap_or_else(|| socket.nsp.ack_timeout());
        if !socket.connected() {
            // Nothing would ever answer, nor drop, the request.
            return Err(AckError::Disconnected);
        }
        let id = socket.nsp.next_ack_id();
        let rx = socket.register_ack(id);
        let sent = self
            .packet(event, data, Some(id))
            .and_then(|packet| socket.send_packet(&packet));
        if let Err(err) = sent {
            socket.forget_ack(id);
            return Err(err.into());
        }
        Ok(socket.await_ack(id, rx, timeout).await?.data()?)
    }

    fn packet<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        id: Option<u64>,
    ) -> Result<Packet, EmitError> {
        event_packet(self.socket.ns(), event, data, id, self.attachments.clone())
    }
}

/// The EVENT packet for an emit.
pub(crate) fn event_packet<T: Serialize + ?Sized>(
    ns: &str,
    event: &str,
    data: &T,
    id: Option<u64>,
    attachments: Vec<Bytes>,
) -> Result<Packet, EmitError> {
    let mut packet = Packet::event(ns, event, data, attachments)?;
    if let PacketData::Event { id: ack_id, .. } = &mut packet.data {
        *ack_id = id;
    }
    Ok(packet)
}
