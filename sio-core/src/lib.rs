//! # sio-core
//!
//! An Engine.IO v4 / Socket.IO v5 server on actix-web, wire-compatible with the official
//! JavaScript clients.
//!
//! - [`SocketIo`]: the server; [`Namespace`]: handlers for events, connections and
//!   disconnections; [`SocketRef`]: a connected client; [`BroadcastOperators`]: emits to rooms.
//! - [`extract`]: what handlers take as arguments ([`Data`], [`AckSender`], [`Bin`]...).
//! - [`on`], [`on_connect`], [`namespace`](macro@namespace)... (feature `macros`, on by
//!   default): handlers written as annotated `async fn`s, registered with
//!   [`Namespace::service`].
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
mod adoption;
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
pub mod server;
mod socket;

pub use ack::{AckError, AckResponse, AckSender};
pub use adapter::{
    AckStream, AdapterError, Backend, BackendFuture, BroadcastOptions, ClusterForwarder,
    ClusterForwarderRef, ClusterRequest, ClusterResponse, ForwardLimits, ForwardStats,
    HandlerFuture, MemoryCluster, MemoryNode, NodeReceiver, RemoteSocket, RequestHandler, Room,
    Serve, ServeFuture,
};
pub use args::Args;
pub use emit::EmitError;
pub use extensions::Extensions;
pub use extract::{Auth, Bin, Data, Event, State, TryData};
pub use handler::{ConnectError, Handler, HandlerResult, MiddlewareResult};
pub use io::{Metrics, SocketIo, SocketIoBuilder, SocketIoConfig};
pub use namespace::{HandlerService, Namespace};
pub use operators::{BroadcastOperators, RoomParam};
pub use recovery::{
    BroadcastLog, LogPage, LoggedBroadcast, RecoverableSession, RecoveryConfig, SessionStore,
};
pub use socket::{DisconnectReason, Handshake, Socket, SocketEmit, SocketRef};

// The attribute macros, so that users depend on sio-core alone (as tokio re-exports
// tokio-macros); the `macros` feature is on by default.
#[cfg(feature = "macros")]
pub use sio_macros::{
    middleware, namespace, on, on_any, on_connect, on_disconnect, on_disconnecting, on_server_event,
};

/// What the expansions of sio-macros call; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::args::to_args;
    pub use crate::namespace::EventDispatch;
    pub use std::boxed::Box;
    pub use std::future::Future;
    pub use std::ops::Deref;
    pub use std::pin::Pin;

    use crate::extract::FromContext;
    use crate::handler::{HandlerResult, MiddlewareResult};

    // The three checks below are called by expansions with the span of one argument or of the
    // return type, so that a type error points at that type instead of at the attribute.

    /// Compiles only when `T` is an extractor.
    pub fn assert_extractor<T: FromContext>() {}

    /// Compiles only when `T` can be returned by an event, connect or disconnect handler.
    pub fn assert_handler_result<T: HandlerResult>() {}

    /// Compiles only when `T` can be returned by a middleware.
    pub fn assert_middleware_result<T: MiddlewareResult>() {}
}
