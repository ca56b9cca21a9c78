//! A WebSocket client that stops reading: what the server sends it piles up in its session's
//! queue (the connection takes frames only as fast as the socket drains), and past
//! `max_buffer_size` the session closes with "buffer full". A client that reads gets every
//! message of the same flood.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, WS_HANDSHAKE, next_text, ws_frame, ws_open};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::ServiceConfig;
use awc::ws::Message as WsMessage;
use futures_util::SinkExt as _;
use sio_core::{DisconnectReason, Namespace, SocketIo, SocketRef};
use tokio::io::AsyncWriteExt as _;

/// Messages of the flood, and the size of each: 16 MiB in all, far past what the kernel's
/// socket buffers of a client that does not read can hold.
const MESSAGES: usize = 512;
const MESSAGE_BYTES: usize = 32 * 1024;

/// Why sockets disconnected, in order.
type Reasons = Arc<Mutex<Vec<String>>>;

fn server(http: Http, reasons: Reasons) -> String {
    let addr = common::start_on(http, move || {
        let io = SocketIo::builder()
            .engine(|e| e.max_buffer_size(1 << 20))
            .namespace(
                Namespace::new("/")
                    .on("flood", |socket: SocketRef| async move {
                        let chunk = "x".repeat(MESSAGE_BYTES);
                        for _ in 0..MESSAGES {
                            if socket.emit("chunk", &chunk).is_err() {
                                break;
                            }
                            // Paced, so that a client that reads keeps up.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    })
                    .on_disconnect(move |reason: DisconnectReason| {
                        let reasons = reasons.clone();
                        async move {
                            reasons.lock().unwrap().push(reason.to_string());
                        }
                    }),
            )
            .build();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    format!("{addr}")
}

async fn reasons_after(reasons: &Reasons, deadline: Duration, want: usize) -> Vec<String> {
    let end = Instant::now() + deadline;
    loop {
        let reasons = reasons.lock().unwrap().clone();
        if reasons.len() >= want || Instant::now() > end {
            return reasons;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_at_max_buffer_size_and_a_reader_is_not() {
    slow_reader(Http::ActixWeb).await;
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_at_max_buffer_size_on_sio_s_server() {
    slow_reader(Http::Sio).await;
}

async fn slow_reader(http: Http) {
    let reasons = Reasons::default();
    let addr = server(http, reasons.clone());

    // The reader asks for the flood and reads all of it.
    let mut reader = ws_open(&addr).await;
    reader.send(WsMessage::Text("40".into())).await.unwrap();
    assert!(next_text(&mut reader).await.starts_with("40{\"sid\""));
    reader
        .send(WsMessage::Text("42[\"flood\"]".into()))
        .await
        .unwrap();
    let mut received = 0;
    while received < MESSAGES {
        let text = next_text(&mut reader).await;
        if text.starts_with("42[\"chunk\"") {
            assert_eq!(text.len(), MESSAGE_BYTES + r#"42["chunk",""]"#.len());
            received += 1;
        }
    }
    assert!(reasons.lock().unwrap().is_empty(), "the reader was closed");

    // The silent client, with a small receive buffer, asks for the same flood and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut silent = socket.connect(addr.parse().unwrap()).await.unwrap();
    silent.write_all(WS_HANDSHAKE.as_bytes()).await.unwrap();
    silent.write_all(&ws_frame(0x1, b"40")).await.unwrap();
    silent
        .write_all(&ws_frame(0x1, b"42[\"flood\"]"))
        .await
        .unwrap();
    assert_eq!(
        reasons_after(&reasons, Duration::from_secs(30), 1).await,
        ["buffer full"],
        "the silent client was not cut off"
    );

    // The reader's session is untouched.
    reader
        .send(WsMessage::Text("42[\"flood\"]".into()))
        .await
        .unwrap();
    loop {
        if next_text(&mut reader).await.starts_with("42[\"chunk\"") {
            break;
        }
    }
    drop(silent);
}
