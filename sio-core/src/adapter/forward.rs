//! The engine's [`Forwarder`] over a cluster [`Backend`]: requests for another node's sessions
//! go to that node alone ([`Backend::send_to_node`]), and its answer comes back the same way;
//! so do the messages of the tunnels that relay upgraded WebSockets.
//!
//! As the edge, it forwards nothing to a node the cluster does not know alive ([`liveness`]),
//! and no POST body for a session its owner has not confirmed ([`sessions`]).

mod liveness;
mod sessions;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use self::liveness::Liveness;
use self::sessions::Sessions;
use super::cluster::{Backend, NodeReceiver};
use crate::engine::{
    ForwardError, ForwardFuture, ForwardMessage, ForwardMethod, ForwardedRequest,
    ForwardedResponse, Forwarder, Sid, Tunnel, TunnelFuture, TunnelId, TunnelInlet, TunnelLink,
    TunnelMessage, TunnelSendFuture,
};

/// What undoes an undelivered answer (see [`Forwarder::on_undelivered`]).
type Undo = Box<dyn FnOnce() + Send>;

/// Leave to forward a request, holding what it reserves until dropped (see
/// [`Forwarder::admit`]).
type Permit = Box<dyn Send + Sync>;

/// What the owner does with a request forwarded to it: run it against its local session.
pub type ServeFuture = Pin<Box<dyn Future<Output = ForwardedResponse> + Send>>;

/// Runs a forwarded request on this node (the engine's `serve_forwarded`); an upgrade comes
/// with the owner's end of its tunnel (for the engine's `serve_tunnel`).
pub type Serve = Arc<dyn Fn(ForwardedRequest, Option<Tunnel>) -> ServeFuture + Send + Sync>;

/// Limits of a [`ClusterForwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwardLimits {
    /// How long the edge node waits for the owner's answer. A poll waits up to the ping
    /// interval for data on the owner, so this must be longer than that: a shorter one is
    /// raised to the ping interval plus the ping timeout (with a warning) when the server is
    /// built, as every forwarded poll would otherwise fail. Also how long an end of a tunnel
    /// waits for the other's next message before it gives up (the owner pings every ping
    /// interval, and the client answers), and how long a session stays confirmed at the edge
    /// after its owner last answered for it. Default 45 s (the default ping interval plus
    /// ping timeout).
    pub timeout: Duration,
    /// How many forwarded requests may wait for answers at once; more get [`ForwardError::Busy`].
    /// Only requests for nodes the cluster knows alive take a place.
    pub max_in_flight: usize,
    /// The bytes one tunnel end buffers of the other end's messages (their payload, and 64
    /// bytes each for the message itself, so empty messages count); a tunnel whose reader falls
    /// further behind breaks (the client's WebSocket closes, the session sees a transport close).
    pub tunnel_buffer: usize,
}

impl ForwardLimits {
    /// These limits for a server whose sessions are pinged every `ping_interval` and closed
    /// `ping_timeout` after an unanswered ping: a timeout that would cut a forwarded poll short
    /// of the owner's next ping is raised to `ping_interval + ping_timeout`, with a warning.
    pub(crate) fn for_heartbeat(self, ping_interval: Duration, ping_timeout: Duration) -> Self {
        let least = ping_interval.saturating_add(ping_timeout);
        if self.timeout >= least {
            return self;
        }
        tracing::warn!(
            target: "sio::forward",
            timeout = ?self.timeout,
            raised_to = ?least,
            "ForwardLimits.timeout is shorter than ping_interval + ping_timeout, so forwarded polls would time out before their owner answers; raised"
        );
        ForwardLimits {
            timeout: least,
            ..self
        }
    }
}

impl Default for ForwardLimits {
    fn default() -> Self {
        ForwardLimits {
            timeout: Duration::from_secs(45),
            max_in_flight: 10_000,
            tunnel_buffer: 8 << 20,
        }
    }
}

/// Counters of a [`ClusterForwarder`], for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardStats {
    /// Requests this node sent to their owners.
    pub forwarded: u64,
    /// Requests other nodes sent to this one.
    pub served: u64,
    /// Forwarded requests that got no answer (unknown node, timeout, busy, backend error).
    pub failures: u64,
    /// Tunnel ends open on this node now (edge and owner ends alike).
    pub tunnels: usize,
    /// Tunnel messages this node sent (WebSocket messages relayed, and closes).
    pub tunnel_messages: u64,
}

/// The [`Forwarder`] of one node over a cluster backend.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use sio_core::MemoryCluster;
/// use sio_core::{ClusterForwarder, ForwardLimits, ServeFuture};
/// use sio_core::engine::ForwardedResponse;
///
/// let cluster = MemoryCluster::default();
/// let serve = Arc::new(|req: sio_core::engine::ForwardedRequest, _tunnel| -> ServeFuture {
///     Box::pin(async move {
///         ForwardedResponse { id: req.id, status: 200, headers: vec![], body: Bytes::from_static(b"ok") }
///     })
/// });
/// let node = ClusterForwarder::start(Arc::new(cluster.node()), 1, serve, ForwardLimits::default());
/// assert!(node.is_some());
/// ```
pub struct ClusterForwarder {
    /// For the links of the tunnels it makes while it only has `&self`.
    me: Weak<ClusterForwarder>,
    backend: Arc<dyn Backend>,
    node_id: u32,
    limits: ForwardLimits,
    serve: Serve,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<ForwardedResponse>>>,
    /// The nodes this one forwards to, as far as it knows them alive.
    liveness: Arc<Liveness>,
    /// The sessions this one forwards to, as their owners confirmed them.
    sessions: Arc<Sessions>,
    /// What to undo when the answer to a request of another node (its id and the request's)
    /// cannot be delivered: the frames a poll took from its session.
    undelivered: Mutex<HashMap<(u32, u64), Undo>>,
    /// Where each tunnel end of this node takes the other end's messages.
    tunnels: Mutex<HashMap<TunnelId, TunnelInlet>>,
    /// Tunnel ends of this node not dropped yet (those closing included).
    links: AtomicUsize,
    /// Set when the node shuts down: no tunnel opens any more.
    closing: AtomicBool,
    forwarded: AtomicU64,
    served: AtomicU64,
    failures: AtomicU64,
    tunnel_messages: AtomicU64,
}

impl std::fmt::Debug for ClusterForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterForwarder")
            .field("node_id", &self.node_id)
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ClusterForwarder {
    /// Listens for node `node_id`'s messages on `backend`; `None` when the backend cannot
    /// address one node (forwarding stays off).
    pub fn start(
        backend: Arc<dyn Backend>,
        node_id: u32,
        serve: Serve,
        limits: ForwardLimits,
    ) -> Option<Arc<Self>> {
        let forwarder = Arc::new_cyclic(|me| ClusterForwarder {
            me: me.clone(),
            backend,
            node_id,
            limits,
            serve,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            liveness: Arc::default(),
            sessions: Arc::new(Sessions::new(limits.timeout)),
            undelivered: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            links: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            tunnel_messages: AtomicU64::new(0),
        });
        let weak: Weak<ClusterForwarder> = Arc::downgrade(&forwarder);
        forwarder
            .backend
            .listen_node(node_id, weak)
            .then_some(forwarder)
    }

    /// What this node forwarded and served so far.
    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            tunnels: self.tunnels().len(),
            tunnel_messages: self.tunnel_messages.load(Ordering::Relaxed),
        }
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ForwardedResponse>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, TunnelInlet>> {
        self.tunnels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn undelivered(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u64), Undo>> {
        self.undelivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// For shutdown: ends the tunnels this node relays for other nodes' sessions (their
    /// clients' WebSockets close with 1001, going away, and reconnect at once instead of
    /// after the owner's idle timeout; the owners hear a close) and opens no new one.
    pub(crate) fn close_tunnels(&self) {
        self.closing.store(true, Ordering::Release);
        let edge = self.node_id;
        // Dropping an inlet ends its tunnel end's messages; the relay then closes both sides.
        self.tunnels().retain(|id, _| id.edge != edge);
    }

    /// Tunnel ends of this node still open or closing (both ends: those it relays, and those
    /// of its own sessions relayed elsewhere).
    pub(crate) fn open_tunnels(&self) -> usize {
        self.links.load(Ordering::Acquire)
    }

    /// A new tunnel end on this node, talking to `peer`; it hears the peer's messages from now
    /// on, until it is dropped.
    fn tunnel(&self, id: TunnelId, peer: u32) -> Tunnel {
        self.links.fetch_add(1, Ordering::AcqRel);
        let link = ClusterLink {
            forwarder: self.me.clone(),
            peer,
            id,
        };
        let (tunnel, inlet) = Tunnel::new(
            id,
            Box::new(link),
            self.limits.tunnel_buffer,
            self.limits.timeout,
        );
        self.tunnels().insert(id, inlet);
        tunnel
    }

    /// Sends `request` under a fresh id, from this node (and counts it).
    fn stamp(&self, mut request: ForwardedRequest) -> ForwardedRequest {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        request.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.from = self.node_id;
        request
    }

    /// Clears a request for `sid` before the edge reads its body (see [`Forwarder::admit`]):
    /// the owner must be known alive and, for a POST, the session confirmed by its owner (a
    /// probe asks when it is not) and without another POST on its way.
    async fn admit(
        self: Arc<Self>,
        sid: Sid,
        method: ForwardMethod,
    ) -> Result<Permit, ForwardError> {
        let node_id = sid.node_id();
        self.liveness.check(&self.backend, node_id).await?;
        if method != ForwardMethod::Post {
            return Ok(Box::new(()));
        }
        let posting = self
            .sessions
            .claim_post(sid)
            .ok_or(ForwardError::Overlapping)?;
        if !self.sessions.is_confirmed(sid) {
            let probe = self.stamp(ForwardedRequest {
                id: 0,
                from: 0,
                method: ForwardMethod::Probe,
                sid,
                query: String::new(),
                headers: vec![],
                body: Bytes::new(),
            });
            let answer = self.clone().counted(node_id, probe).await?;
            if answer.status != 200 {
                return Err(ForwardError::Refused(Box::new(answer)));
            }
        }
        Ok(Box::new(posting))
    }

    async fn send(
        self: Arc<Self>,
        node_id: u32,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, ForwardError> {
        // No place is taken for a node the cluster does not know alive: a forged sid's would
        // be held until the timeout.
        self.liveness.check(&self.backend, node_id).await?;
        let (id, sid) = (request.id, request.sid);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending();
            if pending.len() >= self.limits.max_in_flight {
                return Err(ForwardError::Busy);
            }
            pending.insert(id, tx);
        }
        // Removes the entry however this ends (answer, timeout, or the caller gone).
        let _cleanup = Cleanup(&self, id);
        let message = ForwardMessage::Request(request).encode();
        match self.backend.send_to_node(node_id, message).await {
            Ok(true) => {}
            Ok(false) => return Err(ForwardError::UnknownNode(node_id)),
            Err(err) => return Err(ForwardError::Backend(err.to_string())),
        }
        let response = self.answer(node_id, rx).await?;
        self.liveness.seen(node_id);
        self.sessions.answered(sid, &response);
        Ok(response)
    }

    /// Waits for the answer of node `node_id`, for at most the timeout. A node that died right
    /// after the backend counted it (a crash the backend had not noticed yet) never answers:
    /// between waits, each twice as long as the last, the backend is asked whether the node
    /// still listens, so that the client hears soon that its session is gone and reconnects.
    async fn answer(
        &self,
        node_id: u32,
        mut rx: oneshot::Receiver<ForwardedResponse>,
    ) -> Result<ForwardedResponse, ForwardError> {
        let start = tokio::time::Instant::now();
        let left = || self.limits.timeout.saturating_sub(start.elapsed());
        let mut wait = FIRST_LIVENESS_CHECK;
        loop {
            let step = wait.min(left());
            match tokio::time::timeout(step, &mut rx).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => return Err(ForwardError::Timeout(node_id)),
                // The whole timeout has passed.
                Err(_) if step < wait => return Err(ForwardError::Timeout(node_id)),
                Err(_) => {}
            }
            // A backend that cannot tell (or does not answer) leaves the timeout in charge.
            if let Ok(Ok(false)) =
                tokio::time::timeout(left(), self.backend.node_listens(node_id)).await
            {
                // The answer may have come in while the backend was asked.
                return rx.try_recv().map_err(|_| ForwardError::Vanished(node_id));
            }
            wait = wait.saturating_mul(2);
        }
    }
}

/// How long the edge waits for an owner's answer before it first checks that the owner still
/// listens. Short, as a crashed owner's clients wait that long to hear of it; each later check
/// waits twice as long, so that a long poll costs only a few.
const FIRST_LIVENESS_CHECK: Duration = Duration::from_secs(1);

struct Cleanup<'a>(&'a ClusterForwarder, u64);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.pending().remove(&self.1);
    }
}

impl NodeReceiver for ClusterForwarder {
    fn receive(&self, message: Bytes) {
        match ForwardMessage::decode(message) {
            Ok(ForwardMessage::Response(response)) => {
                if let Some(tx) = self.pending().remove(&response.id) {
                    // The edge request may have timed out meanwhile; then nobody wants it.
                    let _ = tx.send(response);
                }
            }
            Ok(ForwardMessage::Request(request)) => {
                // A node that sends requests is alive: its sessions need no lookup.
                self.liveness.seen(request.from);
                // `receive` has only `&self`; the serve task needs an owned handle.
                let serve = self.serve.clone();
                let backend = self.backend.clone();
                let me = self.me.clone();
                self.served.fetch_add(1, Ordering::Relaxed);
                // The owner's end listens before the edge can send it anything (the edge
                // relays only once it has the answer).
                let tunnel = (request.method == ForwardMethod::Upgrade).then(|| {
                    let id = TunnelId {
                        edge: request.from,
                        id: request.id,
                    };
                    self.tunnel(id, request.from)
                });
                tokio::spawn(async move {
                    let (from, id) = (request.from, request.id);
                    let response = serve(request, tunnel).await;
                    let message = ForwardMessage::Response(response).encode();
                    let sent = backend.send_to_node(from, message).await;
                    let undo = me
                        .upgrade()
                        .and_then(|forwarder| forwarder.undelivered().remove(&(from, id)));
                    match sent {
                        Ok(true) => return,
                        Ok(false) => {
                            tracing::debug!(target: "sio::forward", node = from, "the node that forwarded a request is gone, its answer is undelivered");
                        }
                        Err(err) => {
                            tracing::warn!(target: "sio::forward", node = from, %err, "could not answer a forwarded request");
                        }
                    }
                    // What the answer took from its session goes back, for the client's next
                    // poll (through whichever node).
                    if let Some(undo) = undo {
                        undo();
                    }
                });
            }
            Ok(ForwardMessage::Tunnel(message)) => {
                let id = message.tunnel;
                let mut tunnels = self.tunnels();
                match tunnels.get_mut(&id) {
                    Some(inlet) => {
                        if !inlet.push(message) {
                            tunnels.remove(&id);
                        }
                    }
                    // Its end closed already (a close crossing the other end's last messages).
                    None => {
                        tracing::debug!(target: "sio::forward", tunnel = ?id, "message for a closed tunnel");
                    }
                }
            }
            Err(err) => {
                tracing::debug!(target: "sio::forward", %err, "unreadable forwarding message");
            }
        }
    }
}

/// How one tunnel end of this node reaches the other end: through the backend, to the node
/// that holds it.
struct ClusterLink {
    forwarder: Weak<ClusterForwarder>,
    peer: u32,
    id: TunnelId,
}

impl TunnelLink for ClusterLink {
    fn send(&self, message: TunnelMessage) -> TunnelSendFuture {
        let forwarder = self.forwarder.upgrade();
        let peer = self.peer;
        Box::pin(async move {
            let forwarder =
                forwarder.ok_or_else(|| ForwardError::Backend("node shut down".into()))?;
            forwarder.tunnel_messages.fetch_add(1, Ordering::Relaxed);
            let message = ForwardMessage::Tunnel(message).encode();
            match forwarder.backend.send_to_node(peer, message).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(ForwardError::UnknownNode(peer)),
                Err(err) => Err(ForwardError::Backend(err.to_string())),
            }
        })
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.upgrade() {
            forwarder.tunnels().remove(&self.id);
            forwarder.links.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A forwarder handle the engine can own (`Arc<ClusterForwarder>` as a [`Forwarder`]).
#[derive(Debug, Clone)]
pub struct ClusterForwarderRef(pub Arc<ClusterForwarder>);

impl Forwarder for ClusterForwarderRef {
    fn admit(
        &self,
        sid: Sid,
        method: ForwardMethod,
    ) -> Pin<Box<dyn Future<Output = Result<Permit, ForwardError>> + Send>> {
        Box::pin(self.0.clone().admit(sid, method))
    }

    fn forward(&self, node_id: u32, request: ForwardedRequest) -> ForwardFuture {
        let request = self.0.stamp(request);
        Box::pin(self.0.clone().counted(node_id, request))
    }

    fn open_tunnel(&self, node_id: u32, request: ForwardedRequest) -> TunnelFuture {
        let this = self.0.clone();
        if this.closing.load(Ordering::Acquire) {
            return Box::pin(async { Err(ForwardError::Busy) });
        }
        let request = this.stamp(request);
        let tunnel = this.tunnel(
            TunnelId {
                edge: this.node_id,
                id: request.id,
            },
            node_id,
        );
        Box::pin(async move { Ok((this.counted(node_id, request).await?, tunnel)) })
    }

    fn on_undelivered(&self, from: u32, id: u64, undo: Undo) {
        self.0.undelivered().insert((from, id), undo);
    }
}

impl ClusterForwarder {
    /// Sends a stamped request and counts a failure. The edge that asked logs it, with the
    /// session it was for (logging here too wrote every failure twice).
    async fn counted(
        self: Arc<Self>,
        node_id: u32,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, ForwardError> {
        let result = self.clone().send(node_id, request).await;
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryCluster;
    use crate::adapter::cluster::{BackendFuture, ClusterRequest, ClusterResponse, RequestHandler};
    use crate::engine::TunnelEvent;

    fn echo() -> Serve {
        Arc::new(|req: ForwardedRequest, _| -> ServeFuture {
            Box::pin(async move {
                ForwardedResponse {
                    id: req.id,
                    status: 200,
                    headers: vec![],
                    body: req.body,
                }
            })
        })
    }

    fn request(owner: u32) -> ForwardedRequest {
        ForwardedRequest {
            id: 0,
            from: 0,
            method: ForwardMethod::Post,
            sid: Sid::new(owner),
            query: "EIO=4&transport=polling".into(),
            headers: vec![],
            body: Bytes::from_static(b"4hi"),
        }
    }

    #[tokio::test]
    async fn a_request_reaches_its_owner_and_the_answer_comes_back() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits::default();
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let b = ClusterForwarder::start(Arc::new(cluster.node()), 2, echo(), limits).unwrap();
        let answer = ClusterForwarderRef(a.clone())
            .forward(2, request(2))
            .await
            .unwrap();
        assert_eq!((answer.status, &answer.body[..]), (200, &b"4hi"[..]));
        assert_eq!(a.stats().forwarded, 1);
        assert_eq!(b.stats().served, 1);
        assert!(a.pending().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_node_is_refused_at_once() {
        let cluster = MemoryCluster::default();
        let a = ClusterForwarder::start(
            Arc::new(cluster.node()),
            1,
            echo(),
            ForwardLimits::default(),
        )
        .unwrap();
        let err = ClusterForwarderRef(a.clone())
            .forward(9, request(9))
            .await
            .unwrap_err();
        assert_eq!(err, ForwardError::UnknownNode(9));
        assert_eq!(a.stats().failures, 1);
    }

    #[tokio::test]
    async fn an_owner_that_never_answers_times_out() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits {
            timeout: Duration::from_millis(100),
            max_in_flight: 1,
            ..ForwardLimits::default()
        };
        let silent: Serve = Arc::new(|_, _| -> ServeFuture { Box::pin(std::future::pending()) });
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let _b = ClusterForwarder::start(Arc::new(cluster.node()), 2, silent, limits).unwrap();
        let forwarder = ClusterForwarderRef(a.clone());
        let first = tokio::spawn({
            let forwarder = forwarder.clone();
            async move { forwarder.forward(2, request(2)).await }
        });
        // The one slot is taken while the first waits: a second is refused, not queued.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            forwarder.forward(2, request(2)).await,
            Err(ForwardError::Busy)
        );
        assert_eq!(first.await.unwrap(), Err(ForwardError::Timeout(2)));
        assert!(a.pending().is_empty());
    }

    /// A backend that takes every message, as Redis Cluster's PUBLISH does (its count is only
    /// one shard node's subscribers), but tells which nodes listen when asked.
    #[derive(Debug)]
    struct TakesAll(crate::MemoryNode);

    impl Backend for TakesAll {
        fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
            self.0.register(ns, handler);
        }
        fn publish(&self, ns: &str, request: ClusterRequest) {
            self.0.publish(ns, request);
        }
        fn request(
            &self,
            ns: &str,
            request: ClusterRequest,
            timeout: Duration,
        ) -> BackendFuture<Vec<ClusterResponse>> {
            self.0.request(ns, request, timeout)
        }
        fn server_count(&self) -> BackendFuture<usize> {
            self.0.server_count()
        }
        fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
            self.0.listen_node(node_id, receiver)
        }
        fn send_to_node(&self, node_id: u32, message: Bytes) -> BackendFuture<bool> {
            let sent = self.0.send_to_node(node_id, message);
            Box::pin(async move { sent.await.map(|_| true) })
        }
        fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
            self.0.node_listens(node_id)
        }
    }

    /// Forged sids name nodes that do not exist: on a backend that takes every message they
    /// are refused before they take a place, so they cannot crowd out a real session's request.
    #[tokio::test]
    async fn a_request_for_a_node_not_known_alive_takes_no_place() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits {
            max_in_flight: 1,
            ..ForwardLimits::default()
        };
        let backend = Arc::new(TakesAll(cluster.node()));
        let a = ClusterForwarder::start(backend, 1, echo(), limits).unwrap();
        let _b = ClusterForwarder::start(Arc::new(cluster.node()), 2, echo(), limits).unwrap();
        let forwarder = ClusterForwarderRef(a.clone());
        let forged = (100..110).map(|node| forwarder.forward(node, request(node)));
        for (node, answer) in (100..).zip(futures_util::future::join_all(forged).await) {
            assert_eq!(answer, Err(ForwardError::UnknownNode(node)));
        }
        assert!(a.pending().is_empty());
        let answer = forwarder.forward(2, request(2)).await.unwrap();
        assert_eq!(answer.status, 200);
    }

    #[tokio::test]
    async fn a_post_is_probed_until_its_session_is_confirmed_and_never_overlaps() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits::default();
        // The owner knows one session: the probe for another gets the protocol's 400.
        let live = Sid::new(2);
        let owner: Serve = Arc::new(move |req: ForwardedRequest, _| -> ServeFuture {
            Box::pin(async move {
                let (status, body) = match req.sid == live {
                    true => (200, Bytes::new()),
                    false => (
                        400,
                        Bytes::from_static(br#"{"code":1,"message":"Session ID unknown"}"#),
                    ),
                };
                ForwardedResponse {
                    id: req.id,
                    status,
                    headers: vec![],
                    body,
                }
            })
        });
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let b = ClusterForwarder::start(Arc::new(cluster.node()), 2, owner, limits).unwrap();
        let forwarder = ClusterForwarderRef(a.clone());
        let refused = forwarder.admit(Sid::new(2), ForwardMethod::Post).await;
        assert!(
            matches!(refused, Err(ForwardError::Refused(answer)) if answer.is_unknown_session())
        );
        assert_eq!(b.stats().served, 1);

        let permit = forwarder.admit(live, ForwardMethod::Post).await.unwrap();
        assert_eq!(b.stats().served, 2);
        assert!(matches!(
            forwarder.admit(live, ForwardMethod::Post).await,
            Err(ForwardError::Overlapping)
        ));
        drop(permit);
        // Confirmed by the probe's answer: the next POST goes without one.
        let _permit = forwarder.admit(live, ForwardMethod::Post).await.unwrap();
        assert_eq!(b.stats().served, 2);
    }

    /// The owner's answer to a poll carries frames it took from the session: when the edge
    /// that asked is gone before the answer leaves, they are put back.
    #[tokio::test]
    async fn an_undelivered_answer_is_undone() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits::default();
        let owner_end: Arc<std::sync::OnceLock<ClusterForwarderRef>> = Arc::default();
        let (go, wait) = tokio::sync::watch::channel(false);
        let undone = Arc::new(AtomicU64::new(0));
        let serve: Serve = {
            let (owner_end, undone) = (owner_end.clone(), undone.clone());
            Arc::new(move |req: ForwardedRequest, _| -> ServeFuture {
                let (owner_end, undone, mut wait) =
                    (owner_end.clone(), undone.clone(), wait.clone());
                Box::pin(async move {
                    let _ = wait.wait_for(|go| *go).await;
                    let undo = Box::new(move || {
                        undone.fetch_add(1, Ordering::Relaxed);
                    });
                    if let Some(owner) = owner_end.get() {
                        owner.on_undelivered(req.from, req.id, undo);
                    }
                    ForwardedResponse {
                        id: req.id,
                        status: 200,
                        headers: vec![],
                        body: req.body,
                    }
                })
            })
        };
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let b = ClusterForwarder::start(Arc::new(cluster.node()), 2, serve, limits).unwrap();
        let _ = owner_end.set(ClusterForwarderRef(b.clone()));
        let edge = ClusterForwarderRef(a.clone());

        // Delivered: nothing to undo, and nothing kept.
        go.send_replace(true);
        edge.forward(2, request(2)).await.unwrap();
        assert_eq!(undone.load(Ordering::Relaxed), 0);
        assert!(b.undelivered().is_empty());

        // The edge goes while the owner works on its answer.
        go.send_replace(false);
        let asked = tokio::spawn(async move { edge.forward(2, request(2)).await });
        for _ in 0..100 {
            if b.stats().served == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        asked.abort();
        let _ = asked.await;
        drop(a);
        go.send_replace(true);
        for _ in 0..100 {
            if undone.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(undone.load(Ordering::Relaxed), 1);
        assert!(b.undelivered().is_empty());
    }

    #[test]
    fn a_timeout_shorter_than_the_heartbeat_is_raised() {
        let limits = ForwardLimits {
            timeout: Duration::from_secs(10),
            ..ForwardLimits::default()
        };
        let (interval, timeout) = (Duration::from_secs(25), Duration::from_secs(20));
        assert_eq!(
            limits.for_heartbeat(interval, timeout).timeout,
            Duration::from_secs(45)
        );
        let long = ForwardLimits {
            timeout: Duration::from_secs(60),
            ..limits
        };
        assert_eq!(long.for_heartbeat(interval, timeout).timeout, long.timeout);
    }

    /// A node that crashes right after the backend counted it for a request (Redis had not yet
    /// seen its connection close) never answers: the edge finds it gone well before the
    /// timeout, and the client gets "Session ID unknown" and reconnects.
    #[tokio::test(start_paused = true)]
    async fn an_owner_that_dies_after_taking_a_request_is_found_gone() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits {
            timeout: Duration::from_secs(3600),
            ..ForwardLimits::default()
        };
        let silent: Serve = Arc::new(|_, _| -> ServeFuture { Box::pin(std::future::pending()) });
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let b = ClusterForwarder::start(Arc::new(cluster.node()), 2, silent, limits).unwrap();
        let forwarder = ClusterForwarderRef(a.clone());
        let answer = tokio::spawn(async move { forwarder.forward(2, request(2)).await });
        for _ in 0..100 {
            if b.stats().served > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(b.stats().served, 1);
        drop(b);
        // It reached the owner: vanished, not unknown (a POST is then not adopted).
        assert_eq!(answer.await.unwrap(), Err(ForwardError::Vanished(2)));
        assert!(a.pending().is_empty());
    }

    #[tokio::test]
    async fn a_tunnel_end_gives_up_on_a_silent_or_gone_other_end() {
        let cluster = MemoryCluster::default();
        let limits = ForwardLimits {
            timeout: Duration::from_millis(200),
            ..ForwardLimits::default()
        };
        // The owner takes every upgrade and hands its tunnel end to the test.
        let (ends, owner_ends) = std::sync::mpsc::channel();
        let accept: Serve = Arc::new(move |req: ForwardedRequest, tunnel| -> ServeFuture {
            let _ = ends.send(tunnel);
            Box::pin(async move {
                ForwardedResponse {
                    id: req.id,
                    status: ForwardedResponse::TUNNEL_ACCEPTED,
                    headers: vec![],
                    body: Bytes::new(),
                }
            })
        });
        let a = ClusterForwarder::start(Arc::new(cluster.node()), 1, echo(), limits).unwrap();
        let b = ClusterForwarder::start(Arc::new(cluster.node()), 2, accept, limits).unwrap();
        let upgrade = ForwardedRequest {
            method: ForwardMethod::Upgrade,
            ..request(2)
        };
        let (answer, mut edge) = ClusterForwarderRef(a.clone())
            .open_tunnel(2, upgrade)
            .await
            .unwrap();
        assert_eq!(answer.status, ForwardedResponse::TUNNEL_ACCEPTED);
        let mut owner = owner_ends.recv().unwrap().expect("the owner's end");
        let probe = TunnelEvent::Text(Bytes::from_static(b"2probe"));
        edge.send(probe.clone()).await.unwrap();
        assert_eq!(owner.recv().await, Some(probe));
        let answer = TunnelEvent::Text(Bytes::from_static(b"3probe"));
        owner.send(answer.clone()).await.unwrap();
        assert_eq!(edge.recv().await, Some(answer));
        assert_eq!((a.stats().tunnels, b.stats().tunnels), (1, 1));
        assert_eq!(
            (a.stats().tunnel_messages, b.stats().tunnel_messages),
            (1, 1)
        );

        // Silent past the timeout: the edge gives up (and closes its client's WebSocket).
        assert_eq!(edge.recv().await, None);
        // Gone: the owner's node no longer listens, so sending fails at once.
        drop(owner);
        assert_eq!(b.stats().tunnels, 0);
        drop(b);
        let sent = edge.send(TunnelEvent::Close(1000)).await;
        assert_eq!(sent, Err(ForwardError::UnknownNode(2)));
        drop(edge);
        assert_eq!(a.stats().tunnels, 0);
    }
}
