//! A node stopped with SIGTERM leaves the cluster cleanly: it exits within its grace period and
//! stops being counted by the others at once (its subscriber unsubscribes), so their requests
//! do not wait for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Kind, Redis, start_node};

fn subscribers(redis: &Redis) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(["PUBSUB", "NUMSUB", "socket.io-request#/#"])
        .output()
        .expect("redis-cli is not installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn sigterm_leaves_the_cluster() {
    let redis = Redis::start();
    let _a = start_node(Kind::Sio, "A", &redis.url());
    let mut b = start_node(Kind::Sio, "B", &redis.url());
    assert_eq!(subscribers(&redis), "2");
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
    assert_eq!(subscribers(&redis), "1");
}
