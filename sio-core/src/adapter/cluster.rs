//! The seam between a namespace and the other nodes of a cluster.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use serde_json::Value;

use super::local::{BroadcastOptions, Room};
use crate::ack::AckResponse;
use crate::engine::Sid;
use crate::parser::Packet;

/// An operation one node asks the others to apply to their own sockets of a namespace.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterRequest {
    /// Send `packet` to the sockets `opts` chooses. No answer.
    Broadcast {
        /// The packet (its arguments already carry the recovery offset, if any).
        packet: Packet,
        /// Who receives it.
        opts: BroadcastOptions,
    },
    /// Describe the sockets `opts` chooses.
    FetchSockets {
        /// Which sockets.
        opts: BroadcastOptions,
    },
    /// Make the chosen sockets join rooms.
    SocketsJoin {
        /// Which sockets.
        opts: BroadcastOptions,
        /// The rooms to join.
        rooms: Vec<Room>,
    },
    /// Make the chosen sockets leave rooms.
    SocketsLeave {
        /// Which sockets.
        opts: BroadcastOptions,
        /// The rooms to leave.
        rooms: Vec<Room>,
    },
    /// Disconnect the chosen sockets (and close their connections when `close`).
    DisconnectSockets {
        /// Which sockets.
        opts: BroadcastOptions,
        /// Close the whole connection, not only the namespace.
        close: bool,
    },
    /// Send `packet` (which carries an ack id) to the sockets `opts` chooses and collect their
    /// acks for at most `timeout`.
    BroadcastWithAck {
        /// The packet, with its ack id.
        packet: Packet,
        /// Who receives it.
        opts: BroadcastOptions,
        /// How long to wait for the acks.
        timeout: Duration,
    },
    /// An event for the other servers' own handlers (`serverSideEmit`): the event name, then
    /// its arguments.
    ServerSideEmit {
        /// The event name followed by its arguments.
        args: Vec<Value>,
        /// Whether the sender waits for each node's answer ([`ClusterResponse::Acks`]).
        ack: bool,
    },
}

/// A node's answer to a [`ClusterRequest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterResponse {
    /// The request was applied.
    Done,
    /// The sockets asked for with [`ClusterRequest::FetchSockets`].
    Sockets(Vec<RemoteSocket>),
    /// The acks of [`ClusterRequest::BroadcastWithAck`] that arrived in time.
    Acks(Vec<AckResponse>),
}

/// A socket described for another node (`fetchSockets()` in Node).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: Sid,
    /// Its rooms.
    pub rooms: Vec<Room>,
    /// Its CONNECT payload.
    pub auth: Value,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The backend could not reach the cluster (e.g. Redis is down).
    #[error("cluster backend unavailable: {0}")]
    Unavailable(String),
}

/// The answer of a [`RequestHandler`]: ready at once for most requests, later for those that
/// wait on clients (acks).
pub type HandlerFuture = Pin<Box<dyn Future<Output = ClusterResponse> + Send>>;

/// What a namespace does with the other nodes' requests: apply them to its own sockets.
pub trait RequestHandler: Send + Sync {
    /// Applies a request to this node's sockets at once (so that requests keep their order)
    /// and answers it, possibly later.
    fn handle(&self, request: ClusterRequest) -> HandlerFuture;
}

/// A future a backend returns.
pub type BackendFuture<T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send>>;

/// A cluster backend: carries [`ClusterRequest`]s between the nodes of a cluster.
///
/// Implementations decide the wire format (the in-process [`MemoryCluster`](super::MemoryCluster)
/// passes values; `sio-redis` speaks Node's Redis adapter protocol).
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Starts handing the other nodes' requests for namespace `ns` to `handler` (once per
    /// namespace, when it is created).
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>);

    /// Sends a request to every other node, expecting no answer. Requests from one node reach
    /// each other node in the order they were published.
    fn publish(&self, ns: &str, request: ClusterRequest);

    /// Sends a request to every other node and collects the answers that arrive within
    /// `timeout`.
    fn request(
        &self,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> BackendFuture<Vec<ClusterResponse>>;

    /// The number of nodes in the cluster, this one included.
    fn server_count(&self) -> BackendFuture<usize>;
}
