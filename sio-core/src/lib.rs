//! # sio-core
//!
//! An Engine.IO v4 / Socket.IO v5 server on actix-web, wire-compatible with the official
//! JavaScript clients.
//!
//! - [`engine`]: the Engine.IO layer (sessions, long-polling, WebSocket, upgrades, heartbeats),
//!   usable on its own as a bare Engine.IO server.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod engine;
