//! The server handle: configuration, namespaces, and the actix-web service.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use serde::de::DeserializeOwned;

use crate::ack::AckError;
use crate::adapter::{AdapterError, Backend, BroadcastOptions};
use crate::client::Client;
use crate::emit::EmitError;
use actix_web::dev::HttpServiceFactory;

use crate::adapter::{
    ClusterForwarder, ClusterForwarderRef, ForwardLimits, ForwardStats, Serve, ServeFuture,
};
use crate::engine::{
    Engine, EngineConfig, EngineConfigBuilder, ForwardedRequest, ForwardedResponse, TrafficStats,
};
use crate::extensions::Extensions;
use crate::namespace::{Handlers, Namespace, Nsp, Shared};
use crate::operators::{BroadcastOperators, RoomParam};
use crate::parser::{Limits, Parser};
use crate::recovery::RecoveryConfig;
use crate::socket::SocketRef;

/// Socket.IO settings on top of the Engine.IO ones, with Node's names and defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SocketIoConfig {
    /// Time a connection has to join a namespace before it is closed (`connectTimeout`).
    /// Default 45 s.
    pub connect_timeout: Duration,
    /// Default time `emit_with_ack` waits for answers. Default 5 s.
    pub ack_timeout: Duration,
    /// Limits of the packet decoder (binary attachments per packet and their size).
    pub parser_limits: Limits,
    /// Connection state recovery (`connectionStateRecovery`). Default off.
    pub recovery: Option<RecoveryConfig>,
    /// The packet format (`parser`). Default JSON.
    pub parser: Parser,
    /// How many namespaces [`SocketIoBuilder::dynamic_namespace`] may create; a client asking
    /// for one more gets `Invalid namespace`. Each one costs memory, and subscriptions on a
    /// Redis backend, for the server's lifetime: without a bound one client could create them
    /// by the million. Default 10,000.
    pub max_dynamic_namespaces: usize,
}

/// The cluster backend, kept apart from the plain settings so that they stay `Clone + Debug`
/// without requiring it of every backend.
type BackendRef = Option<Arc<dyn Backend>>;

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_secs(45),
            ack_timeout: Duration::from_secs(5),
            parser_limits: Limits::default(),
            recovery: None,
            parser: Parser::Json,
            max_dynamic_namespaces: 10_000,
        }
    }
}

type Predicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Whether a client may name a dynamic namespace `path`, whatever the application's predicate
/// says: not too long, and none of the characters that take a meaning where namespace names
/// become cluster channel names (`#` separates a channel's parts in Node's adapters) or log
/// lines (control characters).
fn dynamic_name_allowed(path: &str) -> bool {
    path.len() <= MAX_DYNAMIC_NAME && !path.chars().any(|c| c == '#' || c.is_control())
}

/// The longest name a dynamic namespace may have, in bytes.
const MAX_DYNAMIC_NAME: usize = 256;

/// What the Engine.IO handler shares with the [`SocketIo`] handle.
pub(crate) struct IoInner {
    pub(crate) config: SocketIoConfig,
    shared: Arc<Shared>,
    namespaces: RwLock<HashMap<String, Arc<Nsp>>>,
    /// How many of `namespaces` the builder made (the others were made on demand).
    fixed: usize,
    dynamic: Vec<(Predicate, Arc<Handlers>)>,
}

impl fmt::Debug for IoInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoInner")
            .field("config", &self.config)
            .field("dynamic", &self.dynamic.len())
            .finish_non_exhaustive()
    }
}

impl IoInner {
    /// The cluster's session store, when recovery is on and the backend has one.
    pub(crate) fn session_store(&self) -> Option<&dyn crate::SessionStore> {
        self.config.recovery.as_ref()?;
        self.shared.backend.as_ref()?.session_store()
    }

    /// The namespace at `path`, created on first use when a dynamic namespace matches it.
    pub(crate) fn namespace(&self, path: &str) -> Option<Arc<Nsp>> {
        if let Some(nsp) = self.read().get(path) {
            return Some(nsp.clone());
        }
        if !dynamic_name_allowed(path) {
            return None;
        }
        let handlers = self
            .dynamic
            .iter()
            .find(|(matches, _)| matches(path))
            .map(|(_, handlers)| handlers.clone())?;
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let created = namespaces.len().saturating_sub(self.fixed);
        if !namespaces.contains_key(path) && created >= self.config.max_dynamic_namespaces {
            tracing::warn!(
                max = self.config.max_dynamic_namespaces,
                "max_dynamic_namespaces reached, namespace refused"
            );
            return None;
        }
        let nsp = namespaces
            .entry(path.to_owned())
            .or_insert_with(|| Nsp::new(path.to_owned(), handlers, self.shared.clone()));
        Some(nsp.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Nsp>>> {
        self.namespaces
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A Socket.IO server. Cheap to clone: build it once, outside `HttpServer::new`, and give each
/// worker's `App` its [`service`](SocketIo::service).
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use sio_core::{AckSender, Data, Namespace, SocketIo, SocketRef};
/// use serde_json::Value;
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let io = SocketIo::builder()
///         .namespace(Namespace::new("/").on(
///             "echo",
///             |Data(v): Data<Value>, ack: AckSender| async move {
///                 let _ = ack.send(&v);
///             },
///         ))
///         .build();
///     HttpServer::new(move || App::new().service(io.service()))
///         .bind(("127.0.0.1", 3000))?
///         .run()
///         .await
/// }
/// ```
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<IoInner>,
    engine: Engine<Client>,
    /// Sticky-free forwarding over the backend, when on (see [`SocketIoBuilder::forwarding`]).
    forwarder: Option<Arc<ClusterForwarder>>,
}

impl fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIo")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl SocketIo {
    /// A builder with Node's defaults (path `/socket.io/`).
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder {
            engine: EngineConfig::builder().path("/socket.io/"),
            config: SocketIoConfig::default(),
            namespaces: Vec::new(),
            dynamic: Vec::new(),
            state: Extensions::default(),
            backend: None,
            forwarding: true,
            forward_limits: ForwardLimits::default(),
        }
    }

    /// The actix-web service answering on the configured path.
    pub fn service(&self) -> impl HttpServiceFactory + 'static {
        self.engine.service()
    }

    /// Operators on the namespace at `path`, if it exists.
    pub fn of(&self, path: &str) -> Option<BroadcastOperators> {
        let nsp = self.inner.read().get(path).cloned()?;
        Some(BroadcastOperators::new(nsp, BroadcastOptions::default()))
    }

    /// Operators on the main namespace `/` (which always exists).
    fn main(&self) -> BroadcastOperators {
        let nsp = self.inner.namespace("/").unwrap_or_else(|| {
            // `build` always registers `/`; this only guards against a future change of that.
            Nsp::new("/".into(), Arc::default(), self.inner.shared.clone())
        });
        BroadcastOperators::new(nsp, BroadcastOptions::default())
    }

    /// Sends an event to every socket of the main namespace (`io.emit`).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.main().emit(event, data)
    }

    /// Sockets of the main namespace in these rooms (`io.to(room)`).
    pub fn to(&self, rooms: impl RoomParam) -> BroadcastOperators {
        self.main().to(rooms)
    }

    /// Sockets of the main namespace not in these rooms (`io.except(room)`).
    pub fn except(&self, rooms: impl RoomParam) -> BroadcastOperators {
        self.main().except(rooms)
    }

    /// Every socket of the main namespace (`io.fetchSockets()`).
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.main().sockets()
    }

    /// Sends an event to the handlers of the other nodes of the cluster (`io.serverSideEmit`),
    /// registered with [`Namespace::on_server_event`] on the main namespace. Without a cluster
    /// backend it goes nowhere. See [`BroadcastOperators::server_side_emit`] for other
    /// namespaces.
    pub fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EmitError> {
        self.main().server_side_emit(event, data)
    }

    /// Like [`server_side_emit`](Self::server_side_emit), and waits (at most `ack_timeout`)
    /// for the answer each other node's handler gives with its [`AckSender`](crate::AckSender).
    /// Nodes that do not answer in time are left out.
    ///
    /// ```no_run
    /// # async fn f(io: sio_core::SocketIo) {
    /// let counts: Vec<Result<usize, _>> = io.server_side_emit_with_ack("count", &()).await.unwrap();
    /// # }
    /// ```
    pub async fn server_side_emit_with_ack<V: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<Vec<Result<V, serde_json::Error>>, AckError> {
        self.main().server_side_emit_with_ack(event, data).await
    }

    /// Counters for monitoring (what a Prometheus `/metrics` route reports): Engine.IO
    /// traffic, sockets per namespace on this node, handler errors.
    ///
    /// ```
    /// let io = sio_core::SocketIo::builder().build();
    /// let metrics = io.metrics();
    /// assert_eq!(metrics.traffic.sessions, 0);
    /// assert_eq!(metrics.sockets, vec![("/".to_owned(), 0)]);
    /// assert_eq!(metrics.rooms, vec![("/".to_owned(), 0)]);
    /// assert_eq!(metrics.pending_acks, 0);
    /// ```
    pub fn metrics(&self) -> Metrics {
        let namespaces = self.inner.read();
        let per_namespace = |count: fn(&Nsp) -> usize| {
            let mut counts: Vec<(String, usize)> = namespaces
                .iter()
                .map(|(path, nsp)| (path.clone(), count(nsp)))
                .collect();
            counts.sort();
            counts
        };
        let sockets = per_namespace(Nsp::socket_count);
        let rooms = per_namespace(Nsp::room_count);
        let pending_acks = namespaces.values().map(|nsp| nsp.pending_acks()).sum();
        drop(namespaces);
        Metrics {
            traffic: self.engine.traffic(),
            sockets,
            rooms,
            pending_acks,
            handler_errors: self
                .inner
                .shared
                .handler_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            forwarding: self.forwarder.as_ref().map(|f| f.stats()),
        }
    }

    /// The number of nodes in the cluster (1 without a cluster backend).
    pub async fn server_count(&self) -> Result<usize, AdapterError> {
        match &self.inner.shared.backend {
            Some(backend) => backend.server_count().await,
            None => Ok(1),
        }
    }

    /// Closes every connection, telling clients the server is going away (they reconnect, to
    /// another node behind a load balancer), and refuses new ones.
    pub fn close(&self) {
        self.engine.close_all();
    }

    /// Shuts down gracefully, for SIGTERM, all within `grace`: refuses new connections at
    /// once (HTTP 503), lets the handlers that are running finish (so the acks they owe reach
    /// their clients), then closes every connection as [`close`](Self::close) does, closes the
    /// WebSockets this node relays for other nodes' sessions (1001, so that their clients
    /// reconnect at once), waits for the closes to reach the clients (a polling client gets
    /// its close on its next poll, which may come through another node, over the backend),
    /// and leaves the cluster (a Redis backend unsubscribes, so other nodes stop counting
    /// this one).
    ///
    /// ```no_run
    /// # async fn f(io: sio_core::SocketIo) {
    /// io.shutdown(std::time::Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.engine.stop_accepting();
        let idle = self.inner.shared.in_flight.idle();
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            tracing::warn!(?grace, "handlers still running at shutdown; closing anyway");
        }
        self.engine.close_all();
        if let Some(forwarder) = &self.forwarder {
            forwarder.close_tunnels();
        }
        // Neither the sessions nor the tunnels announce their end (a session goes once its
        // close reached the client, or after the ping timeout), and shutdown runs once: look
        // every few milliseconds.
        let closed = async {
            while self.engine.session_count() > 0
                || self
                    .forwarder
                    .as_ref()
                    .is_some_and(|f| f.open_tunnels() > 0)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            tracing::warn!(
                ?grace,
                "connections still closing at shutdown; leaving anyway"
            );
        }
        if let Some(backend) = &self.inner.shared.backend {
            backend.close();
        }
    }
}

/// What [`SocketIo::metrics`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Engine.IO sessions, packets and bytes.
    pub traffic: TrafficStats,
    /// Sockets connected on this node, by namespace.
    pub sockets: Vec<(String, usize)>,
    /// Rooms of this node's sockets, by namespace (each socket's own room included).
    pub rooms: Vec<(String, usize)>,
    /// Acks the server waits for from this node's clients.
    pub pending_acks: usize,
    /// Handlers that returned an error (each answered its ack with `{"error": ...}`).
    pub handler_errors: u64,
    /// Sticky-free forwarding counters; `None` when forwarding is off.
    pub forwarding: Option<ForwardStats>,
}

/// Builds a [`SocketIo`].
#[must_use]
pub struct SocketIoBuilder {
    engine: EngineConfigBuilder,
    config: SocketIoConfig,
    namespaces: Vec<Namespace>,
    dynamic: Vec<(Predicate, Namespace)>,
    state: Extensions,
    backend: BackendRef,
    forwarding: bool,
    forward_limits: ForwardLimits,
}

impl fmt::Debug for SocketIoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIoBuilder")
            .field("engine", &self.engine)
            .field("config", &self.config)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl SocketIoBuilder {
    /// Changes the Engine.IO settings (path, ping interval and timeout, max payload, CORS...).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sio_core::SocketIo;
    ///
    /// let io = SocketIo::builder()
    ///     .engine(|e| e.ping_interval(Duration::from_secs(10)))
    ///     .build();
    /// # let _ = io;
    /// ```
    pub fn engine(
        mut self,
        configure: impl FnOnce(EngineConfigBuilder) -> EngineConfigBuilder,
    ) -> Self {
        self.engine = configure(self.engine);
        self
    }

    /// Sets [`SocketIoConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets [`SocketIoConfig::ack_timeout`].
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.ack_timeout = timeout;
        self
    }

    /// Sets [`SocketIoConfig::max_dynamic_namespaces`].
    pub fn max_dynamic_namespaces(mut self, max: usize) -> Self {
        self.config.max_dynamic_namespaces = max;
        self
    }

    /// Sets [`SocketIoConfig::parser_limits`].
    pub fn parser_limits(mut self, limits: Limits) -> Self {
        self.config.parser_limits = limits;
        self
    }

    /// Makes this server one node of a cluster: broadcasts, room changes, disconnections and
    /// socket lookups reach the sockets of every node sharing the backend (e.g. Redis).
    pub fn adapter(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Sticky-free forwarding: a polling request that reaches this node for a session of
    /// another node (behind a load balancer without sticky sessions) is carried to that node
    /// over the cluster backend and its answer relayed. A WebSocket upgrade for such a session
    /// is accepted here and its messages relayed both ways through a tunnel to the owner, which
    /// runs the upgrade as for a local WebSocket. On by default when the backend of
    /// [`adapter`](Self::adapter) supports it; `false` turns it off (such requests then get
    /// "Session ID unknown", as without a cluster).
    ///
    /// ```
    /// let io = sio_core::SocketIo::builder()
    ///     .adapter(sio_core::MemoryCluster::default().node())
    ///     .forwarding(false)
    ///     .build();
    /// assert_eq!(io.metrics().forwarding, None);
    /// ```
    pub fn forwarding(mut self, on: bool) -> Self {
        self.forwarding = on;
        self
    }

    /// The limits of sticky-free [`forwarding`](Self::forwarding): how long this node waits
    /// for an owner's answer, how many forwarded requests may wait at once (more get a 503,
    /// which clients retry), and how much a tunnel end buffers. The timeout must stay longer
    /// than the ping interval, as a forwarded poll waits that long on its owner.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sio_core::{ForwardLimits, MemoryCluster, SocketIo};
    ///
    /// let io = SocketIo::builder()
    ///     .adapter(MemoryCluster::default().node())
    ///     .forward_limits(ForwardLimits {
    ///         timeout: Duration::from_secs(60),
    ///         max_in_flight: 1_000,
    ///         ..ForwardLimits::default()
    ///     })
    ///     .build();
    /// assert!(io.metrics().forwarding.is_some());
    /// ```
    pub fn forward_limits(mut self, limits: ForwardLimits) -> Self {
        self.forward_limits = limits;
        self
    }

    /// Sets the packet format; clients must use the same (e.g. `socket.io-msgpack-parser`).
    pub fn parser(mut self, parser: Parser) -> Self {
        self.config.parser = parser;
        self
    }

    /// Turns on connection state recovery: clients that lose their connection and come back
    /// within the configured time get their socket id, rooms and missed broadcasts back.
    pub fn connection_state_recovery(mut self, config: RecoveryConfig) -> Self {
        self.config.recovery = Some(config);
        self
    }

    /// Adds a namespace. `/` exists even when not added (with no handlers).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespaces.push(namespace);
        self
    }

    /// Adds namespaces created on demand: the first client that asks for a path `matches`
    /// accepts creates it with `namespace`'s handlers (Node's `io.of(/regex/)`).
    ///
    /// ```
    /// use sio_core::{Namespace, SocketIo};
    ///
    /// let io = SocketIo::builder()
    ///     .dynamic_namespace(|path| path.starts_with("/room-"), Namespace::new("/room-*"))
    ///     .build();
    /// # let _ = io;
    /// ```
    pub fn dynamic_namespace(
        mut self,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        namespace: Namespace,
    ) -> Self {
        self.dynamic.push((Box::new(matches), namespace));
        self
    }

    /// Application state that handlers get with [`State<T>`](crate::State).
    pub fn with_state<T: Clone + Send + Sync + 'static>(self, state: T) -> Self {
        self.state.insert(state);
        self
    }

    /// The server.
    pub fn build(self) -> SocketIo {
        let shared = Arc::new(Shared {
            state: self.state,
            in_flight: Arc::default(),
            handler_errors: AtomicU64::new(0),
            ack_timeout: self.config.ack_timeout,
            recovery: self.config.recovery.clone(),
            parser: self.config.parser,
            backend: self.backend.clone(),
        });
        let mut namespaces = HashMap::new();
        for namespace in self.namespaces {
            let (path, handlers) = namespace.into_parts();
            namespaces.insert(path.clone(), Nsp::new(path, handlers, shared.clone()));
        }
        namespaces
            .entry("/".to_owned())
            .or_insert_with(|| Nsp::new("/".into(), Arc::default(), shared.clone()));
        let dynamic = self
            .dynamic
            .into_iter()
            .map(|(matches, namespace)| (matches, namespace.into_parts().1))
            .collect();
        let inner = Arc::new(IoInner {
            config: self.config,
            shared,
            fixed: namespaces.len(),
            namespaces: RwLock::new(namespaces),
            dynamic,
        });
        let engine = Engine::new(self.engine.build(), Client { io: inner.clone() });
        let forwarder = match self.backend {
            Some(backend) if self.forwarding => {
                // A forwarded poll waits on its owner until the next ping: a shorter timeout
                // would fail every idle one (raised, with a warning).
                let config = engine.config();
                let limits = self
                    .forward_limits
                    .for_heartbeat(config.ping_interval, config.ping_timeout);
                start_forwarding(&engine, backend, limits)
            }
            _ => None,
        };
        SocketIo {
            inner,
            engine,
            forwarder,
        }
    }
}

/// Listens for forwarded requests for this engine's sessions and lets the engine forward the
/// requests for other nodes' sessions; `None` when the backend cannot address one node.
fn start_forwarding(
    engine: &Engine<Client>,
    backend: Arc<dyn Backend>,
    limits: ForwardLimits,
) -> Option<Arc<ClusterForwarder>> {
    // The forwarder is owned by the engine, so it reaches the engine weakly (no cycle).
    let weak = engine.downgrade();
    let serve: Serve = Arc::new(move |request: ForwardedRequest, tunnel| -> ServeFuture {
        let engine = weak.upgrade();
        Box::pin(async move {
            match (engine, tunnel) {
                (Some(engine), Some(tunnel)) => engine.serve_tunnel(request, tunnel),
                (Some(engine), None) => engine.serve_forwarded(request).await,
                (None, _) => ForwardedResponse {
                    id: request.id,
                    status: 503,
                    headers: vec![],
                    body: bytes::Bytes::new(),
                },
            }
        })
    });
    let forwarder = ClusterForwarder::start(backend, engine.node_id(), serve, limits)?;
    engine.set_forwarder(Arc::new(ClusterForwarderRef(forwarder.clone())));
    Some(forwarder)
}
