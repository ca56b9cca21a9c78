//! The Redis backend of a sio node: publishes this node's cluster operations in the classic
//! protocol and applies the other nodes' (sio or Node) to this node's sockets.
//!
//! Two kinds of connection, as Node's adapter uses:
//! * a bb8 pool for commands; one publisher task drains a bounded queue and sends what has
//!   queued up as one pipeline, so a node's messages keep their order and `emit` never waits
//!   on Redis;
//! * one subscriber connection ([`subscriber`](crate::subscriber)) that reconnects with
//!   backoff and subscribes again to everything it had.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use sio_core::{
    AdapterError, Backend, BackendFuture, BroadcastLog, ClusterRequest, ClusterResponse,
    NodeReceiver, RequestHandler, Room, SessionStore,
};
use tokio::sync::mpsc;

use crate::classic::{self, ChannelKind};
use crate::cluster::ClusterNodes;
use crate::config::Mode;
use crate::config::RedisConfig;
use crate::error::Error;
use crate::message::{Broadcast, Envelope, Request, Response};
use crate::resp::Published;
use crate::sessions::{self, Sessions};
use crate::sharded;
use crate::shards::Shards;
use crate::stream_log::{self, Append, Reader, StreamLog};
use crate::streams::{self, Entry};
use crate::subscriber::{self, Subscriber, Subscription};
use crate::target::{Connections, Target};
use crate::wire::WireError;

/// A sio cluster backend over Redis, wire-compatible with Node's `@socket.io/redis-adapter`
/// (`createAdapter`, the classic protocol) and `@socket.io/redis-emitter`.
///
/// ```no_run
/// use sio_core::SocketIo;
/// use sio_redis::{RedisAdapter, RedisConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
/// // Connects once (TLS, AUTH) and fails with a typed error if Redis cannot be used.
/// let adapter = RedisAdapter::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let io = SocketIo::builder().adapter(adapter.clone()).build();
/// adapter.ready().await;
/// # let _ = io; Ok(()) }
/// ```
///
/// Connections are tasks of the Tokio runtime it is created in; after the first, they are made
/// (and made again) in the background. See [`ready`](Self::ready) to wait for the
/// subscriptions.
#[derive(Clone)]
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's id in the protocol (6 characters, as Node's).
    uid: String,
    wire: Wire,
    pool: bb8_redis::bb8::Pool<Connections>,
    publisher: mpsc::Sender<(String, Vec<u8>)>,
    subscriber: Subscriber,
    /// Sharded pub/sub on a Redis Cluster: the shard subscribers and the slot map.
    shards: Option<Arc<Shards>>,
    /// On a Redis Cluster: connections to each of its nodes.
    cluster: Option<Arc<ClusterNodes>>,
    namespaces: RwLock<HashMap<String, Weak<dyn RequestHandler>>>,
    /// The classic protocol: which namespace each subscription is for.
    routes: RwLock<classic::Routes>,
    /// `<key>-forward#`: the node channels of sticky-free forwarding start with it.
    forward_prefix: String,
    /// Who receives the messages of each node channel this node listens on.
    node_receivers: RwLock<HashMap<String, Weak<dyn NodeReceiver>>>,
    /// Requests of this node waiting for answers, by request id.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    stats: Counters,
    /// Recovery sessions, where a key's node can be reached (not on Redis Cluster).
    sessions: Option<Sessions>,
    /// The streams protocol: the stream's reader, appender queue and log.
    stream: Option<Stream>,
    /// This very adapter, for the stream reader's callbacks.
    me: Weak<Inner>,
}

/// What a node of the streams protocol has besides pub/sub.
struct Stream {
    reader: Reader,
    appender: mpsc::Sender<Append>,
    log: StreamLog,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    request_micros: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
}

/// What a [`RedisAdapter`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Times the subscriber connection was lost (it reconnects and subscribes again).
    pub reconnects: u64,
    /// Messages published.
    pub published: u64,
    /// Messages not published: Redis was unreachable or the queue was full. Pub/sub has no
    /// replay, so these never reach the other nodes.
    pub dropped: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// Requests this node made that wait for other nodes' answers (fetch, acks).
    pub requests: u64,
    /// Their total duration, in microseconds (divide by `requests` for the mean latency).
    pub request_micros: u64,
}

impl RedisAdapter {
    /// An adapter on the Redis server at `url`, with the default key prefix (`socket.io`);
    /// see [`new`](Self::new).
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::new(RedisConfig::new(url))
    }

    /// An adapter with the given configuration, connecting in the background: a Redis that
    /// cannot be reached, or refuses the credentials or the certificate, shows as warnings
    /// (target `sio::redis`) and retries, not as an error here. Use
    /// [`connect`](Self::connect) to find out at once.
    ///
    /// Fails on a bad configuration ([`Error::Url`], [`Error::TlsFile`], [`Error::Tls`],
    /// [`Error::Unsupported`]), and with [`Error::NoRuntime`] outside a Tokio runtime.
    ///
    /// ```no_run
    /// use sio_redis::{RedisAdapter, RedisConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
    /// let adapter = RedisAdapter::new(RedisConfig::new("redis://127.0.0.1:6379").key("chat"))?;
    /// # let _ = adapter; Ok(()) }
    /// ```
    pub fn new(config: RedisConfig) -> Result<Self, Error> {
        let target = Target::new(&config)?;
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        Ok(Self::start(config, target))
    }

    /// An adapter with the given configuration, once a first connection to Redis was made and
    /// logged in: on Sentinel, once a sentinel named the master. The typed error says what
    /// failed ([`Error::Unreachable`], [`Error::TlsHandshake`], [`Error::Auth`],
    /// [`Error::Database`], [`Error::Sentinel`], [`Error::Protocol`]), besides the
    /// configuration errors of [`new`](Self::new); every attempt is bounded by
    /// [`RedisConfig::connect_timeout`]. Connections lost later are made again in the
    /// background, as with `new`.
    ///
    /// ```no_run
    /// use sio_redis::{RedisAdapter, RedisConfig, TlsConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
    /// let config = RedisConfig::new("rediss://redis.internal:6380")
    ///     .username("sio")
    ///     .password("a-long-random-password")
    ///     .tls(TlsConfig::new().ca_file("/etc/sio/redis-ca.pem"));
    /// match RedisAdapter::connect(config).await {
    ///     Ok(adapter) => { /* .adapter(adapter) */ }
    ///     Err(err @ sio_redis::Error::Auth { .. }) => eprintln!("check REDIS_PASSWORD: {err}"),
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: RedisConfig) -> Result<Self, Error> {
        let target = Target::new(&config)?;
        // `tokio::net` and timers panic outside a Tokio runtime; an async fn may still be
        // polled by another executor.
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        drop(target.open().await?);
        Ok(Self::start(config, target))
    }

    /// Starts the connections and tasks of an adapter (inside a runtime).
    fn start(config: RedisConfig, target: Target) -> Self {
        let (messages, received) = mpsc::unbounded_channel();
        let subscriber = subscriber::start(target.clone(), messages.clone());
        let pool = Connections::pool(target.clone(), config.timeout, config.pool_size);
        let cluster = target.is_cluster().then(|| {
            Arc::new(ClusterNodes::new(
                target.dialer().clone(),
                pool.clone(),
                config.timeout,
            ))
        });
        // Sharded pub/sub on a cluster: each channel on the master that owns its slot.
        let shards = match (&cluster, config.mode) {
            (Some(nodes), Mode::Sharded) => Some(Shards::start(
                target.clone(),
                pool.clone(),
                nodes.clone(),
                messages,
            )),
            _ => None,
        };
        let (publisher, queue) = mpsc::channel(config.queue_size);
        let forward_prefix = format!("{}-forward#", config.key);
        // Not on Redis Cluster: a node there counts only its own subscribers, so a take could
        // not tell whether a session's node is alive. Recovery stays on the node then.
        let format = match config.mode {
            Mode::Streams => sessions::Format::Node,
            _ => sessions::Format::Json,
        };
        let sessions = (!target.is_cluster()).then(|| {
            // Its own connections: a flood of recoveries must not hold up publishing and
            // forwarding.
            let own = Connections::pool(target.clone(), config.timeout, sessions::POOL_SIZE);
            Sessions::start(own, format, config.timeout, &config.key)
        });
        if let Some(sessions) = &sessions {
            subscriber.subscribe(Subscription::Channel(sessions.owner().to_owned()));
        }
        // Reading what a recovering client missed is part of its recovery.
        let log_pool = sessions.as_ref().map_or(pool.clone(), |s| s.pool().clone());
        let (appender, appends) = mpsc::channel(config.queue_size);
        let stream_key = config.key.clone();
        let max_len = config.max_len;
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| Inner {
            me: me.clone(),
            stream: (config.mode == Mode::Streams).then(|| Stream {
                reader: Reader::start(
                    target.clone(),
                    stream_key.clone(),
                    me.clone() as Weak<dyn stream_log::Sink>,
                ),
                appender,
                log: StreamLog {
                    pool: log_pool,
                    key: stream_key.clone(),
                },
            }),
            forward_prefix,
            node_receivers: RwLock::default(),
            uid: random_id(),
            wire: match config.mode {
                Mode::Classic => Wire::Classic(classic::Channels::new(config.key.clone())),
                Mode::Sharded => Wire::Sharded(sharded::Channels::new(config.key.clone())),
                Mode::Streams => Wire::Streams(sharded::Channels::new(config.key.clone())),
            },
            pool: pool.clone(),
            publisher,
            subscriber,
            shards: shards.clone(),
            cluster,
            namespaces: RwLock::default(),
            routes: RwLock::default(),
            pending: Mutex::default(),
            stats: Counters::default(),
            sessions,
        });
        let command = inner.wire.publish_command();
        tokio::spawn(publish_loop(
            pool,
            queue,
            command,
            shards,
            Arc::downgrade(&inner),
        ));
        tokio::spawn(receive_loop(received, Arc::downgrade(&inner)));
        if config.mode == Mode::Streams {
            tokio::spawn(append_loop(
                inner.pool.clone(),
                stream_key,
                max_len,
                appends,
                Arc::downgrade(&inner),
            ));
        }
        RedisAdapter { inner }
    }

    /// This node's id in the protocol.
    pub fn uid(&self) -> &str {
        &self.inner.uid
    }

    /// Waits until the subscriptions of every namespace registered so far are in place, so
    /// that this node receives what other nodes publish from now on.
    pub async fn ready(&self) {
        self.inner.subscriber.confirmed().await;
        if let Some(shards) = &self.inner.shards {
            shards.confirmed().await;
        }
        if let Some(stream) = &self.inner.stream {
            stream.reader.started().await;
        }
    }

    /// Counters of what this adapter has done.
    pub fn stats(&self) -> RedisStats {
        let stats = &self.inner.stats;
        RedisStats {
            reconnects: self.inner.subscriber.reconnects()
                + self.inner.shards.as_ref().map_or(0, |s| s.reconnects())
                + self
                    .inner
                    .stream
                    .as_ref()
                    .map_or(0, |s| s.reader.reconnects()),
            published: stats.published.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            received: stats.received.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            request_micros: stats.request_micros.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("uid", &self.inner.uid)
            .field("wire", &self.inner.wire)
            .finish_non_exhaustive()
    }
}

impl Backend for RedisAdapter {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        if let Some(position) = self.inner.stream.as_ref().and_then(|s| s.reader.position())
            && let Some(handler) = handler.upgrade()
        {
            handler.log_reached(&position);
        }
        write(&self.inner.namespaces).insert(ns.to_owned(), handler);
        if let Wire::Classic(channels) = &self.inner.wire {
            write(&self.inner.routes).add(channels, ns, &self.inner.uid);
        }
        for subscription in self.inner.wire.subscriptions(ns, &self.inner.uid) {
            self.inner.subscribe(subscription);
        }
    }

    fn close(&self) {
        self.inner.subscriber.close();
        if let Some(stream) = &self.inner.stream {
            stream.reader.close();
        }
        if let Some(shards) = &self.inner.shards {
            shards.close();
        }
    }

    fn rooms_changed(&self, ns: &str, created: &[Room], deleted: &[Room]) {
        // Sharded pub/sub has no patterns: a node listens on the channel of each room it has,
        // socket-id rooms too (Node sends to those of sio's 22-character ids by room channel).
        if let Wire::Sharded(channels) = &self.inner.wire {
            for room in created {
                let channel = channels.room(ns, room);
                self.inner.subscribe(Subscription::Shard(channel));
            }
            for room in deleted {
                let channel = channels.room(ns, room);
                self.inner.unsubscribe(Subscription::Shard(channel));
            }
        }
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        if let Some(stream) = &self.inner.stream {
            self.inner.publish_streams(stream, ns, request);
            return;
        }
        let uid = self.inner.uid.clone();
        let (channel, message) = match request {
            ClusterRequest::Broadcast {
                packet,
                opts,
                volatile,
                numbered,
                ..
            } => self.inner.wire.broadcast(
                ns,
                &Broadcast {
                    uid,
                    packet,
                    opts,
                    volatile,
                },
                numbered,
            ),
            request => {
                let Some(request) = to_wire(request, None) else {
                    return;
                };
                let envelope = Envelope {
                    uid: Some(uid),
                    request,
                };
                self.inner.wire.request(ns, &envelope)
            }
        };
        self.inner.send(channel, message);
    }

    fn request(
        &self,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> BackendFuture<Vec<ClusterResponse>> {
        let inner = self.inner.clone();
        let ns = ns.to_owned();
        Box::pin(async move { inner.request(&ns, request, timeout).await })
    }

    fn server_count(&self) -> BackendFuture<usize> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.server_count("/").await })
    }

    fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
        // One channel per node, which Node's adapters neither publish to nor subscribe to.
        let channel = self.inner.node_channel(node_id);
        write(&self.inner.node_receivers).insert(channel.clone(), receiver);
        self.inner.subscribe(match self.inner.wire {
            Wire::Classic(_) | Wire::Streams(_) => Subscription::Channel(channel),
            Wire::Sharded(_) => Subscription::Shard(channel),
        });
        true
    }

    fn send_to_node(&self, node_id: u32, message: bytes::Bytes) -> BackendFuture<bool> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let channel = inner.node_channel(node_id);
            // Published at once (not through the queue): the answer says whether the node
            // listens, and a forwarded request must not wait behind a burst of broadcasts.
            let mut publish = redis::cmd(inner.wire.publish_command());
            publish.arg(&channel).arg(message.as_ref());
            if let Some(shards) = &inner.shards {
                // A shard channel is published on the master owning its slot, which alone
                // counts its subscribers.
                let receivers: i64 = shards.on_owner(&channel, &publish).await?;
                return Ok(receivers > 0);
            }
            let mut conn = inner.pool.get().await.map_err(unavailable)?;
            let receivers: i64 = publish
                .query_async(&mut conn.inner)
                .await
                .map_err(unavailable)?;
            drop(conn);
            if receivers > 0 || inner.cluster.is_none() {
                return Ok(receivers > 0);
            }
            // Classic pub/sub on a Redis Cluster crosses to every node, but the count is only
            // the receiving node's: whether anyone listens is asked of every node.
            inner.node_listens(node_id).await
        })
    }

    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.node_listens(node_id).await })
    }

    fn session_store(&self) -> Option<&dyn SessionStore> {
        self.inner.sessions.as_ref().map(|s| s as &dyn SessionStore)
    }

    fn broadcast_log(&self) -> Option<&dyn BroadcastLog> {
        self.inner
            .stream
            .as_ref()
            .map(|s| &s.log as &dyn BroadcastLog)
    }
}

impl stream_log::Sink for Inner {
    fn entries(&self, entries: Vec<Entry>) {
        for entry in entries {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let handler = entry
                .nsp()
                .and_then(|ns| read(&self.namespaces).get(ns).and_then(Weak::upgrade));
            let Some(handler) = handler else {
                continue;
            };
            let incoming = match streams::decode_entry(&entry) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => continue,
                Err(err) => {
                    tracing::debug!(target: "sio::redis", id = %entry.id, %err, "stream entry skipped");
                    continue;
                }
            };
            match incoming.message {
                // This node's own broadcasts too: they reach its sockets now, with their offset.
                sharded::Kind::Broadcast(b) => {
                    drop(handler.handle(ClusterRequest::Broadcast {
                        packet: b.packet,
                        opts: b.opts,
                        volatile: b.volatile,
                        offset: Some(entry.id),
                        numbered: false,
                    }));
                }
                sharded::Kind::Request(request) => {
                    if let Some(me) = self.me.upgrade() {
                        let envelope = Envelope {
                            uid: Some(incoming.uid),
                            request,
                        };
                        me.apply_request(&incoming.nsp, handler, envelope);
                    }
                }
                sharded::Kind::Response(_) => {}
            }
        }
    }

    fn reached(&self, id: &str) {
        let handlers: Vec<_> = read(&self.namespaces)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for handler in handlers {
            handler.log_reached(id);
        }
    }
}

impl Inner {
    /// The streams protocol: broadcasts and room changes to the stream, the rest over pub/sub.
    fn publish_streams(&self, stream: &Stream, ns: &str, request: ClusterRequest) {
        let (fields, failed) = match request {
            ClusterRequest::Broadcast {
                packet,
                opts,
                volatile,
                ..
            } => {
                let broadcast = Broadcast {
                    uid: self.uid.clone(),
                    packet,
                    opts,
                    volatile,
                };
                let fields =
                    streams::entry_fields(sharded::broadcast_parts(&broadcast), &self.uid, ns);
                // Not in the stream, so it will not come back: this node's sockets get it now.
                let handler = read(&self.namespaces).get(ns).cloned();
                let failed = move || {
                    if let Some(handler) = handler.and_then(|h| h.upgrade()) {
                        drop(handler.handle(ClusterRequest::Broadcast {
                            packet: broadcast.packet,
                            opts: broadcast.opts,
                            volatile: broadcast.volatile,
                            offset: None,
                            numbered: false,
                        }));
                    }
                };
                (fields, Some(Box::new(failed) as Box<dyn FnOnce() + Send>))
            }
            request => {
                let Some(request) = to_wire(request, None) else {
                    return;
                };
                if !streams::is_durable(&request) {
                    let envelope = Envelope {
                        uid: Some(self.uid.clone()),
                        request,
                    };
                    let (channel, message) = self.wire.request(ns, &envelope);
                    self.send(channel, message);
                    return;
                }
                let parts = sharded::request_parts(&request);
                (streams::entry_fields(parts, &self.uid, ns), None)
            }
        };
        if let Err(
            mpsc::error::TrySendError::Full(append) | mpsc::error::TrySendError::Closed(append),
        ) = stream.appender.try_send(Append { fields, failed })
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "sio::redis", "stream queue full, entry dropped");
            if let Some(failed) = append.failed {
                failed();
            }
        }
    }

    /// Subscribes on the right connection: shard channels of a cluster on their owner's.
    fn subscribe(&self, subscription: Subscription) {
        match (&self.shards, subscription) {
            (Some(shards), Subscription::Shard(channel)) => shards.subscribe(channel),
            (_, subscription) => self.subscriber.subscribe(subscription),
        }
    }

    fn unsubscribe(&self, subscription: Subscription) {
        match (&self.shards, subscription) {
            (Some(shards), Subscription::Shard(channel)) => shards.unsubscribe(channel),
            (_, subscription) => self.subscriber.unsubscribe(subscription),
        }
    }

    /// Queues a message for the publisher; drops it (and counts it) when the queue is full.
    fn send(&self, channel: String, message: Vec<u8>) {
        if self.publisher.try_send((channel, message)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "sio::redis", "publish queue full, message dropped");
        }
    }

    /// The subscribers of a channel every node of the cluster (Node's and sio's) subscribes
    /// to, this one included.
    async fn server_count(&self, ns: &str) -> Result<usize, AdapterError> {
        let count = self.wire.count_command(ns);
        let total = match &self.cluster {
            // Each node of a Redis Cluster counts only its own subscribers.
            Some(nodes) => nodes.cached_subscribers(ns, &count).await?,
            None => {
                let mut conn = self.pool.get().await.map_err(unavailable)?;
                subscribers(&count, &mut conn.inner).await?
            }
        };
        Ok(total.max(1))
    }

    /// Whether node `node_id` listens on its channel (has a subscriber there).
    async fn node_listens(self: &Arc<Self>, node_id: u32) -> Result<bool, AdapterError> {
        let channel = self.node_channel(node_id);
        let mut count = redis::cmd("PUBSUB");
        count
            .arg(match self.wire {
                Wire::Classic(_) | Wire::Streams(_) => "NUMSUB",
                Wire::Sharded(_) => "SHARDNUMSUB",
            })
            .arg(&channel);
        let listeners = match (&self.shards, &self.cluster) {
            (Some(shards), _) => {
                let counts: Vec<(String, usize)> = shards.on_owner(&channel, &count).await?;
                counts.first().map_or(0, |(_, n)| *n)
            }
            (None, Some(nodes)) => nodes.subscribers(&count).await?,
            (None, None) => {
                let mut conn = self.pool.get().await.map_err(unavailable)?;
                subscribers(&count, &mut conn.inner).await?
            }
        };
        Ok(listeners > 0)
    }

    /// Publishes a request and gathers the answers of every other node, or those that arrive
    /// within `timeout`.
    async fn request(
        self: Arc<Self>,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> Result<Vec<ClusterResponse>, AdapterError> {
        let others = self.server_count(ns).await?.saturating_sub(1);
        if others == 0 {
            return Ok(Vec::new());
        }
        let request_id = random_id();
        let Some(request) = to_wire(request, Some(request_id.clone())) else {
            return Ok(Vec::new());
        };
        let (tx, mut answers) = mpsc::unbounded_channel();
        let _pending = Pending::register(&self, &request_id, tx);
        let envelope = Envelope {
            uid: Some(self.uid.clone()),
            request,
        };
        let is_broadcast = matches!(envelope.request, Request::BroadcastWithAck { .. });
        let (channel, message) = self.wire.request(ns, &envelope);
        self.send(channel, message);

        let mut gathered = Gathered::default();
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        while !gathered.complete(others, is_broadcast) {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some(answer)) => gathered.add(answer),
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!(target: "sio::redis", %request_id, nodes = others, answered = gathered.nodes, "cluster request timed out; partial answer");
                    break;
                }
            }
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats
            .request_micros
            .fetch_add(micros, Ordering::Relaxed);
        Ok(gathered.into_responses(is_broadcast))
    }

    /// Where node `node_id` hears what other nodes send it.
    fn node_channel(&self, node_id: u32) -> String {
        format!("{}{node_id:08x}#", self.forward_prefix)
    }

    /// Handles one message from the subscriber connections.
    fn receive(self: &Arc<Self>, message: &Published) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let (channel, payload) = (message.channel.as_str(), message.payload.as_slice());
        if message.pattern.is_none() && channel.starts_with(&self.forward_prefix) {
            let receiver = read(&self.node_receivers)
                .get(channel)
                .and_then(Weak::upgrade);
            if let Some(receiver) = receiver {
                receiver.receive(bytes::Bytes::copy_from_slice(payload));
            }
            return;
        }
        let result = match &self.wire {
            Wire::Classic(channels) => self.receive_classic(channels, message),
            Wire::Sharded(_) | Wire::Streams(_) => self.receive_sharded(payload),
        };
        if let Err(err) = result {
            tracing::debug!(target: "sio::redis", %channel, %err, "message skipped");
        }
    }

    /// Classic messages are told apart by the subscription they came through.
    fn receive_classic(
        self: &Arc<Self>,
        channels: &classic::Channels,
        message: &Published,
    ) -> Result<(), WireError> {
        let Some((ns, kind)) = read(&self.routes).resolve(channels, message) else {
            return Ok(());
        };
        let payload = message.payload.as_slice();
        if kind == ChannelKind::Response {
            if let Some(response) = Response::decode(payload)? {
                self.route(response);
            }
            return Ok(());
        }
        let handler = read(&self.namespaces).get(&ns).and_then(Weak::upgrade);
        let Some(handler) = handler else {
            return Ok(());
        };
        match kind {
            ChannelKind::Broadcast { .. } => {
                self.apply_broadcast(&ns, &*handler, Broadcast::decode(payload)?);
            }
            _ => {
                if let Some(envelope) = Envelope::decode(payload)? {
                    self.apply_request(&ns, handler, envelope);
                }
            }
        }
        Ok(())
    }

    /// Sharded messages say what they are and which namespace they are for.
    fn receive_sharded(self: &Arc<Self>, payload: &[u8]) -> Result<(), WireError> {
        let Some(incoming) = sharded::decode(payload)? else {
            return Ok(());
        };
        if incoming.uid == self.uid {
            return Ok(());
        }
        if let sharded::Kind::Response(response) = incoming.message {
            self.route(response);
            return Ok(());
        }
        let handler = read(&self.namespaces)
            .get(&incoming.nsp)
            .and_then(Weak::upgrade);
        let Some(handler) = handler else {
            return Ok(());
        };
        match incoming.message {
            sharded::Kind::Broadcast(broadcast) => {
                self.apply_broadcast(&incoming.nsp, &*handler, broadcast);
            }
            sharded::Kind::Request(request) => {
                let envelope = Envelope {
                    uid: Some(incoming.uid),
                    request,
                };
                self.apply_request(&incoming.nsp, handler, envelope);
            }
            sharded::Kind::Response(_) => {}
        }
        Ok(())
    }

    fn apply_broadcast(&self, ns: &str, handler: &dyn RequestHandler, broadcast: Broadcast) {
        if broadcast.uid == self.uid || broadcast.packet.ns != ns {
            return;
        }
        drop(handler.handle(ClusterRequest::Broadcast {
            packet: broadcast.packet,
            opts: broadcast.opts,
            volatile: broadcast.volatile,
            offset: None,
            numbered: false,
        }));
    }

    /// Applies another node's request and publishes its answer, if it has one.
    fn apply_request(self: &Arc<Self>, ns: &str, handler: Arc<dyn RequestHandler>, e: Envelope) {
        // This node applied its own requests when it made them.
        if e.uid.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        let respond = {
            let inner = self.clone();
            let (ns, requester) = (ns.to_owned(), e.uid.clone());
            move |response: Response| {
                let (channel, message) =
                    inner
                        .wire
                        .response(&ns, requester.as_deref(), &inner.uid, &response);
                inner.send(channel, message);
            }
        };
        let request = match e.request {
            Request::SocketsJoin { opts, rooms } => ClusterRequest::SocketsJoin { opts, rooms },
            Request::SocketsLeave { opts, rooms } => ClusterRequest::SocketsLeave { opts, rooms },
            Request::DisconnectSockets { opts, close } => {
                ClusterRequest::DisconnectSockets { opts, close }
            }
            Request::FetchSockets { request_id, opts } => {
                let answer = handler.handle(ClusterRequest::FetchSockets { opts });
                tokio::spawn(async move {
                    if let ClusterResponse::Sockets(sockets) = answer.await {
                        respond(Response::Sockets {
                            request_id,
                            sockets,
                        });
                    }
                });
                return;
            }
            Request::ServerSideEmit { request_id, args } => {
                let ack = request_id.is_some();
                let answer = handler.handle(ClusterRequest::ServerSideEmit { args, ack });
                let Some(request_id) = request_id else {
                    return;
                };
                tokio::spawn(async move {
                    if let ClusterResponse::Acks(acks) = answer.await
                        && let Some(ack) = acks.into_iter().next()
                    {
                        respond(Response::ServerSideEmit { request_id, ack });
                    }
                });
                return;
            }
            Request::BroadcastWithAck {
                request_id,
                packet,
                opts,
                timeout,
            } => {
                let mut stream = handler.broadcast_with_ack(packet, opts, timeout);
                // Node's requester waits for one count per node, even a count of zero.
                respond(Response::ClientCount {
                    request_id: request_id.clone(),
                    count: stream.count as u64,
                });
                tokio::spawn(async move {
                    while let Some(ack) = stream.acks.next().await {
                        respond(Response::BroadcastAck {
                            request_id: request_id.clone(),
                            ack,
                        });
                    }
                });
                return;
            }
        };
        drop(handler.handle(request));
    }

    /// Hands an answer to the request of this node that waits for it; others' are ignored.
    fn route(&self, response: Response) {
        if let Some(waiting) = lock(&self.pending).get(response.request_id()) {
            let _ = waiting.send(response);
        }
    }
}

/// The protocol a node speaks on Redis: where each message goes and how it is written.
#[derive(Debug)]
enum Wire {
    /// `@socket.io/redis-adapter`'s `createAdapter` (and the emitter).
    Classic(classic::Channels),
    /// `createShardedAdapter` with `subscriptionMode: "dynamic"`.
    Sharded(sharded::Channels),
    /// `@socket.io/redis-streams-adapter`: its pub/sub part (the stream is [`Stream`]).
    Streams(sharded::Channels),
}

impl Wire {
    fn publish_command(&self) -> &'static str {
        match self {
            Wire::Classic(_) | Wire::Streams(_) => "PUBLISH",
            Wire::Sharded(_) => "SPUBLISH",
        }
    }

    /// What a Node node of the same protocol subscribes to for a namespace.
    fn subscriptions(&self, ns: &str, uid: &str) -> Vec<Subscription> {
        match self {
            Wire::Classic(channels) => vec![
                Subscription::Pattern(channels.broadcast_pattern(ns)),
                Subscription::Channel(channels.request(ns)),
                Subscription::Channel(channels.response(ns)),
                Subscription::Channel(channels.response_to(ns, uid)),
            ],
            Wire::Sharded(channels) => vec![
                Subscription::Shard(channels.main(ns)),
                Subscription::Shard(channels.room(ns, uid)),
            ],
            Wire::Streams(channels) => vec![
                Subscription::Channel(channels.main(ns)),
                Subscription::Channel(channels.room(ns, uid)),
            ],
        }
    }

    /// Counts the nodes: the subscribers of a channel each node subscribes to once.
    fn count_command(&self, ns: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("PUBSUB");
        match self {
            Wire::Classic(channels) => cmd.arg("NUMSUB").arg(channels.request(ns)),
            Wire::Sharded(channels) => cmd.arg("SHARDNUMSUB").arg(channels.main(ns)),
            Wire::Streams(channels) => cmd.arg("NUMSUB").arg(channels.main(ns)),
        };
        cmd
    }

    /// The channel and message of a broadcast. A `numbered` one (see
    /// [`ClusterRequest::Broadcast`]) must reach every node: in sharded mode it goes to the
    /// namespace's channel, which every node listens on, rather than to its room's channel,
    /// which only the nodes with that room do (Node's nodes take it there just as well).
    fn broadcast(&self, ns: &str, broadcast: &Broadcast, numbered: bool) -> (String, Vec<u8>) {
        match self {
            Wire::Classic(channels) => {
                (channels.broadcast(ns, &broadcast.opts), broadcast.encode())
            }
            Wire::Sharded(channels) => (
                if numbered {
                    channels.main(ns)
                } else {
                    channels.broadcast(ns, broadcast)
                },
                sharded::encode_broadcast(broadcast, ns),
            ),
            // Broadcasts go to the stream; this is only reached for none.
            Wire::Streams(channels) => (
                channels.main(ns),
                streams::pubsub_message(sharded::broadcast_parts(broadcast), &broadcast.uid, ns),
            ),
        }
    }

    fn request(&self, ns: &str, envelope: &Envelope) -> (String, Vec<u8>) {
        match self {
            Wire::Classic(channels) => (channels.request(ns), envelope.encode()),
            Wire::Sharded(channels) => (channels.main(ns), sharded::encode_request(envelope, ns)),
            Wire::Streams(channels) => (
                channels.main(ns),
                streams::pubsub_message(
                    sharded::request_parts(&envelope.request),
                    envelope.uid.as_deref().unwrap_or_default(),
                    ns,
                ),
            ),
        }
    }

    /// An answer of node `uid` to a request of node `requester`.
    fn response(
        &self,
        ns: &str,
        requester: Option<&str>,
        uid: &str,
        response: &Response,
    ) -> (String, Vec<u8>) {
        match self {
            Wire::Classic(channels) => (channels.response(ns), response.encode()),
            Wire::Sharded(channels) => (
                channels.room(ns, requester.unwrap_or_default()),
                sharded::encode_response(response, uid, ns),
            ),
            Wire::Streams(channels) => (
                channels.room(ns, requester.unwrap_or_default()),
                streams::pubsub_message(sharded::response_parts(response), uid, ns),
            ),
        }
    }
}

/// The subscriber count a `PUBSUB NUMSUB`/`SHARDNUMSUB` command answers.
pub(crate) async fn subscribers(
    count: &redis::Cmd,
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<usize, AdapterError> {
    let counts: Vec<(String, usize)> = count.query_async(conn).await.map_err(unavailable)?;
    Ok(counts.first().map_or(0, |(_, n)| *n))
}

/// The wire form of an operation for other nodes; `None` for those that are not requests.
fn to_wire(request: ClusterRequest, request_id: Option<String>) -> Option<Request> {
    Some(match request {
        ClusterRequest::SocketsJoin { opts, rooms } => Request::SocketsJoin { opts, rooms },
        ClusterRequest::SocketsLeave { opts, rooms } => Request::SocketsLeave { opts, rooms },
        ClusterRequest::DisconnectSockets { opts, close } => {
            Request::DisconnectSockets { opts, close }
        }
        ClusterRequest::ServerSideEmit { args, .. } => Request::ServerSideEmit { request_id, args },
        ClusterRequest::FetchSockets { opts } => Request::FetchSockets {
            request_id: request_id?,
            opts,
        },
        ClusterRequest::BroadcastWithAck {
            packet,
            opts,
            timeout,
        } => Request::BroadcastWithAck {
            request_id: request_id?,
            packet,
            opts,
            timeout,
        },
        _ => return None,
    })
}

/// A request's entry in the pending table, removed when the request ends however it ends.
struct Pending<'a> {
    inner: &'a Inner,
    id: String,
}

impl<'a> Pending<'a> {
    fn register(inner: &'a Inner, id: &str, tx: mpsc::UnboundedSender<Response>) -> Self {
        lock(&inner.pending).insert(id.to_owned(), tx);
        Pending {
            inner,
            id: id.to_owned(),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

/// The answers to one request so far.
#[derive(Default)]
struct Gathered {
    /// Nodes that answered (for a broadcast with acks: that sent their client count).
    nodes: usize,
    responses: Vec<ClusterResponse>,
    /// Broadcast with acks: the clients the other nodes sent the packet to, and their acks.
    clients: u64,
    acks: Vec<sio_core::AckResponse>,
}

impl Gathered {
    fn add(&mut self, response: Response) {
        match response {
            Response::Sockets { sockets, .. } => {
                self.nodes += 1;
                self.responses.push(ClusterResponse::Sockets(sockets));
            }
            Response::ServerSideEmit { ack, .. } => {
                self.nodes += 1;
                self.responses.push(ClusterResponse::Acks(vec![ack]));
            }
            Response::ClientCount { count, .. } => {
                self.nodes += 1;
                self.clients += count;
            }
            Response::BroadcastAck { ack, .. } => self.acks.push(ack),
        }
    }

    fn complete(&self, others: usize, is_broadcast: bool) -> bool {
        self.nodes >= others && (!is_broadcast || self.acks.len() as u64 >= self.clients)
    }

    fn into_responses(self, is_broadcast: bool) -> Vec<ClusterResponse> {
        if is_broadcast {
            vec![ClusterResponse::Acks(self.acks)]
        } else {
            self.responses
        }
    }
}

/// A pooled connection for a client that waits on it (a recovery): a burst of reconnecting
/// clients on a node that just started can find every connection busy (or not made yet) for
/// longer than the pool's timeout, and a session given up on would be lost for good. At most
/// four of the pool's timeouts.
pub(crate) async fn patient_connection(
    pool: &bb8_redis::bb8::Pool<Connections>,
) -> Result<bb8_redis::bb8::PooledConnection<'_, Connections>, AdapterError> {
    let mut tries = 0;
    loop {
        match pool.get().await {
            Ok(conn) => return Ok(conn),
            Err(bb8_redis::bb8::RunError::TimedOut) if tries < 3 => tries += 1,
            Err(err) => return Err(unavailable(err)),
        }
    }
}

/// Runs a pipeline on a pooled connection.
pub(crate) async fn run_pipeline(
    pool: &bb8_redis::bb8::Pool<Connections>,
    pipe: &redis::Pipeline,
) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    pipe.query_async::<()>(&mut conn.inner)
        .await
        .map_err(|e| e.to_string())
}

/// Publishes queued messages in order, as one pipeline per batch.
async fn publish_loop(
    pool: bb8_redis::bb8::Pool<Connections>,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
    command: &'static str,
    shards: Option<Arc<Shards>>,
    inner: Weak<Inner>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 512).await > 0 {
        let n = batch.len() as u64;
        let (sent, dropped) = match &shards {
            Some(shards) => shards.publish(command, std::mem::take(&mut batch)).await,
            None => {
                let mut pipe = redis::pipe();
                for (channel, message) in batch.drain(..) {
                    pipe.cmd(command).arg(channel).arg(message).ignore();
                }
                match run_pipeline(&pool, &pipe).await {
                    Ok(()) => (n, 0),
                    Err(err) => {
                        tracing::warn!(target: "sio::redis", %err, messages = n, "publish failed, messages dropped");
                        (0, n)
                    }
                }
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.stats.published.fetch_add(sent, Ordering::Relaxed);
        inner.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Appends queued stream entries in order, as one pipeline per batch. Entries that cannot be
/// appended are dropped (and counted), their `failed` action run.
async fn append_loop(
    pool: bb8_redis::bb8::Pool<Connections>,
    key: String,
    max_len: u64,
    mut queue: mpsc::Receiver<Append>,
    inner: Weak<Inner>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 512).await > 0 {
        let n = batch.len() as u64;
        let result = run_pipeline(&pool, &stream_log::appends(&key, max_len, &batch)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match result {
            Ok(()) => {
                inner.stats.published.fetch_add(n, Ordering::Relaxed);
                batch.clear();
            }
            Err(err) => {
                tracing::warn!(target: "sio::redis", %err, entries = n, "XADD failed, entries dropped");
                inner.stats.dropped.fetch_add(n, Ordering::Relaxed);
                for append in batch.drain(..) {
                    if let Some(failed) = append.failed {
                        failed();
                    }
                }
            }
        }
    }
}

/// Hands the subscriber connection's messages to the adapter, in order.
async fn receive_loop(mut messages: mpsc::UnboundedReceiver<Published>, inner: Weak<Inner>) {
    while let Some(message) = messages.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.receive(&message);
    }
}

/// A random id of 6 characters from `[A-Za-z0-9_-]`, like Node's `uid2(6)`.
fn random_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    rand::random::<[u8; 6]>()
        .iter()
        .filter_map(|b| ALPHABET.get(usize::from(b & 63)).copied().map(char::from))
        .collect()
}

pub(crate) fn unavailable(err: impl fmt::Display) -> AdapterError {
    AdapterError::Unavailable(err.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_nodes() {
        let id = random_id();
        assert_eq!(id.len(), 6);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_ne!(random_id(), random_id());
    }
}
