//! Polling POST bodies: a burst of small packets within `max_payload` is taken whole, a body
//! that trickles in is cut at `body_timeout`, and a forged sid's body is never read.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sio_core::engine::Sid;
use sio_core::{Args, MemoryCluster, Namespace, SocketIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn serve(io: SocketIo) -> SocketAddr {
    common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(io.service());
        }
    })
}

fn url(addr: SocketAddr, sid: Option<&str>) -> String {
    let mut url = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    url
}

async fn post(addr: SocketAddr, sid: &str, body: String) -> (u16, String) {
    let mut res = awc::Client::default()
        .post(url(addr, Some(sid)))
        .content_type("text/plain;charset=UTF-8")
        .timeout(Duration::from_secs(10))
        .send_body(body)
        .await
        .expect("an answer");
    let body = res.body().await.expect("body");
    (res.status().as_u16(), String::from_utf8_lossy(&body).into())
}

/// A new polling session's sid.
async fn handshake(addr: SocketAddr) -> String {
    let mut res = awc::Client::default()
        .get(url(addr, None))
        .send()
        .await
        .expect("handshake");
    let open = res.body().await.expect("open packet");
    let json: serde_json::Value = serde_json::from_slice(&open[1..]).expect("open json");
    json["sid"].as_str().expect("sid").to_owned()
}

/// Sends the head of a POST announcing `announced` body bytes and only `sent` of them, then
/// waits (at most 5 s) for the status line of the answer.
async fn post_head_only(addr: SocketAddr, sid: &str, announced: usize, sent: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain\r\nContent-Length: {announced}\r\n\r\n{sent}"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("an answer before the body is complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// engine.io-client sends everything it has buffered in one POST of up to `maxPayload` bytes:
/// a burst of thousands of small events must be taken, not refused for its packet count.
#[actix_web::test]
async fn a_burst_of_small_packets_within_max_payload_is_taken_whole() {
    let events = Arc::new(AtomicUsize::new(0));
    let counted = events.clone();
    let ns = Namespace::new("/").on("e", move |_: Args| {
        counted.fetch_add(1, Ordering::Relaxed);
        async {}
    });
    let addr = serve(SocketIo::builder().namespace(ns).build());
    let sid = handshake(addr).await;
    assert_eq!(post(addr, &sid, "40".into()).await.0, 200);
    let burst = vec![r#"42["e"]"#; 20_000].join("\x1e");
    assert!(burst.len() < 1_000_000);
    assert_eq!(post(addr, &sid, burst).await, (200, "ok".to_owned()));
    for _ in 0..200 {
        if events.load(Ordering::Relaxed) == 20_000 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} of 20000 events handled", events.load(Ordering::Relaxed));
}

#[actix_web::test]
async fn a_trickling_body_is_cut_at_the_body_timeout() {
    let io = SocketIo::builder()
        .engine(|e| e.body_timeout(Duration::from_millis(300)))
        .build();
    let addr = serve(io.clone());
    let sid = handshake(addr).await;
    let status = post_head_only(addr, &sid, 100, "40").await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // A bad body closes the session, as any other.
    for _ in 0..100 {
        if io.metrics().traffic.sessions == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session is still open");
}

/// A POST for a forged sid is answered before its body is read: neither an unknown node's
/// nor a real node's made-up session gets to hold the connection while it trickles in.
#[actix_web::test]
async fn a_forged_sid_is_refused_before_its_body_is_read() {
    let cluster = MemoryCluster::default();
    let a = serve(SocketIo::builder().adapter(cluster.node()).build());
    let b = serve(SocketIo::builder().adapter(cluster.node()).build());
    let real = handshake(a).await;
    let owner = real.parse::<Sid>().unwrap().node_id();
    for forged in [Sid::new(owner), Sid::new(owner ^ 1)] {
        let status = post_head_only(b, &forged.to_string(), 999_999, "4").await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    }
}
