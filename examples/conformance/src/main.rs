//! The server the official Engine.IO v4 / Socket.IO v5 protocol test suites run against
//! (`protocol/conformance-server.md`), with the suites' timings (ping every 300 ms, 200 ms to
//! answer):
//! - `/engine.io/`: a bare Engine.IO server that echoes every message;
//! - `/socket.io/`: a Socket.IO server with the namespaces `/` and `/custom`.
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1; `ALLOW_EIO3=1` also accepts Engine.IO v3.

use std::sync::Arc;
use std::time::Duration;

use actix_web::App;
use serde_json::Value;
use sio_core::engine::{Cors, Engine, EngineConfig, EngineConfigBuilder, Handler, Message, Socket};
use sio_core::server::Server;
use sio_core::{AckSender, Args, Bin, Data, Namespace, SocketIo, SocketRef};

/// Sends every message back to the client that sent it, text as text, binary as binary.
struct Echo;

impl Handler for Echo {
    type Data = ();

    fn on_message(&self, socket: &Arc<Socket<()>>, message: Message) {
        let _ = socket.send(message.into_frame());
    }
}

/// The suites' Engine.IO settings, shared by both endpoints. `ALLOW_EIO3=1` accepts Engine.IO
/// v3 clients too (for the v3 suite; the v4 suites need it off, since a request without `EIO`
/// then counts as v3).
fn suite_timings(config: EngineConfigBuilder) -> EngineConfigBuilder {
    config
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .cors(Cors::any())
        .allow_eio3(std::env::var("ALLOW_EIO3").is_ok_and(|v| v == "1"))
}

/// Every namespace emits `auth` with the CONNECT payload when a client connects.
fn announce_auth(path: &str) -> Namespace {
    Namespace::new(path).on_connect(|socket: SocketRef, Data(auth): Data<Value>| async move {
        let _ = socket.emit("auth", &auth);
    })
}

fn socket_io() -> SocketIo {
    let main = announce_auth("/")
        .on(
            "message",
            |socket: SocketRef, args: Args, Bin(bin): Bin| async move {
                let _ = socket.bin(bin).emit("message-back", &args);
            },
        )
        .on(
            "message-with-ack",
            |args: Args, Bin(bin): Bin, ack: AckSender| async move {
                let _ = ack.bin(bin).send(&args);
            },
        );
    SocketIo::builder()
        .engine(suite_timings)
        .connect_timeout(Duration::from_millis(1000))
        .namespace(main)
        .namespace(announce_auth("/custom"))
        .build()
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
    let engine = Engine::new(suite_timings(EngineConfig::builder()).build(), Echo);
    let io = socket_io();
    println!("conformance server on http://127.0.0.1:{port} (/engine.io/ and /socket.io/)");
    Server::new(move || App::new().service(engine.service()).service(io.service()))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
