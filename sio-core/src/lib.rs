//! # sio-core
//!
//! An Engine.IO v4 / Socket.IO v5 server on actix-web, wire-compatible with the official
//! JavaScript clients.
//!
//! - [`SocketIo`]: the server; [`Namespace`]: handlers for events, connections and
//!   disconnections; [`SocketRef`]: a connected client; [`BroadcastOperators`]: emits to rooms.
//! - [`extract`]: what handlers take as arguments ([`Data`], [`AckSender`], [`Bin`]...).
//! - [`engine`]: the Engine.IO layer (sessions, long-polling, WebSocket, upgrades, heartbeats),
//!   usable on its own as a bare Engine.IO server.
//! - [`parser`]: the Socket.IO packet codec.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use sio_core::{Data, Namespace, SocketIo, SocketRef};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let io = SocketIo::builder()
//!         .namespace(Namespace::new("/").on(
//!             "chat",
//!             |socket: SocketRef, Data(text): Data<String>| async move {
//!                 let _ = socket.broadcast().emit("chat", &text);
//!             },
//!         ))
//!         .build();
//!     HttpServer::new(move || App::new().service(io.service()))
//!         .bind(("127.0.0.1", 3000))?
//!         .run()
//!         .await
//! }
//! ```
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod ack;
mod adapter;
mod args;
mod client;
mod describe;
mod emit;
pub mod engine;
mod extensions;
pub mod extract;
mod handler;
mod io;
mod namespace;
mod operators;
pub mod parser;
mod recovery;
mod socket;

pub use ack::{AckError, AckResponse, AckSender};
pub use adapter::{
    AckStream, AdapterError, Backend, BackendFuture, BroadcastOptions, ClusterRequest,
    ClusterResponse, HandlerFuture, MemoryCluster, MemoryNode, RemoteSocket, RequestHandler, Room,
};
pub use args::Args;
pub use emit::EmitError;
pub use extensions::Extensions;
pub use extract::{Auth, Bin, Data, Event, State, TryData};
pub use handler::{ConnectError, Handler, HandlerResult, MiddlewareResult};
pub use io::{SocketIo, SocketIoBuilder, SocketIoConfig};
pub use namespace::Namespace;
pub use operators::{BroadcastOperators, RoomParam};
pub use recovery::RecoveryConfig;
pub use socket::{DisconnectReason, Handshake, Socket, SocketEmit, SocketRef};

#[doc(hidden)]
pub mod __private {
    pub use crate::args::to_args;
}
