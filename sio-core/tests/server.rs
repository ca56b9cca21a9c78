//! `sio_core::server::Server`: the application's routes and other WebSocket endpoints work as
//! under actix-web's `HttpServer`, and the connections sio drives after an upgrade behave at
//! their edges (bytes behind the handshake, refused upgrades, the client going away). The
//! official clients, hostile input and slow readers run on it in their own test files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, WS_HANDSHAKE, ws_frame};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use awc::ws::{Frame, Message as WsMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::{DisconnectReason, Namespace, SocketIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A WebSocket endpoint of the application's own, written with actix-ws: echoes text.
async fn own_websocket(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (res, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(actix_ws::Message::Text(text))) = stream.next().await {
            if session.text(text).await.is_err() {
                break;
            }
        }
    });
    Ok(res)
}

/// A server with sio on `/socket.io/`, a plain route and a WebSocket endpoint of its own;
/// disconnect reasons are collected.
fn server() -> (String, Arc<Mutex<Vec<String>>>) {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = reasons.clone();
    let addr = common::start_on(Http::Sio, move || {
        let io = SocketIo::builder()
            .namespace(
                Namespace::new("/").on_disconnect(move |reason: DisconnectReason| {
                    let seen = seen.clone();
                    async move { seen.lock().unwrap().push(reason.to_string()) }
                }),
            )
            .build();
        move |cfg: &mut web::ServiceConfig| {
            cfg.service(io.service())
                .route("/hello", web::get().to(|| async { "hello" }))
                .route("/own", web::get().to(own_websocket));
        }
    });
    (format!("{addr}"), reasons)
}

/// Writes `bytes` on a new connection; what comes back until the server closes it (at most
/// 5 s), and whether it closed.
async fn exchange(addr: &str, bytes: &[u8]) -> (String, bool) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[actix_web::test]
async fn plain_routes_and_keep_alive_are_the_application_s() {
    let (addr, _) = server();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Two requests on one connection: the second is answered on the same one.
    for _ in 0..2 {
        tcp.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
    }
    // Long-polling is plain HTTP: its handshake answers as under HttpServer.
    let (status, body) = {
        let mut res = awc::Client::new()
            .get(format!("http://{addr}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .unwrap();
        (res.status(), res.body().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(body.starts_with(b"0{\"sid\""), "{body:?}");
}

#[actix_web::test]
async fn another_websocket_endpoint_of_the_application_works() {
    let (addr, _) = server();
    let (res, mut ws) = awc::Client::new()
        .ws(format!("ws://{addr}/own"))
        .connect()
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    ws.send(WsMessage::Text("hi".into())).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(frame, Frame::Text(t) if &t[..] == b"hi"));
}

#[actix_web::test]
async fn frames_right_behind_the_handshake_are_read() {
    let (addr, _) = server();
    // The handshake, CONNECT and a close frame in one write: the bytes behind the request's
    // head were read by actix-http before sio took the connection.
    let mut bytes = WS_HANDSHAKE.as_bytes().to_vec();
    bytes.extend(ws_frame(0x1, b"40"));
    bytes.extend(ws_frame(0x8, b""));
    let (answer, closed) = exchange(&addr, &bytes).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains("0{\"sid\""), "no open packet: {answer}");
    assert!(answer.contains("40{\"sid\""), "no CONNECT answer: {answer}");
    assert!(closed, "the connection stayed open after the close frame");
}

#[actix_web::test]
async fn a_refused_upgrade_gets_its_http_answer_then_the_connection_closes() {
    let (addr, _) = server();
    let request = WS_HANDSHAKE.replace("transport=websocket", "transport=websocket&sid=nope");
    let (answer, closed) = exchange(&addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#"{"code":1,"message":"Session ID unknown"}"#),
        "{answer}"
    );
    assert!(closed, "the connection stayed open");
    // Not a WebSocket handshake at all (no key): refused the same way.
    let request = WS_HANDSHAKE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let (answer, closed) = exchange(&addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(closed, "the connection stayed open");
}

#[actix_web::test]
async fn a_client_that_goes_away_ends_its_session() {
    let (addr, reasons) = server();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(WS_HANDSHAKE.as_bytes()).await.unwrap();
    tcp.write_all(&ws_frame(0x1, b"40")).await.unwrap();
    // Until the CONNECT answer: the socket is in the namespace.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("40{") {
        assert!(Instant::now() < deadline, "no CONNECT answer");
        let mut buf = [0; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while reasons.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the session outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*reasons.lock().unwrap(), ["transport close"]);
}
