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

use bb8_redis::RedisConnectionManager;
use futures_util::StreamExt as _;
use sio_core::{
    AdapterError, Backend, BackendFuture, ClusterRequest, ClusterResponse, RequestHandler,
};
use tokio::sync::mpsc;

use crate::classic::{Broadcast, ChannelKind, Channels, Envelope, Request, Response};
use crate::config::RedisConfig;
use crate::error::Error;
use crate::subscriber::{self, Subscriber, Subscription};

/// A sio cluster backend over Redis, wire-compatible with Node's `@socket.io/redis-adapter`
/// (`createAdapter`, the classic protocol) and `@socket.io/redis-emitter`.
///
/// ```no_run
/// use sio_core::SocketIo;
/// use sio_redis::RedisAdapter;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
/// let io = SocketIo::builder()
///     .adapter(RedisAdapter::from_url("redis://127.0.0.1:6379")?)
///     .build();
/// # let _ = io; Ok(()) }
/// ```
///
/// Must be created inside a Tokio runtime. Connections are made in the background; see
/// [`ready`](Self::ready) to wait for them.
#[derive(Clone)]
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's id in the protocol (6 characters, as Node's).
    uid: String,
    channels: Channels,
    pool: bb8_redis::bb8::Pool<RedisConnectionManager>,
    publisher: mpsc::Sender<(String, Vec<u8>)>,
    subscriber: Subscriber,
    namespaces: RwLock<HashMap<String, Weak<dyn RequestHandler>>>,
    /// Requests of this node waiting for answers, by request id.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
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
}

impl RedisAdapter {
    /// An adapter on the Redis server at `url`, with the default key prefix (`socket.io`).
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::new(RedisConfig::new(url))
    }

    /// An adapter with the given configuration.
    pub fn new(config: RedisConfig) -> Result<Self, Error> {
        let client = redis::Client::open(config.url.as_str()).map_err(Error::Url)?;
        let info = client.get_connection_info().clone();
        let (messages, received) = mpsc::unbounded_channel();
        let subscriber = subscriber::start(info.clone(), messages);
        let pool = bb8_redis::bb8::Pool::builder()
            .connection_timeout(Duration::from_millis(500))
            .build_unchecked(RedisConnectionManager::new(info).map_err(Error::Url)?);
        let (publisher, queue) = mpsc::channel(config.queue_size);
        let inner = Arc::new(Inner {
            uid: random_id(),
            channels: Channels::new(config.key),
            pool: pool.clone(),
            publisher,
            subscriber,
            namespaces: RwLock::default(),
            pending: Mutex::default(),
            stats: Counters::default(),
        });
        tokio::spawn(publish_loop(pool, queue, Arc::downgrade(&inner)));
        tokio::spawn(receive_loop(received, Arc::downgrade(&inner)));
        Ok(RedisAdapter { inner })
    }

    /// This node's id in the protocol.
    pub fn uid(&self) -> &str {
        &self.inner.uid
    }

    /// Waits until the subscriptions of every namespace registered so far are in place, so
    /// that this node receives what other nodes publish from now on.
    pub async fn ready(&self) {
        self.inner.subscriber.confirmed().await;
    }

    /// Counters of what this adapter has done.
    pub fn stats(&self) -> RedisStats {
        let stats = &self.inner.stats;
        RedisStats {
            reconnects: self.inner.subscriber.reconnects(),
            published: stats.published.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            received: stats.received.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("uid", &self.inner.uid)
            .field("channels", &self.inner.channels)
            .finish_non_exhaustive()
    }
}

impl Backend for RedisAdapter {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        write(&self.inner.namespaces).insert(ns.to_owned(), handler);
        // What a Node node subscribes to for a namespace.
        let (channels, subscriber) = (&self.inner.channels, &self.inner.subscriber);
        subscriber.subscribe(Subscription::Pattern(channels.broadcast_pattern(ns)));
        subscriber.subscribe(Subscription::Channel(channels.request(ns)));
        subscriber.subscribe(Subscription::Channel(channels.response(ns)));
        subscriber.subscribe(Subscription::Channel(
            channels.response_to(ns, &self.inner.uid),
        ));
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        let uid = self.inner.uid.clone();
        let (channel, message) = match request {
            ClusterRequest::Broadcast {
                packet,
                opts,
                volatile,
            } => {
                let channel = self.inner.channels.broadcast(ns, &opts);
                let broadcast = Broadcast {
                    uid,
                    packet,
                    opts,
                    volatile,
                };
                (channel, broadcast.encode())
            }
            request => {
                let Some(request) = to_wire(request, None) else {
                    return;
                };
                let envelope = Envelope {
                    uid: Some(uid),
                    request,
                };
                (self.inner.channels.request(ns), envelope.encode())
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
}

impl Inner {
    /// Queues a message for the publisher; drops it (and counts it) when the queue is full.
    fn send(&self, channel: String, message: Vec<u8>) {
        if self.publisher.try_send((channel, message)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "sio::redis", "publish queue full, message dropped");
        }
    }

    /// `PUBSUB NUMSUB` of the namespace's request channel: every node of the cluster (Node's
    /// and sio's) subscribes to it, this one included.
    async fn server_count(&self, ns: &str) -> Result<usize, AdapterError> {
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(self.channels.request(ns))
            .query_async(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(counts.first().map_or(0, |(_, n)| *n).max(1))
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
        self.send(self.channels.request(ns), envelope.encode());

        let mut gathered = Gathered::default();
        let deadline = tokio::time::Instant::now() + timeout;
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
        Ok(gathered.into_responses(is_broadcast))
    }

    /// Handles one message from the subscriber connection.
    fn receive(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let target = read(&self.namespaces).iter().find_map(|(ns, handler)| {
            let kind = self.channels.kind(ns, channel)?;
            Some((ns.clone(), kind, handler.clone()))
        });
        let Some((ns, kind, handler)) = target else {
            return;
        };
        let result = match kind {
            ChannelKind::Response => Response::decode(payload).map(|r| {
                if let Some(response) = r {
                    self.route(response);
                }
            }),
            _ => {
                let Some(handler) = handler.upgrade() else {
                    return;
                };
                match kind {
                    ChannelKind::Broadcast { .. } => {
                        Broadcast::decode(payload).map(|b| self.apply_broadcast(&ns, &*handler, b))
                    }
                    _ => Envelope::decode(payload).map(|e| {
                        if let Some(envelope) = e {
                            self.apply_request(&ns, handler, envelope);
                        }
                    }),
                }
            }
        };
        if let Err(err) = result {
            tracing::debug!(target: "sio::redis", %channel, %err, "message skipped");
        }
    }

    fn apply_broadcast(&self, ns: &str, handler: &dyn RequestHandler, broadcast: Broadcast) {
        if broadcast.uid == self.uid || broadcast.packet.ns != ns {
            return;
        }
        drop(handler.handle(ClusterRequest::Broadcast {
            packet: broadcast.packet,
            opts: broadcast.opts,
            volatile: broadcast.volatile,
        }));
    }

    /// Applies another node's request and publishes its answer, if it has one.
    fn apply_request(self: &Arc<Self>, ns: &str, handler: Arc<dyn RequestHandler>, e: Envelope) {
        // This node applied its own requests when it made them.
        if e.uid.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        let response_channel = self.channels.response(ns);
        let request = match e.request {
            Request::SocketsJoin { opts, rooms } => ClusterRequest::SocketsJoin { opts, rooms },
            Request::SocketsLeave { opts, rooms } => ClusterRequest::SocketsLeave { opts, rooms },
            Request::DisconnectSockets { opts, close } => {
                ClusterRequest::DisconnectSockets { opts, close }
            }
            Request::FetchSockets { request_id, opts } => {
                let answer = handler.handle(ClusterRequest::FetchSockets { opts });
                let inner = self.clone();
                tokio::spawn(async move {
                    if let ClusterResponse::Sockets(sockets) = answer.await {
                        let response = Response::Sockets {
                            request_id,
                            sockets,
                        };
                        inner.send(response_channel, response.encode());
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
                let inner = self.clone();
                tokio::spawn(async move {
                    if let ClusterResponse::Acks(acks) = answer.await
                        && let Some(ack) = acks.into_iter().next()
                    {
                        let response = Response::ServerSideEmit { request_id, ack };
                        inner.send(response_channel, response.encode());
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
                let count = Response::ClientCount {
                    request_id: request_id.clone(),
                    count: stream.count as u64,
                };
                self.send(response_channel.clone(), count.encode());
                let inner = self.clone();
                tokio::spawn(async move {
                    while let Some(ack) = stream.acks.next().await {
                        let response = Response::BroadcastAck {
                            request_id: request_id.clone(),
                            ack,
                        };
                        inner.send(response_channel.clone(), response.encode());
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

/// Publishes queued messages in order, as one pipeline per batch.
async fn publish_loop(
    pool: bb8_redis::bb8::Pool<RedisConnectionManager>,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
    inner: Weak<Inner>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 512).await > 0 {
        let n = batch.len() as u64;
        let mut pipe = redis::pipe();
        for (channel, message) in batch.drain(..) {
            pipe.publish(channel, message).ignore();
        }
        let result = match pool.get().await {
            Ok(mut conn) => pipe
                .query_async::<()>(&mut *conn)
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match result {
            Ok(()) => inner.stats.published.fetch_add(n, Ordering::Relaxed),
            Err(err) => {
                tracing::warn!(target: "sio::redis", %err, messages = n, "publish failed, messages dropped");
                inner.stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

/// Hands the subscriber connection's messages to the adapter, in order.
async fn receive_loop(
    mut messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    inner: Weak<Inner>,
) {
    while let Some((channel, payload)) = messages.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.receive(&channel, &payload);
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

fn unavailable(err: impl fmt::Display) -> AdapterError {
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
