//! Sticky-free forwarding between two nodes of a `MemoryCluster`: a session opened on one node
//! is served by polling requests that reach the other.

#![allow(clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use sio_core::engine::Sid;
use sio_core::{MemoryCluster, SocketIo};

fn node(io: SocketIo) -> SocketAddr {
    common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(io.service());
        }
    })
}

async fn request(
    client: &awc::Client,
    method: &str,
    addr: SocketAddr,
    sid: Option<&str>,
    body: &'static str,
) -> (u16, String) {
    let mut url = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url).content_type("text/plain;charset=UTF-8"),
    };
    let mut res = tokio::time::timeout(std::time::Duration::from_secs(10), req.send_body(body))
        .await
        .expect("answer in time")
        .expect("request");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn sid_of(open: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet");
    json["sid"].as_str().expect("sid").to_owned()
}

#[actix_web::test]
async fn polling_requests_for_a_session_of_another_node_are_served_by_its_owner() {
    let cluster = MemoryCluster::default();
    let io_a = SocketIo::builder().adapter(cluster.node()).build();
    let io_b = SocketIo::builder().adapter(cluster.node()).build();
    let (a, b) = (node(io_a.clone()), node(io_b.clone()));
    let client = awc::Client::default();

    let (status, open) = request(&client, "GET", a, None, "").await;
    assert_eq!(status, 200, "{open}");
    let sid = sid_of(&open);
    // CONNECT to "/" through B, then read the answer through B: both run on A's session.
    assert_eq!(
        request(&client, "POST", b, Some(&sid), "40").await,
        (200, "ok".to_owned())
    );
    let (status, connect) = request(&client, "GET", b, Some(&sid), "").await;
    assert_eq!(status, 200);
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    assert_eq!(io_a.metrics().sockets, vec![("/".to_owned(), 1)]);
    assert_eq!(io_b.metrics().sockets, vec![("/".to_owned(), 0)]);
    let (fa, fb) = (
        io_a.metrics().forwarding.expect("on"),
        io_b.metrics().forwarding.expect("on"),
    );
    assert_eq!((fb.forwarded, fa.served, fb.failures), (2, 2, 0));

    // A sid of a node nobody runs gets Engine.IO's "Session ID unknown".
    let ghost = Sid::new(unused_node_id()).to_string();
    let (status, body) = request(&client, "GET", b, Some(&ghost), "").await;
    assert_eq!(status, 400);
    assert!(body.contains("Session ID unknown"), "{body}");
}

/// A node id neither node of the test has (both are random; this one is fixed).
fn unused_node_id() -> u32 {
    0x0bad_f00d
}

#[actix_web::test]
async fn without_forwarding_a_foreign_sid_is_unknown() {
    let cluster = MemoryCluster::default();
    let io_a = SocketIo::builder().adapter(cluster.node()).build();
    let io_b = SocketIo::builder()
        .adapter(cluster.node())
        .forwarding(false)
        .build();
    let (a, b) = (node(io_a), node(io_b));
    let client = awc::Client::default();
    let (_, open) = request(&client, "GET", a, None, "").await;
    let (status, body) = request(&client, "POST", b, Some(&sid_of(&open)), "40").await;
    assert_eq!(status, 400);
    assert!(body.contains("Session ID unknown"), "{body}");
}
