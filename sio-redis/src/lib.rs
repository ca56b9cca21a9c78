//! A Redis adapter for sio that joins clusters of Node servers.
//!
//! Each sio node holds its own sockets; a broadcast, a room change or a `fetch_sockets` must
//! reach the sockets of every node. [`RedisAdapter`] carries these operations over Redis
//! pub/sub in the wire format of Node's `@socket.io/redis-adapter` (`createAdapter`), so sio
//! and Node servers can share one cluster, and `@socket.io/redis-emitter` reaches sio nodes.
//!
//! Switching a server from one node to a cluster is one line:
//!
//! ```no_run
//! use sio_core::{Namespace, SocketIo, SocketRef, Data};
//! use sio_redis::RedisAdapter;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
//! let io = SocketIo::builder()
//!     .adapter(RedisAdapter::from_url("redis://127.0.0.1:6379")?)
//!     .namespace(Namespace::new("/").on("chat", |s: SocketRef, Data(msg): Data<String>| async move {
//!         // Reaches every client of every node.
//!         let _ = s.namespace().emit("chat", &msg);
//!     }))
//!     .build();
//! # let _ = io; Ok(()) }
//! ```
//!
//! What crosses Redis, and what it costs:
//! * Every broadcast is published once and received by every node (pattern subscription), as
//!   with Node's adapter; each node then delivers to its own sockets.
//! * Pub/sub has no replay: messages published while a node is cut off from Redis are lost for
//!   that node ([`RedisStats::dropped`] counts what this node could not publish). The
//!   subscriber reconnects by itself and subscribes again.
//! * [`RedisConfig::streams`] speaks Node's `@socket.io/redis-streams-adapter` instead: broadcasts
//!   are entries of a Redis stream that each node reads from where it left off (no loss in a
//!   short disconnection), and with connection state recovery any node, even one started later,
//!   sends a returning client what it missed, read back from the stream.
//! * Redis Cluster (`redis+cluster://`) works with both pub/sub protocols: classic pub/sub crosses the
//!   cluster bus, and sharded channels are published and subscribed on the master that owns
//!   their slot.
//! * Requests that expect answers (`fetch_sockets`, broadcasts with acks, `server_side_emit`
//!   with acks) wait for `PUBSUB NUMSUB` nodes and return what arrived when the timeout passes,
//!   where Node's adapter fails the whole call.
//!
//! A managed Redis (TLS, an ACL user) is a `rediss://` URL and options of [`RedisConfig`];
//! [`RedisAdapter::connect`] connects once before it returns, so a wrong certificate or
//! password is an [`Error`] at start-up rather than warnings and retries:
//!
//! ```no_run
//! use sio_redis::{RedisAdapter, RedisConfig, TlsConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
//! let config = RedisConfig::new("rediss://redis.internal:6380")
//!     .username("sio")
//!     .password(std::env::var("REDIS_PASSWORD").unwrap_or_default())
//!     // Your own CA, trusted besides the system's (a public one needs nothing).
//!     .tls(TlsConfig::new().ca_file("/etc/sio/redis-ca.pem"));
//! let adapter = RedisAdapter::connect(config).await?;
//! # let _ = adapter; Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod adapter;
mod classic;
mod cluster;
mod config;
mod dial;
mod emitter;
mod error;
mod handover;
mod message;
mod resp;
mod session_queue;
mod sessions;
mod sharded;
mod shards;
mod slots;
mod stream_log;
mod streams;
mod subscriber;
mod target;
mod tls;
mod url;
mod wire;

pub use adapter::{RedisAdapter, RedisStats};
pub use config::RedisConfig;
pub use emitter::Emitter;
pub use error::Error;
pub use tls::TlsConfig;
pub use wire::WireError;
