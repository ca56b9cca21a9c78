//! Two-node clusters on a real `redis-server`, in every mix of sio (`interop-server`) and Node
//! (`js/node-server.mjs`: socket.io 4.8 + @socket.io/redis-adapter 8.3 or
//! @socket.io/redis-streams-adapter 0.3), over the classic protocol, over sharded pub/sub and
//! over Redis streams, driven by
//! `js/checker.mjs` through the official `socket.io-client` and `@socket.io/redis-emitter`. The
//! all-Node cluster is the reference: the checker's expectations are what Node does.
//!
//! Needs `redis-server`, `node` and `npm ci` in `js/` (`scripts/test` sees to all three).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Kind, Redis, run_checker, start_node_with};

fn check(a: Kind, b: Kind, adapter: &str) {
    let redis = Redis::start();
    let node_a = start_node_with(a, "A", &redis.url(), adapter);
    let node_b = start_node_with(b, "B", &redis.url(), adapter);
    let (ok, output) = run_checker(node_a.port, node_b.port, &redis.url(), adapter, None);
    println!("{adapter}: {a:?} + {b:?}:\n{output}");
    assert!(ok, "{adapter}: {a:?} + {b:?} failed:\n{output}");
}

#[test]
fn classic_node_and_node_reference() {
    check(Kind::Node, Kind::Node, "classic");
}

#[test]
fn classic_sio_and_sio() {
    check(Kind::Sio, Kind::Sio, "classic");
}

#[test]
fn classic_sio_and_node() {
    check(Kind::Sio, Kind::Node, "classic");
}

#[test]
fn classic_node_and_sio() {
    check(Kind::Node, Kind::Sio, "classic");
}

#[test]
fn sharded_node_and_node_reference() {
    check(Kind::Node, Kind::Node, "sharded");
}

#[test]
fn sharded_sio_and_sio() {
    check(Kind::Sio, Kind::Sio, "sharded");
}

#[test]
fn sharded_sio_and_node() {
    check(Kind::Sio, Kind::Node, "sharded");
}

#[test]
fn sharded_node_and_sio() {
    check(Kind::Node, Kind::Sio, "sharded");
}

#[test]
fn streams_node_and_node_reference() {
    check(Kind::Node, Kind::Node, "streams");
}

#[test]
fn streams_sio_and_sio() {
    check(Kind::Sio, Kind::Sio, "streams");
}

#[test]
fn streams_sio_and_node() {
    check(Kind::Sio, Kind::Node, "streams");
}

#[test]
fn streams_node_and_sio() {
    check(Kind::Node, Kind::Sio, "streams");
}
