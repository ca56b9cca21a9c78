//! Redis adapter for sio, wire-compatible with Node's `@socket.io/redis-adapter`.
//!
//! The adapter lands with the `[redis]` work; this crate reserves its place in the workspace.
