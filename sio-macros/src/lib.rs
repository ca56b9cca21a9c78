//! Attribute macros for sio (`#[on("event")]` and friends).
//!
//! The handler DSL lands with the `[macros]` work; until then this crate only reserves its place in
//! the workspace so that `sio-core` can re-export it behind its `macros` feature without a layout
//! change later.
