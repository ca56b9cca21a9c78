//! Sticky-free forwarding over Redis (classic and sharded pub/sub on a standalone server): a
//! session opened on node A is served by polling requests sent to node B, then upgraded by a
//! WebSocket that reaches B (its messages tunnelled to A).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use awc::ws::{Frame, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::SocketIo;
use sio_redis::{RedisAdapter, RedisConfig};
use support::Redis;

/// A sio node on a free port whose adapter is built inside its own runtime.
fn node(config: RedisConfig) -> (SocketAddr, SocketIo) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let adapter = RedisAdapter::new(config).unwrap();
            let io = SocketIo::builder().adapter(adapter.clone()).build();
            tokio::time::timeout(Duration::from_secs(10), adapter.ready())
                .await
                .unwrap();
            let service = io.clone();
            let server = HttpServer::new(move || App::new().service(service.service()))
                .workers(1)
                .bind(("127.0.0.1", 0))
                .unwrap();
            tx.send((server.addrs()[0], io)).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap()
}

/// One HTTP/1.0 request; the status and body.
fn http(addr: SocketAddr, method: &str, sid: Option<&str>, body: &str) -> (u16, String) {
    let mut path = "/socket.io/?EIO=4&transport=polling".to_owned();
    if let Some(sid) = sid {
        path = format!("{path}&sid={sid}");
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn check(redis: &Redis, sharded: bool) {
    let config = || {
        let config = RedisConfig::new(redis.url()).key(if sharded { "fs" } else { "fc" });
        if sharded { config.sharded() } else { config }
    };
    let (a, io_a) = node(config());
    let (b, io_b) = node(config());
    let (status, open) = http(a, "GET", None, "");
    assert_eq!(status, 200, "{open}");
    let json: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = json["sid"].as_str().unwrap().to_owned();
    assert_eq!(http(b, "POST", Some(&sid), "40"), (200, "ok".to_owned()));
    let (status, connect) = http(b, "GET", Some(&sid), "");
    assert_eq!(status, 200);
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    assert_eq!(io_a.metrics().sockets, vec![("/".to_owned(), 1)]);
    let forwarded = io_b.metrics().forwarding.unwrap();
    // The POST, the probe that first confirmed the session (a POST's body crosses the cluster
    // only for a session its owner confirmed), and the GET.
    assert_eq!((forwarded.forwarded, forwarded.failures), (3, 0));
    // A node nobody runs: no subscriber on its channel, so "Session ID unknown" at once.
    let ghost = sio_core::engine::Sid::new(0x0bad_f00d).to_string();
    let (status, body) = http(b, "GET", Some(&ghost), "");
    assert_eq!(status, 400, "{body}");
    // What an edge asks while it waits for an owner's answer: A listens, the ghost does not.
    let owner = sid.parse::<sio_core::engine::Sid>().unwrap().node_id();
    assert!(listens(config(), owner));
    assert!(!listens(config(), 0x0bad_f00d));
    actix_web::rt::System::new().block_on(upgrade_through(b, &sid, &io_a, &io_b));
}

/// Whether an adapter on `config` finds a node listening for `node_id`.
fn listens(config: RedisConfig, node_id: u32) -> bool {
    use sio_core::Backend as _;
    actix_web::rt::System::new().block_on(async move {
        let adapter = RedisAdapter::new(config).unwrap();
        tokio::time::timeout(Duration::from_secs(10), adapter.node_listens(node_id))
            .await
            .unwrap()
            .unwrap()
    })
}

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

/// The next text frame, 10 s at most; `None` once the WebSocket closed.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        match frame {
            Some(Ok(Frame::Text(text))) => return Some(String::from_utf8(text.to_vec()).unwrap()),
            Some(Ok(Frame::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Upgrades A's session `sid` with a WebSocket to B: the probe, the upgrade, a ping and a
/// broadcast of A's cross the tunnel over Redis; then the client closes and both ends go.
async fn upgrade_through(b: SocketAddr, sid: &str, io_a: &SocketIo, io_b: &SocketIo) {
    let url = format!("ws://{b}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (_, mut ws) = awc::Client::new().ws(url).connect().await.unwrap();
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("3probe"));
    send(&mut ws, "5").await;
    // Queued before or after the upgrade completes, A's broadcast reaches the WebSocket. (A
    // client ping no longer serves as a barrier: A closes a v4 session that sends one.)
    io_a.emit("news", "from A").unwrap();
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some(r#"42["news","from A"]"#)
    );
    let tunnels = |io: &SocketIo| io.metrics().forwarding.unwrap().tunnels;
    assert_eq!((tunnels(io_a), tunnels(io_b)), (1, 1));
    ws.send(Message::Close(None)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, None);
    for _ in 0..200 {
        if tunnels(io_a) + tunnels(io_b) == 0 && io_a.metrics().traffic.sessions == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the tunnel or the session outlived the client's close");
}

#[test]
fn forwarding_over_classic_pub_sub() {
    check(&Redis::start(), false);
}

#[test]
fn forwarding_over_sharded_pub_sub() {
    check(&Redis::start(), true);
}
