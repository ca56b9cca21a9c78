//! The book's chapters, included as documentation so that `cargo test` compiles (and, unless
//! marked `no_run`, runs) every Rust block in them against the real crates.

#[doc = include_str!("../../src/getting-started.md")]
pub mod getting_started {}

#[doc = include_str!("../../src/events.md")]
pub mod events {}

#[doc = include_str!("../../src/rooms.md")]
pub mod rooms {}

#[doc = include_str!("../../src/macros.md")]
pub mod macros {}

#[doc = include_str!("../../src/scaling.md")]
pub mod scaling {}

#[doc = include_str!("../../src/redis.md")]
pub mod redis {}

#[doc = include_str!("../../src/no-sticky-sessions.md")]
pub mod no_sticky_sessions {}

#[doc = include_str!("../../src/deploying.md")]
pub mod deploying {}

#[doc = include_str!("../../src/from-node.md")]
pub mod from_node {}

#[doc = include_str!("../../src/from-flask.md")]
pub mod from_flask {}

#[doc = include_str!("../../src/observability.md")]
pub mod observability {}

#[doc = include_str!("../../src/security.md")]
pub mod security {}

/// The README's example compiles too.
#[doc = include_str!("../../../README.md")]
pub mod readme {}
