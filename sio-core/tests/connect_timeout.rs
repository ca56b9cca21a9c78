//! `connect_timeout` (Node's `connectTimeout`): a connection that joins no namespace in time is
//! closed; one that joined is left alone once the timeout has passed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use actix_web::web::ServiceConfig;
use awc::ws::{Frame, Message as WsMessage};
use common::{Ws, next_text, ws_open};
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::{AckSender, Args, Namespace, SocketIo};

const TIMEOUT: Duration = Duration::from_millis(300);

fn server() -> String {
    let addr = common::start(|| {
        let io = SocketIo::builder()
            .connect_timeout(TIMEOUT)
            .namespace(
                Namespace::new("/").on("echo", |args: Args, ack: AckSender| async move {
                    let _ = ack.send(&args);
                }),
            )
            .build();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    format!("{addr}")
}

/// Whether the server closes `ws` within `within` (pings are answered on the way).
async fn closed_within(ws: &mut Ws, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Frame::Close(_)))) => return true,
            Ok(Some(Ok(Frame::Text(text)))) if text == "2" => {
                ws.send(WsMessage::Text("3".into())).await.unwrap();
            }
            Ok(Some(Ok(Frame::Ping(p)))) => ws.send(WsMessage::Pong(p)).await.unwrap(),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[actix_web::test]
async fn closes_a_connection_that_joins_no_namespace() {
    let addr = server();
    let mut ws = ws_open(&addr).await;
    assert!(closed_within(&mut ws, Duration::from_secs(5)).await);
}

#[actix_web::test]
async fn leaves_a_connected_socket_alone_past_the_timeout() {
    let addr = server();
    let mut ws = ws_open(&addr).await;
    ws.send(WsMessage::Text("40".into())).await.unwrap();
    let connect = next_text(&mut ws).await;
    assert!(connect.starts_with("40{\"sid\""), "{connect}");
    assert!(!closed_within(&mut ws, TIMEOUT * 3).await);
    ws.send(WsMessage::Text("421[\"echo\",7]".into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "431[7]");
}
