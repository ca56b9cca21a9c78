//! The engine's [`Forwarder`] over a cluster [`Backend`]: requests for another node's sessions
//! go to that node alone ([`Backend::send_to_node`]), and its answer comes back the same way;
//! so do the messages of the tunnels that relay upgraded WebSockets.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::cluster::{Backend, NodeReceiver};
use crate::engine::{
    ForwardError, ForwardFuture, ForwardMessage, ForwardMethod, ForwardedRequest,
    ForwardedResponse, Forwarder, Tunnel, TunnelFuture, TunnelId, TunnelInlet, TunnelLink,
    TunnelMessage, TunnelSendFuture,
};

/// What the owner does with a request forwarded to it: run it against its local session.
pub type ServeFuture = Pin<Box<dyn Future<Output = ForwardedResponse> + Send>>;

/// Runs a forwarded request on this node (the engine's `serve_forwarded`); an upgrade comes
/// with the owner's end of its tunnel (for the engine's `serve_tunnel`).
pub type Serve = Arc<dyn Fn(ForwardedRequest, Option<Tunnel>) -> ServeFuture + Send + Sync>;

/// Limits of a [`ClusterForwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwardLimits {
    /// How long the edge node waits for the owner's answer. A poll waits up to the ping
    /// interval for data on the owner, so this must be longer than that. Also how long an end
    /// of a tunnel waits for the other's next message before it gives up (the owner pings
    /// every ping interval, and the client answers).
    pub timeout: Duration,
    /// How many forwarded requests may wait for answers at once; more get [`ForwardError::Busy`].
    pub max_in_flight: usize,
    /// The payload bytes one tunnel end buffers of the other end's messages; a tunnel whose
    /// reader falls further behind breaks (the client's WebSocket closes, the session sees a
    /// transport close).
    pub tunnel_buffer: usize,
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
    /// Where each tunnel end of this node takes the other end's messages.
    tunnels: Mutex<HashMap<TunnelId, TunnelInlet>>,
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
            tunnels: Mutex::new(HashMap::new()),
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

    /// A new tunnel end on this node, talking to `peer`; it hears the peer's messages from now
    /// on, until it is dropped.
    fn tunnel(&self, id: TunnelId, peer: u32) -> Tunnel {
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

    async fn send(
        self: Arc<Self>,
        node_id: u32,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, ForwardError> {
        let id = request.id;
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
        self.answer(node_id, rx).await
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
                return rx
                    .try_recv()
                    .map_err(|_| ForwardError::UnknownNode(node_id));
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
                // `receive` has only `&self`; the serve task needs an owned handle.
                let serve = self.serve.clone();
                let backend = self.backend.clone();
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
                    let from = request.from;
                    let response = serve(request, tunnel).await;
                    let message = ForwardMessage::Response(response).encode();
                    if let Err(err) = backend.send_to_node(from, message).await {
                        tracing::warn!(target: "sio::forward", node = from, %err, "could not answer a forwarded request");
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
        }
    }
}

/// A forwarder handle the engine can own (`Arc<ClusterForwarder>` as a [`Forwarder`]).
#[derive(Debug, Clone)]
pub struct ClusterForwarderRef(pub Arc<ClusterForwarder>);

impl Forwarder for ClusterForwarderRef {
    fn forward(&self, node_id: u32, request: ForwardedRequest) -> ForwardFuture {
        let request = self.0.stamp(request);
        Box::pin(self.0.clone().counted(node_id, request))
    }

    fn open_tunnel(&self, node_id: u32, request: ForwardedRequest) -> TunnelFuture {
        let this = self.0.clone();
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
    use crate::engine::{ForwardMethod, Sid, TunnelEvent};

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
        assert_eq!(answer.await.unwrap(), Err(ForwardError::UnknownNode(2)));
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
