//! The engine's [`Forwarder`] over a cluster [`Backend`]: requests for another node's sessions
//! go to that node alone ([`Backend::send_to_node`]), and its answer comes back the same way.

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
    ForwardError, ForwardFuture, ForwardMessage, ForwardedRequest, ForwardedResponse, Forwarder,
};

/// What the owner does with a request forwarded to it: run it against its local session.
pub type ServeFuture = Pin<Box<dyn Future<Output = ForwardedResponse> + Send>>;

/// Runs a forwarded request on this node (the engine's `serve_forwarded`).
pub type Serve = Arc<dyn Fn(ForwardedRequest) -> ServeFuture + Send + Sync>;

/// Limits of a [`ClusterForwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwardLimits {
    /// How long the edge node waits for the owner's answer. A poll waits up to the ping
    /// interval for data on the owner, so this must be longer than that.
    pub timeout: Duration,
    /// How many forwarded requests may wait for answers at once; more get [`ForwardError::Busy`].
    pub max_in_flight: usize,
}

impl Default for ForwardLimits {
    fn default() -> Self {
        ForwardLimits {
            timeout: Duration::from_secs(45),
            max_in_flight: 10_000,
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
/// let serve = Arc::new(|req: sio_core::engine::ForwardedRequest| -> ServeFuture {
///     Box::pin(async move {
///         ForwardedResponse { id: req.id, status: 200, headers: vec![], body: Bytes::from_static(b"ok") }
///     })
/// });
/// let node = ClusterForwarder::start(Arc::new(cluster.node()), 1, serve, ForwardLimits::default());
/// assert!(node.is_some());
/// ```
pub struct ClusterForwarder {
    backend: Arc<dyn Backend>,
    node_id: u32,
    limits: ForwardLimits,
    serve: Serve,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<ForwardedResponse>>>,
    forwarded: AtomicU64,
    served: AtomicU64,
    failures: AtomicU64,
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
        let forwarder = Arc::new(ClusterForwarder {
            backend,
            node_id,
            limits,
            serve,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            forwarded: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
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
        }
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ForwardedResponse>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send(
        self: Arc<Self>,
        node_id: u32,
        mut request: ForwardedRequest,
    ) -> Result<ForwardedResponse, ForwardError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        request.from = self.node_id;
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
        match tokio::time::timeout(self.limits.timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) | Err(_) => Err(ForwardError::Timeout(node_id)),
        }
    }
}

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
                tokio::spawn(async move {
                    let from = request.from;
                    let response = serve(request).await;
                    let message = ForwardMessage::Response(response).encode();
                    if let Err(err) = backend.send_to_node(from, message).await {
                        tracing::warn!(target: "sio::forward", node = from, %err, "could not answer a forwarded request");
                    }
                });
            }
            Err(err) => {
                tracing::debug!(target: "sio::forward", %err, "unreadable forwarding message");
            }
        }
    }
}

/// A forwarder handle the engine can own (`Arc<ClusterForwarder>` as a [`Forwarder`]).
#[derive(Debug, Clone)]
pub struct ClusterForwarderRef(pub Arc<ClusterForwarder>);

impl Forwarder for ClusterForwarderRef {
    fn forward(&self, node_id: u32, request: ForwardedRequest) -> ForwardFuture {
        let this = self.0.clone();
        this.forwarded.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let failures = this.clone();
            let result = this.send(node_id, request).await;
            if let Err(err) = &result {
                failures.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "sio::forward", node = node_id, %err, "forwarded request failed");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryCluster;
    use crate::engine::{ForwardMethod, Sid};

    fn echo() -> Serve {
        Arc::new(|req: ForwardedRequest| -> ServeFuture {
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
        };
        let silent: Serve = Arc::new(|_| -> ServeFuture { Box::pin(std::future::pending()) });
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
}
