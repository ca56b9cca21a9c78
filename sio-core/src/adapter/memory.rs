//! A cluster of nodes in one process: every [`SocketIo`](crate::SocketIo) built with a backend
//! from the same [`MemoryCluster`] acts as one node. Cluster semantics are tested with it without
//! Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use super::cluster::{
    Backend, BackendFuture, ClusterRequest, ClusterResponse, NodeReceiver, RequestHandler,
};

type Handlers = HashMap<(usize, String), Weak<dyn RequestHandler>>;

/// Several nodes in one process.
///
/// ```
/// use sio_core::{MemoryCluster, SocketIo};
///
/// let cluster = MemoryCluster::default();
/// let a = SocketIo::builder().adapter(cluster.node()).build();
/// let b = SocketIo::builder().adapter(cluster.node()).build();
/// # let _ = (a, b);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryCluster {
    inner: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    nodes: usize,
    handlers: Handlers,
    /// Engine node id → who receives the messages sent to it.
    receivers: HashMap<u32, Weak<dyn NodeReceiver>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl MemoryCluster {
    /// The backend of a new node of this cluster.
    pub fn node(&self) -> MemoryNode {
        let mut shared = lock(&self.inner);
        shared.nodes += 1;
        MemoryNode {
            id: shared.nodes,
            cluster: self.clone(),
        }
    }

    /// The handlers of the other nodes for a namespace.
    fn others(&self, me: usize, ns: &str) -> Vec<Arc<dyn RequestHandler>> {
        lock(&self.inner)
            .handlers
            .iter()
            .filter(|((node, name), _)| *node != me && name == ns)
            .filter_map(|(_, handler)| handler.upgrade())
            .collect()
    }
}

/// One node of a [`MemoryCluster`].
#[derive(Debug, Clone)]
pub struct MemoryNode {
    id: usize,
    cluster: MemoryCluster,
}

impl Backend for MemoryNode {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        lock(&self.cluster.inner)
            .handlers
            .insert((self.id, ns.to_owned()), handler);
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        for handler in self.cluster.others(self.id, ns) {
            // Applied at once; nobody waits for the answer.
            drop(handler.handle(request.clone()));
        }
    }

    fn request(
        &self,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> BackendFuture<Vec<ClusterResponse>> {
        let answers: Vec<_> = self
            .cluster
            .others(self.id, ns)
            .into_iter()
            .map(|handler| handler.handle(request.clone()))
            .collect();
        Box::pin(async move {
            // Like a real backend, give up on nodes that take longer than `timeout`.
            let answers = answers
                .into_iter()
                .map(|answer| tokio::time::timeout(timeout, answer));
            Ok(join_all(answers).await.into_iter().flatten().collect())
        })
    }

    fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
        lock(&self.cluster.inner)
            .receivers
            .insert(node_id, receiver);
        true
    }

    fn send_to_node(&self, node_id: u32, message: Bytes) -> BackendFuture<bool> {
        let receiver = lock(&self.cluster.inner)
            .receivers
            .get(&node_id)
            .and_then(Weak::upgrade);
        Box::pin(async move {
            // Handed over when the send is awaited, so that one sender's messages arrive in
            // the order they were sent, as from a real backend's reader (which returns quickly).
            match receiver {
                Some(receiver) => {
                    receiver.receive(message);
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        let listens = lock(&self.cluster.inner)
            .receivers
            .get(&node_id)
            .is_some_and(|receiver| receiver.strong_count() > 0);
        Box::pin(async move { Ok(listens) })
    }

    fn server_count(&self) -> BackendFuture<usize> {
        let count = lock(&self.cluster.inner).nodes;
        Box::pin(async move { Ok(count) })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
