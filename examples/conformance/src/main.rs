//! The server the official Engine.IO v4 / Socket.IO v5 protocol test suites run against
//! (`protocol/conformance-server.md`): a bare Engine.IO echo server on `/engine.io/`, with the
//! suites' timings (ping every 300 ms, 200 ms to answer).
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use sio_core::engine::{Cors, Engine, EngineConfig, Handler, Message, Socket};

/// Sends every message back to the client that sent it, text as text, binary as binary.
struct Echo;

impl Handler for Echo {
    type Data = ();

    fn on_message(&self, socket: &Arc<Socket<()>>, message: Message) {
        let _ = socket.send(message.into_frame());
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let config = EngineConfig::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .cors(Cors::any())
        .build();
    let engine = Engine::new(config, Echo);
    println!("conformance server on http://127.0.0.1:{port} (/engine.io/)");
    HttpServer::new(move || App::new().service(engine.service()))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
