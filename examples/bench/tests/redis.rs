//! bench-server with `REDIS_URL`: two nodes on one Redis, what one node's client sends with
//! `broadcast` and `room` reaches a client of the other node (the contract's Redis mode, which
//! the bench's two-node rows rely on).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{BenchServer, Polling, Redis};

#[test]
fn broadcasts_and_rooms_reach_the_other_node() {
    let redis = Redis::start();
    let url = redis.url();
    let first = BenchServer::start(&[("REDIS_URL", &url)]);
    let second = BenchServer::start(&[("REDIS_URL", &url)]);
    let sender = Polling::connect(first.port);
    let receiver = Polling::connect(second.port);

    sender.post(r#"42["broadcast",{"t":1,"p":"x"}]"#);
    assert_eq!(receiver.get(), r#"42["bcast",{"t":1,"p":"x"}]"#);

    receiver.post(r#"421["join","r3"]"#);
    assert_eq!(receiver.get(), r#"431["r3"]"#);
    sender.post(r#"42["room",{"room":"r3","data":{"t":2,"p":"y"}}]"#);
    assert_eq!(receiver.get(), r#"42["bcast",{"t":2,"p":"y"}]"#);
}
