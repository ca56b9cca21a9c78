//! Namespaces: the handlers a user registers, and the sockets connected to each namespace.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;

use crate::ack::{AckError, AckResponse, AckSender, AckTarget};
use crate::adapter::{
    AckStream, AdapterError, Backend, BroadcastOptions, ClusterRequest, ClusterResponse,
    HandlerFuture, LocalAdapter, RequestHandler, Room,
};
use crate::emit::frames;
use crate::engine::Sid;
use crate::extensions::Extensions;
use crate::extract::Context;
use crate::handler::{
    ConnectError, Erased, Handler, HandlerResult, InFlight, MiddlewareResult, erase, run,
};
use crate::parser::Parser;
use crate::parser::{Packet, PacketData};
use crate::recovery::{BroadcastLog, Recovery, RecoveryConfig, Session, SessionStore};
use crate::socket::{DisconnectReason, Socket, SocketRef};

/// The handlers of a namespace, built before the server starts.
///
/// ```
/// use sio_core::{AckSender, Data, Namespace, SocketRef};
/// use serde_json::Value;
///
/// let chat = Namespace::new("/chat")
///     .on_connect(|socket: SocketRef| async move {
///         socket.join("lobby");
///     })
///     .on("message", |socket: SocketRef, Data(text): Data<String>| async move {
///         let _ = socket.to("lobby").emit("message", &text);
///     })
///     .on("ping", |ack: AckSender| async move {
///         let _ = ack.send("pong");
///     });
/// # let _ = chat;
/// ```
#[derive(Clone)]
pub struct Namespace {
    path: String,
    handlers: Handlers,
}

/// An event handler: its reply is the ack's answer, or an error (see [`HandlerResult`]).
pub(crate) type EventHandler = Erased<Result<Option<Vec<Value>>, String>>;

#[derive(Clone, Default)]
pub(crate) struct Handlers {
    events: HashMap<String, EventHandler>,
    any: Option<EventHandler>,
    connect: Option<EventHandler>,
    disconnect: Option<EventHandler>,
    disconnecting: Option<EventHandler>,
    server_events: HashMap<String, EventHandler>,
    middlewares: Vec<Erased<Option<ConnectError>>>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut events: Vec<_> = self.handlers.events.keys().collect();
        events.sort();
        f.debug_struct("Namespace")
            .field("path", &self.path)
            .field("events", &events)
            .field("middlewares", &self.handlers.middlewares.len())
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// A namespace at `path` (a leading `/` is added when missing).
    pub fn new(path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Namespace {
            path,
            handlers: Handlers::default(),
        }
    }

    /// The namespace's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Handles the event `event` (`socket.on(event, ...)`); a second handler for the same
    /// event replaces the first.
    pub fn on<H, T>(mut self, event: impl Into<String>, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers
            .events
            .insert(event.into(), erase(handler, HandlerResult::into_reply));
        self
    }

    /// Handles every event, before its own handler (`socket.onAny(...)`); take
    /// [`Event`](crate::Event) to know which one.
    pub fn on_any<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers.any = Some(erase(handler, HandlerResult::into_reply));
        self
    }

    /// Runs when a socket has connected (`io.on("connection", ...)`); [`Data`](crate::Data)
    /// gives the auth payload.
    pub fn on_connect<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers.connect = Some(erase(handler, HandlerResult::into_reply));
        self
    }

    /// Runs when a socket has disconnected; take [`DisconnectReason`] to know why.
    pub fn on_disconnect<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers.disconnect = Some(erase(handler, HandlerResult::into_reply));
        self
    }

    /// Runs when a socket is about to disconnect, before it leaves its rooms (Node's
    /// `disconnecting`): what the handler reads of `socket.rooms()` before its first `.await`
    /// is the rooms the socket was in. Take [`DisconnectReason`] to know why.
    pub fn on_disconnecting<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers.disconnecting = Some(erase(handler, HandlerResult::into_reply));
        self
    }

    /// Handles an event that another node of the cluster sent with
    /// [`SocketIo::server_side_emit`](crate::SocketIo::server_side_emit) (`io.on(event)` for
    /// server-side events in Node). There is no socket: [`Data`](crate::Data),
    /// [`Args`](crate::Args), [`Event`](crate::Event) and [`State`](crate::State) apply.
    pub fn on_server_event<H, T>(mut self, event: impl Into<String>, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: HandlerResult,
    {
        self.handlers
            .server_events
            .insert(event.into(), erase(handler, HandlerResult::into_reply));
        self
    }

    /// Runs before a socket connects (`namespace.use(...)`), in the order added; the first
    /// error refuses the connection with a `CONNECT_ERROR` carrying its message and data.
    ///
    /// ```
    /// use sio_core::{Auth, ConnectError, Namespace};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Token { token: String }
    ///
    /// let ns = Namespace::new("/").middleware(|Auth(auth): Auth<Token>| async move {
    ///     if auth.token == "secret" { Ok(()) } else { Err(ConnectError::new("not authorized")) }
    /// });
    /// # let _ = ns;
    /// ```
    pub fn middleware<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T>,
        T: 'static,
        <H::Future as Future>::Output: MiddlewareResult,
    {
        self.handlers
            .middlewares
            .push(erase(handler, MiddlewareResult::into_refusal));
        self
    }

    /// Registers the handlers of `service`: a function annotated with one of the attribute
    /// macros ([`on`](crate::on), [`on_connect`](crate::on_connect)...), the way actix-web's
    /// `App::service` takes a `#[get]` function. The handler is stored exactly as if it had
    /// been given to [`on`](Self::on) and the others.
    ///
    /// ```
    /// use sio_core::{AckSender, Data, Namespace, on};
    ///
    /// #[on("add")]
    /// async fn add(Data((a, b)): Data<(i64, i64)>, ack: AckSender) {
    ///     let _ = ack.send(&(a + b));
    /// }
    ///
    /// let ns = Namespace::new("/").service(add);
    /// # let _ = ns;
    /// ```
    pub fn service(self, service: impl HandlerService) -> Self {
        service.register(self)
    }

    pub(crate) fn into_parts(self) -> (String, Arc<Handlers>) {
        (self.path, Arc::new(self.handlers))
    }
}

/// Something that registers handlers on a [`Namespace`], given to [`Namespace::service`].
///
/// The attribute macros ([`on`](crate::on), [`on_connect`](crate::on_connect)...) implement it
/// for the unit struct they generate in place of the function; implementing it by hand lets a
/// library hand out a reusable group of handlers.
///
/// ```
/// use sio_core::{HandlerService, Namespace, SocketRef};
///
/// /// Says hello to every socket that connects.
/// struct Greeter;
///
/// impl HandlerService for Greeter {
///     fn register(self, ns: Namespace) -> Namespace {
///         ns.on_connect(|socket: SocketRef| async move {
///             let _ = socket.emit("hello", "world");
///         })
///     }
/// }
///
/// let ns = Namespace::new("/").service(Greeter);
/// # let _ = ns;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be registered with `Namespace::service`",
    note = "annotate the handler function with a sio attribute: `#[on(\"event\")]`, `#[on_connect]`, `#[on_disconnect]`, `#[on_any]`, `#[middleware]`..."
)]
pub trait HandlerService {
    /// Adds the handlers to `ns`.
    fn register(self, ns: Namespace) -> Namespace;
}

/// Runs a namespace's event handlers without a connection (benchmarks): the same lookup,
/// extraction and call as for a client's event, in a context without a socket.
#[doc(hidden)]
pub struct EventDispatch {
    handlers: Arc<Handlers>,
    shared: Arc<Shared>,
}

impl fmt::Debug for EventDispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDispatch").finish_non_exhaustive()
    }
}

impl EventDispatch {
    /// The handlers of `ns`, with default server settings.
    pub fn new(ns: Namespace) -> Self {
        EventDispatch {
            handlers: ns.into_parts().1,
            shared: Arc::default(),
        }
    }

    /// Calls the handler of `event` with `args`; false when there is none.
    pub fn dispatch(&self, event: &str, args: Vec<Value>) -> bool {
        let Some(handler) = self.handlers.events.get(event) else {
            return false;
        };
        let mut ctx = Context::server(self.shared.clone());
        ctx.event = Some(event.to_owned());
        ctx.args = Some(args);
        call(handler, ctx, "event");
        true
    }
}

/// What every namespace of one server shares.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Extensions,
    /// Handlers still running (see `SocketIo::shutdown`).
    pub(crate) in_flight: Arc<InFlight>,
    /// Handlers that returned an error, for monitoring.
    pub(crate) handler_errors: AtomicU64,
    pub(crate) ack_timeout: Duration,
    pub(crate) recovery: Option<RecoveryConfig>,
    pub(crate) parser: Parser,
    pub(crate) backend: Option<Arc<dyn Backend>>,
}

/// A namespace at run time: its handlers, its sockets and its rooms.
pub(crate) struct Nsp {
    path: String,
    handlers: Arc<Handlers>,
    sockets: RwLock<HashMap<Sid, SocketRef>>,
    adapter: LocalAdapter,
    recovery: Option<Recovery>,
    /// Ack ids, shared by the namespace's sockets so that a broadcast can use one for all.
    next_ack: AtomicU64,
    shared: Arc<Shared>,
    /// Whether the task that keeps this namespace's stored sessions alive runs.
    refreshing: AtomicBool,
}

impl fmt::Debug for Nsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nsp")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Nsp {
    pub(crate) fn new(path: String, handlers: Arc<Handlers>, shared: Arc<Shared>) -> Arc<Self> {
        let nsp = Arc::new(Nsp {
            path,
            handlers,
            sockets: RwLock::new(HashMap::new()),
            adapter: LocalAdapter::default(),
            recovery: shared.recovery.clone().map(|config| {
                let backend_log = shared
                    .backend
                    .as_ref()
                    .is_some_and(|b| b.broadcast_log().is_some());
                Recovery::new(config, backend_log)
            }),
            next_ack: AtomicU64::new(0),
            shared,
            refreshing: AtomicBool::new(false),
        });
        if let Some(backend) = &nsp.shared.backend {
            let handler: Weak<dyn RequestHandler> = Arc::downgrade(&nsp) as Weak<Nsp>;
            backend.register(&nsp.path, handler);
        }
        nsp
    }

    /// The sockets of this node that `opts` chooses.
    pub(crate) fn local_sockets(&self, opts: &BroadcastOptions) -> Vec<SocketRef> {
        if opts.rooms.is_empty() && opts.except.is_empty() {
            // To everyone (but perhaps the sender): no room index, no lookup per socket.
            return self
                .read()
                .iter()
                .filter(|(sid, _)| opts.except_sid != Some(**sid))
                .map(|(_, socket)| socket.clone())
                .collect();
        }
        let ids = self.adapter.targets(opts, || self.socket_ids());
        let sockets = self.read();
        ids.into_iter()
            .filter_map(|sid| sockets.get(&sid).cloned())
            .collect()
    }

    /// Sends a packet to the sockets of this node that `opts` chooses; it is encoded once.
    pub(crate) fn deliver(&self, packet: &Packet, opts: &BroadcastOptions, volatile: bool) {
        let frames = frames(self.parser(), packet);
        for socket in self.local_sockets(opts) {
            if volatile && !socket.conn().is_writable() {
                continue;
            }
            if let Err(err) = socket.conn().send_all(frames.iter().cloned()) {
                tracing::debug!(socket = %socket.id(), %err, "broadcast skipped a socket");
            }
        }
    }

    /// A new ack id.
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.next_ack.fetch_add(1, AtomicOrdering::Relaxed)
    }

    /// Sends `packet` (with its ack id) to the chosen sockets of this node, and returns one
    /// future per socket that got it, for its ack. The packets leave before this returns.
    pub(crate) fn send_with_acks(
        &self,
        packet: &Packet,
        opts: &BroadcastOptions,
        timeout: Duration,
    ) -> Vec<impl Future<Output = Result<AckResponse, AckError>> + Send + 'static> {
        let PacketData::Event { id: Some(id), .. } = &packet.data else {
            return Vec::new();
        };
        let id = *id;
        let frames = frames(self.parser(), packet);
        let mut waits = Vec::new();
        for socket in self.local_sockets(opts) {
            let rx = socket.register_ack(id);
            if socket.conn().send_all(frames.iter().cloned()).is_err() {
                socket.forget_ack(id);
                continue;
            }
            waits.push(async move { socket.await_ack(id, rx, timeout).await });
        }
        waits
    }

    /// Sends a request to the other nodes, if there is a cluster.
    pub(crate) fn publish(&self, request: ClusterRequest) {
        if let Some(backend) = &self.shared.backend {
            backend.publish(&self.path, request);
        }
    }

    /// Asks the other nodes, if there is a cluster, waiting at most `timeout` for them.
    pub(crate) async fn request(
        &self,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Result<Vec<ClusterResponse>, AdapterError> {
        match &self.shared.backend {
            Some(backend) => backend.request(&self.path, request, timeout).await,
            None => Ok(Vec::new()),
        }
    }

    /// Applies a cluster request to this node's sockets, at once; the answer may come later.
    pub(crate) fn handle_local(&self, request: ClusterRequest) -> HandlerFuture {
        let done = |response| -> HandlerFuture { Box::pin(std::future::ready(response)) };
        match request {
            ClusterRequest::BroadcastWithAck {
                packet,
                opts,
                timeout,
            } => {
                let acks = self.broadcast_with_ack(packet, opts, timeout).acks;
                return Box::pin(async move { ClusterResponse::Acks(acks.collect().await) });
            }
            ClusterRequest::Broadcast {
                mut packet,
                opts,
                volatile,
                offset,
                ..
            } => {
                let _gate = self.recovery.as_ref().map(Recovery::broadcasting);
                match (offset, &self.recovery) {
                    (Some(offset), Some(recovery)) => {
                        recovery.take_logged(&mut packet, &opts, volatile, offset);
                    }
                    (None, _) if !volatile && !self.backend_logs() => {
                        self.log_remote_broadcast(&mut packet, &opts);
                    }
                    _ => {}
                }
                self.deliver(&packet, &opts, volatile);
            }
            ClusterRequest::FetchSockets { opts } => {
                let sockets = self
                    .local_sockets(&opts)
                    .iter()
                    .map(|s| s.describe())
                    .collect();
                return done(ClusterResponse::Sockets(sockets));
            }
            ClusterRequest::SocketsJoin { opts, rooms } => {
                for socket in self.local_sockets(&opts) {
                    socket.join(rooms.clone());
                }
            }
            ClusterRequest::SocketsLeave { opts, rooms } => {
                for socket in self.local_sockets(&opts) {
                    socket.leave(rooms.clone());
                }
            }
            ClusterRequest::DisconnectSockets { opts, close } => {
                for socket in self.local_sockets(&opts) {
                    if close {
                        socket.close();
                    } else {
                        socket.disconnect();
                    }
                }
            }
            ClusterRequest::ServerSideEmit { args, ack } => {
                let mut args = args.into_iter();
                let event = match args.next() {
                    Some(Value::String(event)) => event,
                    _ => return done(ClusterResponse::Done),
                };
                let Some(handler) = self.handlers.server_events.get(&event) else {
                    return done(ClusterResponse::Acks(Vec::new()));
                };
                let mut ctx = Context::server(self.shared.clone());
                ctx.event = Some(event);
                ctx.args = Some(args.collect());
                let answer = ack.then(|| {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    ctx.server_ack = Some(tx);
                    rx
                });
                call(handler, ctx, "server event");
                if let Some(answer) = answer {
                    // A handler that drops its AckSender answers nothing.
                    return Box::pin(async move {
                        ClusterResponse::Acks(answer.await.into_iter().collect())
                    });
                }
            }
        }
        done(ClusterResponse::Done)
    }

    /// Keeps another node's broadcast for this node's recovering clients: its last argument
    /// is the sending node's number for it, which gives way to the offset of this node's
    /// clients.
    fn log_remote_broadcast(&self, packet: &mut Packet, opts: &BroadcastOptions) {
        if let Some(recovery) = &self.recovery {
            recovery.take_remote(packet, opts);
        }
    }

    /// Adds a socket to rooms of this node's index.
    pub(crate) fn join(&self, sid: Sid, rooms: Vec<Room>) {
        let created = self.adapter.join(sid, rooms);
        self.rooms_changed(&created, &[]);
    }

    /// Removes a socket from rooms of this node's index.
    pub(crate) fn leave(&self, sid: Sid, rooms: Vec<Room>) {
        let deleted = self.adapter.leave(sid, rooms);
        self.rooms_changed(&[], &deleted);
    }

    fn rooms_changed(&self, created: &[Room], deleted: &[Room]) {
        if let Some(backend) = &self.shared.backend
            && !(created.is_empty() && deleted.is_empty())
        {
            backend.rooms_changed(&self.path, created, deleted);
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn adapter(&self) -> &LocalAdapter {
        &self.adapter
    }

    /// The namespace's recovery state, when connection state recovery is on.
    pub(crate) fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Whether the backend keeps the cluster's broadcast log ([`Backend::broadcast_log`]): it
    /// then hands this node's own broadcasts back, with their offsets.
    pub(crate) fn backend_logs(&self) -> bool {
        self.broadcast_log_any().is_some()
    }

    fn broadcast_log_any(&self) -> Option<&dyn BroadcastLog> {
        self.shared.backend.as_ref()?.broadcast_log()
    }

    /// The cluster's broadcast log, when recovery is on and the backend keeps one.
    pub(crate) fn broadcast_log(&self) -> Option<&dyn BroadcastLog> {
        self.recovery.as_ref()?;
        self.broadcast_log_any()
    }

    /// The cluster's session store, when recovery is on and the backend has one.
    pub(crate) fn session_store(&self) -> Option<&dyn SessionStore> {
        self.recovery.as_ref()?;
        self.shared.backend.as_ref()?.session_store()
    }

    /// Writes a connected socket's session through to the store, so that its client can
    /// recover on another node even if this one is killed. A socket that left writes nothing:
    /// a `join` or `set_data` after a kick must not bring its session back.
    pub(crate) fn save_session(&self, socket: &Socket) {
        let _membership = socket.membership();
        if socket.connected() {
            self.write_session(socket);
        }
    }

    /// [`Nsp::save_session`] for a caller that holds the socket's membership lock and saw it
    /// connected.
    pub(crate) fn write_session(&self, socket: &Socket) {
        let (Some(store), Some(recovery), Some(pid)) =
            (self.session_store(), &self.recovery, socket.pid())
        else {
            return;
        };
        // Linked to its connection, so that a node can adopt a POST of that connection
        // whose owner died (see `crate::adoption`).
        store.save_linked(
            &socket.conn().sid().to_string(),
            &self.path,
            &self.session_of(socket, pid).to_stored(),
            recovery.config().max_disconnection_duration,
        );
    }

    /// Marks `socket` disconnected and leaves its session for its client's return (released
    /// in the store, or kept in this node's memory), unless `reason` says it will not come
    /// back: then the store forgets it. The caller holds the socket's membership lock, so that
    /// no save that saw the socket connected lands after this.
    fn leave_session(&self, socket: &Socket, reason: DisconnectReason) {
        let (Some(recovery), Some(pid)) = (&self.recovery, socket.pid()) else {
            return;
        };
        match self.session_store() {
            // Rewritten now so that it lasts max_disconnection_duration from the disconnection.
            Some(store) if reason.is_recoverable() => store.release(
                &self.path,
                &self.session_of(socket, pid).to_stored(),
                recovery.config().max_disconnection_duration,
            ),
            Some(store) => store.remove(&self.path, &pid.to_string()),
            None if reason.is_recoverable() => recovery.persist(self.session_of(socket, pid)),
            None => {}
        }
    }

    /// What a client needs to recover `socket`, whose private session id is `pid`.
    fn session_of(&self, socket: &Socket, pid: Sid) -> Session {
        Session {
            sid: socket.id(),
            pid,
            rooms: self.adapter.rooms_of(socket.id()),
            data: socket.data(),
        }
    }

    /// Starts (once) the task that rewrites the sessions of this namespace's sockets before
    /// they expire; it ends with the namespace.
    fn keep_sessions_alive(self: &Arc<Self>) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if self.session_store().is_none() || self.refreshing.swap(true, AtomicOrdering::Relaxed) {
            return;
        }
        let every =
            (recovery.config().max_disconnection_duration / 4).max(Duration::from_millis(100));
        let nsp = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(nsp) = nsp.upgrade() else {
                    return;
                };
                let sockets: Vec<SocketRef> = nsp.read().values().cloned().collect();
                for (n, socket) in sockets.iter().enumerate() {
                    nsp.save_session(socket);
                    // Many sockets: give the worker back between chunks.
                    if n % 1024 == 1023 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn parser(&self) -> Parser {
        self.shared.parser
    }

    pub(crate) fn ack_timeout(&self) -> Duration {
        self.shared.ack_timeout
    }

    pub(crate) fn has_middlewares(&self) -> bool {
        !self.handlers.middlewares.is_empty()
    }

    /// The number of sockets connected to this namespace on this node.
    pub(crate) fn socket_count(&self) -> usize {
        self.read().len()
    }

    /// The number of rooms of this node's sockets in this namespace.
    pub(crate) fn room_count(&self) -> usize {
        self.adapter.room_count()
    }

    /// The acks this namespace's sockets wait for.
    pub(crate) fn pending_acks(&self) -> usize {
        self.read().values().map(|s| s.pending_acks()).sum()
    }

    pub(crate) fn socket_ids(&self) -> Vec<Sid> {
        self.read().keys().copied().collect()
    }

    /// Runs the middlewares in order; the first refusal wins.
    pub(crate) async fn run_middlewares(&self, socket: &SocketRef) -> Result<(), ConnectError> {
        for middleware in &self.handlers.middlewares {
            let mut ctx = connect_context(socket);
            let fut = middleware(&mut ctx).map_err(|err| {
                tracing::debug!(target: "sio::rejection", %err, "middleware argument rejected");
                ConnectError::new(err.to_string())
            })?;
            if let Some(refusal) = fut.await {
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Adds a socket that passed the middlewares; false when a socket with its id is connected
    /// already (a recovered session whose socket is still live), which is left alone.
    pub(crate) fn add_socket(&self, socket: SocketRef) -> bool {
        {
            // Held until the socket is in its own room: a disconnection that finds it in the
            // namespace then finds it in the room too.
            let _membership = socket.membership();
            {
                let mut sockets = self.write();
                let std::collections::hash_map::Entry::Vacant(place) = sockets.entry(socket.id())
                else {
                    return false;
                };
                socket.set_connected(true);
                place.insert(socket.clone());
            }
            self.join(socket.id(), vec![socket.id().to_string()]);
        }
        socket.nsp().keep_sessions_alive();
        true
    }

    /// Runs the connect handler of a socket that was just added.
    pub(crate) fn on_connected(&self, socket: &SocketRef) {
        if let Some(handler) = &self.handlers.connect {
            call(handler, connect_context(socket), "connect");
        }
    }

    /// Removes a socket (once) and runs the disconnect handler.
    pub(crate) fn remove_socket(&self, socket: &Socket, reason: DisconnectReason) {
        self.remove(socket, reason, true);
    }

    /// Removes a socket that an adoption restored for one POST (see `crate::adoption`) and
    /// leaves its session for its client's return. No handler runs: its connect handler did
    /// not run either, and for the application the socket stays connected until its client
    /// comes back (or does not).
    pub(crate) fn let_go(&self, socket: &Socket) {
        self.remove(socket, DisconnectReason::TransportClose, false);
    }

    fn remove(&self, socket: &Socket, reason: DisconnectReason, handlers: bool) {
        let socket = {
            let mut sockets = self.write();
            // Only this very socket: another with the same id (a recovered session) stays.
            match sockets.get(&socket.id()) {
                Some(found) if std::ptr::eq::<Socket>(&**found, socket) => {}
                _ => return,
            }
            let Some(socket) = sockets.remove(&socket.id()) else {
                return;
            };
            socket
        };
        if let (true, Some(handler)) = (handlers, &self.handlers.disconnecting) {
            let mut ctx = Context::new(socket.clone());
            ctx.reason = Some(reason);
            call(handler, ctx, "disconnecting");
        }
        let deleted = {
            let _membership = socket.membership();
            socket.set_connected(false);
            self.leave_session(&socket, reason);
            self.adapter.leave_all(socket.id())
        };
        self.rooms_changed(&[], &deleted);
        socket.conn().data.remove(&socket);
        socket.drop_acks();
        tracing::debug!(socket = %socket.id(), ns = %self.path, %reason, "socket disconnected");
        if let (true, Some(handler)) = (handlers, &self.handlers.disconnect) {
            let mut ctx = Context::new(socket);
            ctx.reason = Some(reason);
            call(handler, ctx, "disconnect");
        }
    }

    /// Runs the handlers of an event (the catch-all one first).
    pub(crate) fn dispatch(
        &self,
        socket: &SocketRef,
        event: String,
        args: Vec<Value>,
        id: Option<u64>,
        attachments: Vec<Bytes>,
    ) {
        let own = self.handlers.events.get(&event);
        let ctx = |event, args, attachments| Context {
            event: Some(event),
            args: Some(args),
            attachments: Some(attachments),
            ack_id: id,
            ..Context::new(socket.clone())
        };
        match (&self.handlers.any, own) {
            (Some(any), Some(own)) => {
                let first = ctx(event.clone(), args.clone(), attachments.clone());
                call(any, first, "event");
                call(own, ctx(event, args, attachments), "event");
            }
            (Some(one), None) | (None, Some(one)) => {
                call(one, ctx(event, args, attachments), "event");
            }
            (None, None) => {
                tracing::trace!(socket = %socket.id(), %event, "no handler for the event");
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, SocketRef>> {
        self.sockets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Sid, SocketRef>> {
        self.sockets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn connect_context(socket: &SocketRef) -> Context {
    let mut ctx = Context::new(socket.clone());
    ctx.args = Some(vec![socket.handshake().auth.clone()]);
    ctx
}

/// Calls a handler, logging a rejected argument or a returned error.
///
/// What the handler returns answers the ack its caller waits for, unless the handler's
/// [`AckSender`] answered it already: `Ok(value)` as `value`, an error as one argument,
/// `{"error": "<the error>"}`.
fn call(handler: &EventHandler, mut ctx: Context, kind: &'static str) {
    // Only ids (Copy) are kept for the logs: formatting them on every call cost an allocation
    // and a base64 encoding per event, for logs that are rarely written.
    let socket = ctx.socket.as_ref().map(|s| s.id());
    // Read before the call: a handler's AckSender takes the ack id out of the context.
    let client_ack = ctx.socket.clone().map(|s| AckTarget::Client(s, ctx.ack_id));
    match handler(&mut ctx) {
        Ok(fut) => {
            // After the call: a server-side event's answer channel is still here unless the
            // handler's AckSender took it.
            let target = client_ack.unwrap_or_else(|| AckTarget::Server(ctx.server_ack.take()));
            let reply_to = AckSender::new(target, ctx.acked.clone());
            let event = ctx.event.take();
            let shared = ctx.shared.clone();
            let connection = ctx.socket.as_ref().map(|s| s.conn().data.handlers());
            run(fut, &ctx.shared.in_flight, connection, move |reply| {
                let args = match reply {
                    Ok(Some(args)) => args,
                    Ok(None) => return,
                    Err(err) => {
                        shared.handler_errors.fetch_add(1, AtomicOrdering::Relaxed);
                        tracing::warn!(target: "sio::handler", socket = %caller(socket), handler = event.as_deref().unwrap_or(kind), %err, "handler failed");
                        let mut error = serde_json::Map::new();
                        error.insert("error".into(), Value::String(err));
                        vec![Value::Object(error)]
                    }
                };
                if let Err(err) = reply_to.answer(args) {
                    tracing::debug!(socket = %caller(socket), handler = event.as_deref().unwrap_or(kind), %err, "cannot send the ack");
                }
            });
        }
        Err(err) => {
            tracing::debug!(target: "sio::rejection", socket = %caller(socket), handler = ctx.event.as_deref().unwrap_or(kind), %err, "handler not called");
        }
    }
}

/// Who a handler ran for, in logs: a socket id, or the server (server-side events).
fn caller(socket: Option<Sid>) -> String {
    socket.map_or_else(|| "server".to_owned(), |sid| sid.to_string())
}

impl RequestHandler for Nsp {
    fn handle(&self, request: ClusterRequest) -> HandlerFuture {
        self.handle_local(request)
    }

    fn log_reached(&self, offset: &str) {
        if let Some(recovery) = &self.recovery {
            let _gate = recovery.broadcasting();
            recovery.log_reached(offset);
        }
    }

    fn broadcast_with_ack(
        &self,
        mut packet: Packet,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> AckStream {
        // Ack ids belong to this node's namespace: the sender's id could be in use here.
        if let PacketData::Event { id, .. } = &mut packet.data {
            *id = Some(self.next_ack_id());
        }
        let waits = self.send_with_acks(&packet, &opts, timeout);
        AckStream {
            count: waits.len(),
            acks: Box::pin(
                waits
                    .into_iter()
                    .collect::<FuturesUnordered<_>>()
                    .filter_map(|ack| std::future::ready(ack.ok())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::extract::{Data, State};

    fn nsp(ns: Namespace) -> Arc<Nsp> {
        let (path, handlers) = ns.into_parts();
        Nsp::new(path, handlers, Arc::default())
    }

    async fn server_event(nsp: &Nsp, event: &str) -> ClusterResponse {
        nsp.handle_local(ClusterRequest::ServerSideEmit {
            args: vec![json!(event), json!(20)],
            ack: true,
        })
        .await
    }

    #[tokio::test]
    async fn a_server_event_handler_answers_with_its_return_value() {
        let nsp = nsp(Namespace::new("/")
            .on_server_event("double", |Data(n): Data<i64>| async move {
                Ok::<_, String>(n * 2)
            })
            .on_server_event("fail", || async { Err::<(), _>("no") })
            .on_server_event("state", |_: State<u8>| async { Ok::<_, String>(1) }));
        let answer = |args| {
            ClusterResponse::Acks(vec![AckResponse {
                args,
                attachments: vec![],
            }])
        };
        assert_eq!(server_event(&nsp, "double").await, answer(vec![json!(40)]));
        assert_eq!(
            server_event(&nsp, "fail").await,
            answer(vec![json!({"error": "no"})])
        );
        // A handler that is not called (no such state) answers nothing.
        assert_eq!(
            server_event(&nsp, "state").await,
            ClusterResponse::Acks(vec![])
        );
    }
}
