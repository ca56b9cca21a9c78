//! `GET /metrics`: Prometheus text that follows what happens (a session, a socket in `/`,
//! packets both ways) and the Redis adapter's counters on a cluster node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use support::{ChatNode, Redis};

/// One HTTP/1.1 request; the response body.
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\
         Content-Type: text/plain\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of a metric line (`name value` or `name{labels} value`).
fn value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in:\n{text}"))
}

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
