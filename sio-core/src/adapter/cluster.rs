//! The seam between a namespace and the other nodes of a cluster.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::local::{BroadcastOptions, Room};
use crate::ack::AckResponse;
use crate::parser::Packet;

/// An operation one node asks the others to apply to their own sockets of a namespace.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterRequest {
    /// Send `packet` to the sockets `opts` chooses. No answer.
    Broadcast {
        /// The packet. Without a backend log its arguments already carry the sender's recovery
        /// offset, if any.
        packet: Packet,
        /// Who receives it.
        opts: BroadcastOptions,
        /// Skip sockets that cannot take the packet at once instead of queueing it.
        volatile: bool,
        /// Its position in the backend's log ([`Backend::broadcast_log`]), set by the backend
        /// when it hands the broadcast over: the receiving namespace adds it to the arguments
        /// as the recovery offset. `None` when publishing, and on backends without a log.
        offset: Option<String>,
        /// Numbered for connection state recovery by its sender (on backends without a log):
        /// every node must hear it, also one with no socket in its rooms, or a client that
        /// recovers there would not know it missed it. A backend that sends a room's broadcast
        /// only to the nodes with that room (sharded pub/sub) sends this one to all. `false`
        /// when a backend hands a broadcast over.
        numbered: bool,
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

/// A socket described for another node (`fetchSockets()` in Node). The shape is Node's, so
/// that sio and Node servers can answer each other.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// The socket id (Node servers use other id formats than sio, so it is kept as text).
    pub id: String,
    /// Its rooms, its own id included.
    pub rooms: Vec<Room>,
    /// The handshake as Node describes it: `headers`, `time`, `address`, `xdomain`, `secure`,
    /// `issued`, `url`, `query` and `auth` (the CONNECT payload).
    pub handshake: Value,
    /// What the application stored on the socket ([`Socket::set_data`](crate::Socket::set_data),
    /// `socket.data` in Node).
    pub data: Value,
}

impl RemoteSocket {
    /// The CONNECT payload the client sent (`handshake.auth`), `null` when unknown.
    pub fn auth(&self) -> &Value {
        self.handshake.get("auth").unwrap_or(&Value::Null)
    }
}

/// The acks another node asked for with [`ClusterRequest::BroadcastWithAck`]: how many
/// sockets got the packet, then each answer as it arrives (Node's protocol sends the count at
/// once and every ack on its own).
pub struct AckStream {
    /// The number of sockets the packet was sent to.
    pub count: usize,
    /// Their answers, as they arrive; the stream ends when all answered or the timeout passed.
    pub acks: Pin<Box<dyn Stream<Item = AckResponse> + Send>>,
}

impl fmt::Debug for AckStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckStream")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
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

    /// Sends `packet` (with its ack id) to the sockets `opts` chooses and streams their acks,
    /// for at most `timeout`. [`handle`](Self::handle) does the same for
    /// [`ClusterRequest::BroadcastWithAck`] but answers once, with every ack.
    fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> AckStream;

    /// The backend's broadcast log reached `offset`: every broadcast up to it was handed to
    /// [`handle`](Self::handle). Backends with a [`Backend::broadcast_log`] call it when they
    /// start reading (with the log's end) and after each read; the default ignores it.
    fn log_reached(&self, offset: &str) {
        let _ = offset;
    }
}

/// What receives the messages other nodes send to this one with [`Backend::send_to_node`]
/// (forwarded requests for its sessions, and the answers to the ones it forwarded).
pub trait NodeReceiver: Send + Sync {
    /// A message for this node arrived. Runs on the backend's reader: return quickly.
    fn receive(&self, message: Bytes);
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

    /// Rooms of namespace `ns` that this node now has (their first socket joined) or no longer
    /// has (their last socket left), socket-id rooms included. Backends that subscribe per
    /// room (sharded pub/sub) follow them; the default ignores them.
    fn rooms_changed(&self, ns: &str, created: &[Room], deleted: &[Room]) {
        let _ = (ns, created, deleted);
    }

    /// Starts handing the messages sent to node `node_id` (this node's engine id) to
    /// `receiver`. Returns `false` when the backend cannot carry messages to one node, which
    /// turns sticky-free forwarding off; the default.
    fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
        let _ = (node_id, receiver);
        false
    }

    /// Sends `message` to node `node_id` alone. Answers whether some node listens for that id
    /// (`false`: the node is gone, so a request for its sessions can be refused at once).
    /// Messages a caller sends one after the other (each once the previous send resolved)
    /// reach the node in that order: tunnels rely on it (and break when one goes missing).
    fn send_to_node(&self, node_id: u32, message: Bytes) -> BackendFuture<bool> {
        let _ = (node_id, message);
        Box::pin(async { Ok(false) })
    }

    /// Whether some node listens for `node_id` now. A node can die right after
    /// [`send_to_node`](Self::send_to_node) counted it (a crash the backend has not noticed
    /// yet); the forwarder asks this while it waits for that node's answer, so that a request
    /// for a dead node's session fails soon instead of at its timeout. The default, `true`:
    /// the backend cannot tell, and the timeout finds a dead node.
    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        let _ = node_id;
        Box::pin(async { Ok(true) })
    }

    /// Where the cluster keeps connection state recovery sessions so that any node can take
    /// them back (a client whose node died recovers on another). The default, `None`, keeps
    /// them in each node's memory: recovery then works on the same node only.
    fn session_store(&self) -> Option<&dyn crate::SessionStore> {
        None
    }

    /// The cluster's shared log of broadcasts, when the backend keeps one (Redis streams).
    /// Then the backend owns the recovery offsets: publishing a [`ClusterRequest::Broadcast`]
    /// appends it to the log, and the backend hands every broadcast of the log to the
    /// handlers, this node's own included, in log order and with its
    /// [`offset`](ClusterRequest::Broadcast::offset) (a broadcast it could not log, with
    /// `None`: this node's sockets still get it). A namespace then delivers its own
    /// broadcasts when they come back, and a returning client's missed broadcasts are read
    /// from the log, even those sent before this node started. The default, `None`: every
    /// node logs the broadcasts it sees in memory.
    fn broadcast_log(&self) -> Option<&dyn crate::BroadcastLog> {
        None
    }

    /// Leaves the cluster: this node stops receiving and stops being counted. Called by
    /// [`SocketIo::shutdown`](crate::SocketIo::shutdown); the default does nothing.
    fn close(&self) {}
}
