//! `GET /metrics`: Prometheus text that follows what happens (a session, a socket in `/`,
//! packets both ways) and the Redis adapter's counters on a cluster node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{ChatNode, Redis, http, value};

#[test]
fn metrics_follow_sessions_sockets_and_packets() {
    let redis = Redis::start();
    let node = ChatNode::start("m", &redis.url());
    let before = http(node.port, "GET", "/metrics", "");
    assert_eq!(value(&before, "sio_sessions"), 0.0);
    assert!(before.contains("sio_redis_published_total"), "{before}");
    assert!(before.contains("sio_redis_reconnects_total"), "{before}");

    // A polling client joins `/` with a nickname.
    let open = http(node.port, "GET", "/socket.io/?EIO=4&transport=polling", "");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        http(node.port, "POST", &session, r#"40{"name":"ada"}"#),
        "ok"
    );
    assert!(http(node.port, "GET", &session, "").starts_with("40{"));

    let after = http(node.port, "GET", "/metrics", "");
    assert_eq!(value(&after, "sio_sessions"), 1.0);
    assert_eq!(value(&after, "sio_sockets{namespace=\"/\"}"), 1.0);
    assert!(value(&after, "sio_packets_received_total") >= 1.0);
    assert!(value(&after, "sio_packets_sent_total") >= 1.0);
    assert!(value(&after, "sio_bytes_sent_total") > 0.0);
}
