//! A node stopped with SIGTERM leaves the cluster cleanly: it exits within its grace period and
//! stops being counted by the others at once (its subscriber unsubscribes), so their requests
//! do not wait for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{Kind, Redis, request_subscribers, start_node};

#[test]
fn sigterm_leaves_the_cluster() {
    let redis = Redis::start();
    let _a = start_node(Kind::Sio, "A", &redis.url());
    let mut b = start_node(Kind::Sio, "B", &redis.url());
    assert_eq!(request_subscribers(redis.port), "2");
    let started = Instant::now();
    assert!(
        b.terminate(Duration::from_secs(10)),
        "node B did not exit on SIGTERM"
    );
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(request_subscribers(redis.port), "1");
}
