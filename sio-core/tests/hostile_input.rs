//! Hostile input: malformed packets of every kind, over WebSocket and long-polling. After each
//! one the server must not panic, and another client must still get its acks.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, WS_HANDSHAKE, Ws, next_text, ws_frame, ws_open};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::ServiceConfig;
use awc::ws::{Frame, Message as WsMessage};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::{AckSender, Args, Bin, Namespace, SocketIo};

/// Panics anywhere in the process (server tasks included), counted by a hook.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn server() -> String {
    server_on(Http::ActixWeb)
}

fn server_on(http: Http) -> String {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let addr = common::start_on(http, || {
        let io = SocketIo::builder()
            .engine(|e| e.max_payload(10_000))
            .namespace(Namespace::new("/").on(
                "echo",
                |args: Args, Bin(bin): Bin, ack: AckSender| async move {
                    let _ = ack.bin(bin).send(&args);
                },
            ))
            .build();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    format!("{addr}")
}

/// A WebSocket client connected to `/`, past the handshake.
async fn ws_client(addr: &str) -> Ws {
    let mut ws = ws_open(addr).await;
    ws.send(WsMessage::Text("40".into())).await.unwrap();
    let connect = next_text(&mut ws).await;
    assert!(connect.starts_with("40{\"sid\""), "{connect}");
    ws
}

/// The bystander still gets an answer.
async fn still_serves(victim: &mut Ws, n: usize) {
    victim
        .send(WsMessage::Text(format!("42{n}[\"echo\",{n}]").into()))
        .await
        .unwrap();
    assert_eq!(next_text(victim).await, format!("43{n}[{n}]"));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");
}

/// Sends `frames` on a fresh connection and waits until the server closes it or lets it be.
async fn attack_ws(addr: &str, frames: Vec<WsMessage>) {
    let mut ws = ws_client(addr).await;
    for frame in frames {
        if ws.send(frame).await.is_err() {
            return;
        }
    }
    // Either the server closes the connection or it ignores the input; both are fine.
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(Ok(frame)) = ws.next().await {
            if matches!(frame, Frame::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[actix_web::test]
async fn malformed_websocket_packets_cost_only_their_connection() {
    malformed_websocket_packets(Http::ActixWeb).await;
}

#[actix_web::test]
async fn malformed_websocket_packets_cost_only_their_connection_on_sio_s_server() {
    malformed_websocket_packets(Http::Sio).await;
}

async fn malformed_websocket_packets(http: Http) {
    let addr = server_on(http);
    let mut victim = ws_client(&addr).await;
    let text = |s: &str| WsMessage::Text(s.to_owned().into());
    let deep = format!("42[\"echo\",{}{}]", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<Vec<WsMessage>> = vec![
        vec![text("")],
        vec![text("abc")],
        vec![text("4")],
        vec![text("4abc")],
        vec![text("42{}")],
        vec![text("42[]")],
        vec![text("42[\"connect\"]")],
        vec![text("42abc[\"echo\"]")],
        vec![text("4299999999999999999999999[\"echo\"]")],
        vec![text("43[1]")],
        vec![text("43")],
        vec![text("44{}")],
        vec![text("40[1]")],
        vec![text("41{}")],
        vec![text("47")],
        vec![text("4/nope,2[\"echo\"]")],
        vec![text(&deep)],
        vec![text("45-[\"echo\"]")],
        vec![text("45x-[\"echo\"]")],
        vec![text("45999-[\"echo\"]")],
        vec![text("450-[\"echo\"]")],
        vec![text("451-[\"echo\",{\"_placeholder\":true,\"num\":7}]")],
        vec![
            text("452-[\"echo\",{\"_placeholder\":true,\"num\":0}]"),
            text("42[\"echo\"]"),
        ],
        vec![WsMessage::Binary(Bytes::from_static(b"\x00\x01"))],
        vec![text("0{"), text("1x"), text("2ping"), text("5"), text("6x")],
        vec![text(&"4".repeat(20_000))],
        vec![WsMessage::Binary(vec![0u8; 20_000].into())],
        (0..500).map(|_| text("42[\"nothing\"]")).collect(),
    ];
    for (n, frames) in cases.into_iter().enumerate() {
        attack_ws(&addr, frames).await;
        still_serves(&mut victim, n).await;
    }
}

async fn post(url: &str, body: impl Into<Bytes>) -> StatusCode {
    awc::Client::default()
        .post(url)
        .send_body(body.into())
        .await
        .unwrap()
        .status()
}

async fn polling_session(addr: &str) -> String {
    let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let mut res = awc::Client::default().get(&base).send().await.unwrap();
    let body = res.body().await.unwrap();
    let open: serde_json::Value = serde_json::from_slice(&body[1..]).unwrap();
    format!("{base}&sid={}", open["sid"].as_str().unwrap())
}

#[actix_web::test]
async fn malformed_polling_requests_get_errors_not_crashes() {
    let addr = server();
    let mut victim = ws_client(&addr).await;
    let bodies: Vec<Bytes> = vec![
        Bytes::from_static(b""),
        Bytes::from_static(b"\x1e\x1e"),
        Bytes::from_static(b"b!!!"),
        Bytes::from_static(b"4\xff\xfe"),
        Bytes::from_static(b"40\x1e4abc"),
        Bytes::from_static(b"40\x1e452-[\"echo\"]\x1ebAQID"),
        Bytes::from_static(b"40\x1ebAQID"),
        Bytes::from(vec![b'4'; 20_000]),
        Bytes::from(
            ["40"]
                .iter()
                .chain(&["42[\"x\"]"; 1000])
                .copied()
                .collect::<Vec<_>>()
                .join("\x1e"),
        ),
    ];
    for (n, body) in bodies.into_iter().enumerate() {
        let url = polling_session(&addr).await;
        let status = post(&url, body).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "case {n}: {status}"
        );
        still_serves(&mut victim, 100 + n).await;
    }
    let odd_urls = [
        "/socket.io/?EIO=4&transport=polling&sid=%ff%fe",
        "/socket.io/?EIO=4&transport=polling&sid=",
        "/socket.io/?EIO=4&EIO=4&transport=polling",
        "/socket.io/?EIO=99999999999999999999&transport=polling",
        "/socket.io/?EIO=4&transport=websocket",
    ];
    for (n, path) in odd_urls.iter().enumerate() {
        let res = awc::Client::default()
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{path}: {}", res.status());
        still_serves(&mut victim, 200 + n).await;
    }
}

#[actix_web::test]
async fn the_same_poll_from_many_clients_at_once_is_refused_cleanly() {
    let addr = Arc::new(server());
    let mut victim = ws_client(&addr).await;
    let url = polling_session(&addr).await;
    let polls = (0..20).map(|_| {
        let url = url.clone();
        async move {
            awc::Client::default()
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    for status in futures_util::future::join_all(polls)
        .await
        .into_iter()
        .flatten()
    {
        assert!(
            status.is_success() || status == StatusCode::BAD_REQUEST,
            "{status}"
        );
    }
    still_serves(&mut victim, 300).await;
}

/// Sends raw bytes on a fresh TCP connection and reads what comes back (at most 2 s).
async fn raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut out)).await;
    out
}

#[actix_web::test]
async fn raw_tcp_abuse_costs_only_its_connection() {
    raw_tcp_abuse(Http::ActixWeb).await;
}

#[actix_web::test]
async fn raw_tcp_abuse_costs_only_its_connection_on_sio_s_server() {
    raw_tcp_abuse(Http::Sio).await;
}

async fn raw_tcp_abuse(http: Http) {
    use tokio::io::AsyncWriteExt as _;
    let addr = server_on(http);
    let mut victim = ws_client(&addr).await;

    // Huge headers: refused by the HTTP layer, never a crash.
    let huge = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let answer = raw(&addr, huge.as_bytes()).await;
    let head = String::from_utf8_lossy(answer.get(..12).unwrap_or(&answer)).into_owned();
    assert!(
        answer.is_empty() || head.contains(" 4"),
        "huge headers got {head:?}"
    );
    still_serves(&mut victim, 400).await;

    // Invalid UTF-8 in a text frame: the connection is failed (1007), nobody else notices.
    let mut bytes = WS_HANDSHAKE.as_bytes().to_vec();
    bytes.extend(ws_frame(0x1, &[0xff, 0xfe, 0xfd]));
    let answer = raw(&addr, &bytes).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 101"));
    still_serves(&mut victim, 401).await;

    // A frame that announces more than max_payload (10,000 here) and sends none of it: the
    // connection is failed at once (1009), not left buffering what the client sends.
    let mut bytes = WS_HANDSHAKE.as_bytes().to_vec();
    bytes.extend([0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    let answer = raw(&addr, &bytes).await;
    assert!(
        answer.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xf1]),
        "no 1009 close frame: {:?}",
        String::from_utf8_lossy(&answer)
    );
    still_serves(&mut victim, 401).await;

    // RFC 6455 violations: the connection is failed with a 1002 close frame at once.
    let mut fragmented_ping = ws_frame(0x9, b"x");
    fragmented_ping[0] &= 0x7f;
    let mut reserved_bit = ws_frame(0x1, b"42[\"echo\"]");
    reserved_bit[0] |= 0x40;
    for frame in [
        vec![0x81, 0x02, b'4', b'2'], // unmasked
        ws_frame(0x3, b"x"),          // reserved opcode
        ws_frame(0x9, &[b'x'; 126]),  // control frame over 125 bytes
        fragmented_ping,              // control frame without FIN
        ws_frame(0x8, b"\x03"),       // close with a 1-byte payload
        ws_frame(0x0, b"x"),          // continuation of nothing
        reserved_bit,                 // RSV1 without an extension
    ] {
        let mut bytes = WS_HANDSHAKE.as_bytes().to_vec();
        bytes.extend(&frame);
        let answer = raw(&addr, &bytes).await;
        assert!(
            answer.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xea]),
            "no 1002 close frame for {frame:?}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        still_serves(&mut victim, 402).await;
    }

    // Half-open connections: a request cut in the middle, a WebSocket that never reads. They
    // hold a socket each, and nothing else.
    let mut half = Vec::new();
    for _ in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"GET /socket.io/?EIO=4&transport=poll")
            .await
            .unwrap();
        half.push(tcp);
    }
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    silent.write_all(WS_HANDSHAKE.as_bytes()).await.unwrap();
    silent.write_all(&ws_frame(0x1, b"40")).await.unwrap();
    for n in 0..50 {
        silent
            .write_all(&ws_frame(
                0x1,
                format!("42[\"echo\",\"{}\"]", "x".repeat(100)).as_bytes(),
            ))
            .await
            .unwrap();
        if n % 10 == 0 {
            still_serves(&mut victim, 403 + n).await;
        }
    }
    still_serves(&mut victim, 460).await;
    drop((half, silent));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");
}
