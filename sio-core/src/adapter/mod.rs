//! Adapters: where rooms live and how an operation reaches the sockets of other nodes.
//!
//! Every node keeps the room index of its own sockets ([`local`]). A cluster [`Backend`]
//! carries operations (broadcasts, room changes, disconnections, socket lookups, server-side
//! events) to the other nodes, each of which applies them to its own sockets. Without a backend
//! every operation is local. [`MemoryCluster`] runs several nodes in one process (for tests);
//! `sio-redis` carries the same operations over Redis, in the wire format of Node's adapter.

mod cluster;
mod forward;
mod local;
mod memory;

pub use cluster::{
    AckStream, AdapterError, Backend, BackendFuture, ClusterRequest, ClusterResponse,
    HandlerFuture, NodeReceiver, RemoteSocket, RequestHandler,
};
pub use forward::{
    ClusterForwarder, ClusterForwarderRef, ForwardLimits, ForwardStats, Serve, ServeFuture,
};
pub(crate) use local::LocalAdapter;
pub use local::{BroadcastOptions, Room};
pub use memory::{MemoryCluster, MemoryNode};
