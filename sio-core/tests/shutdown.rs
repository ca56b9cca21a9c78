//! Graceful shutdown: new connections are refused at once, a handler that is running finishes
//! and its ack reaches the client, then the client is told the server is going away.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::web::ServiceConfig;
use awc::ws::Message;
use futures_util::SinkExt as _;
use sio_core::{SocketIo, namespace};

use common::{next_text, ws_open};

#[namespace("/")]
mod root {
    use std::time::Duration;

    use sio_core::on;

    #[on("slow")]
    async fn slow() -> Result<&'static str, String> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok("done")
    }
}

#[actix_web::test]
async fn shutdown_lets_running_handlers_answer_then_closes() {
    let slot: Arc<OnceLock<SocketIo>> = Arc::default();
    let io_slot = slot.clone();
    let addr = common::start(move || {
        let io = SocketIo::builder().namespace(root::namespace()).build();
        let _ = io_slot.set(io.clone());
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    })
    .to_string();
    let mut ws = ws_open(&addr).await;
    ws.send(Message::Text("40".into())).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{"));
    ws.send(Message::Text(r#"421["slow"]"#.into()))
        .await
        .unwrap();
    // Let the handler start, then shut down while it runs.
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    let io = slot.get().unwrap().clone();
    let started = Instant::now();
    let shutdown = actix_web::rt::spawn(async move { io.shutdown(Duration::from_secs(5)).await });
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    // No new session while shutting down.
    let handshake = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let res = awc::Client::default().get(handshake).send().await.unwrap();
    assert_eq!(
        res.status(),
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    );
    // The running handler's answer arrives, then the close packet.
    assert_eq!(next_text(&mut ws).await, r#"431["done"]"#);
    assert_eq!(next_text(&mut ws).await, "1");
    shutdown.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}
