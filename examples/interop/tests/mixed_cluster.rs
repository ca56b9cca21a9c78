//! Two-node clusters on a real `redis-server`, in every mix of sio (`interop-server`) and Node
//! (`js/node-server.mjs`: socket.io 4.8 + @socket.io/redis-adapter 8.3), driven by
//! `js/checker.mjs` through the official `socket.io-client` and `@socket.io/redis-emitter`. The
//! all-Node cluster is the reference: the checker's expectations are what Node does.
//!
//! Needs `redis-server`, `node` and `npm ci` in `js/` (`scripts/test` sees to all three).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Kind, Redis, run_checker, start_node};

fn check(a: Kind, b: Kind) {
    let redis = Redis::start();
    let node_a = start_node(a, "A", &redis.url());
    let node_b = start_node(b, "B", &redis.url());
    let (ok, output) = run_checker(node_a.port, node_b.port, &redis.url());
    println!("{a:?} + {b:?}:\n{output}");
    assert!(ok, "{a:?} + {b:?} failed:\n{output}");
}

#[test]
fn node_and_node_reference() {
    check(Kind::Node, Kind::Node);
}

#[test]
fn sio_and_sio() {
    check(Kind::Sio, Kind::Sio);
}

#[test]
fn sio_and_node() {
    check(Kind::Sio, Kind::Node);
}

#[test]
fn node_and_sio() {
    check(Kind::Node, Kind::Sio);
}
