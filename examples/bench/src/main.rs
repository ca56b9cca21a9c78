//! The server that load generators and hostile-input harnesses drive: namespaces `/`,
//! `/custom` and `/guarded`, each with
//! - `echo` (with an ack): acknowledged with the arguments unchanged, binary included;
//! - `broadcast`: `bcast` with the same arguments to every socket of the namespace, sender
//!   included (acknowledged `"ok"` when an ack is asked);
//! - `join` (with an ack): joins the room named by the argument, acknowledged with its name;
//! - `room` (`{"room": r, "data": d}`): `bcast` with `d` to every socket in room `r`.
//!
//! `/guarded` lets in only a CONNECT whose auth is `{"token":"ok"}`, through an asynchronous
//! middleware (a token lookup); others get CONNECT_ERROR `{"message":"unauthorized"}`.
//! `GET /stats` answers `{"sessions": N, "sockets": {"/": n, "/custom": n, "/guarded": n}}`,
//! counted when asked.
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1. `REDIS_URL` (set and non-empty): a cluster
//! node on sio-redis's adapter, so that `broadcast` and `room` reach the sockets of every node on
//! that Redis (`rediss://` for TLS, with `REDIS_CA` a PEM file of the server's CA, trusted
//! besides the system's roots); unset: one node, in memory. Library defaults otherwise (ping
//! 25 s / 20 s, max payload 1 MB). Nothing is logged per message. On SIGTERM every client is
//! told to reconnect, in-flight requests finish (at most 5 s), and the process exits.

use actix_web::{App, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sio_core::server::Server;
use sio_core::{AckSender, Args, Auth, Bin, ConnectError, Data, Namespace, SocketIo, SocketRef};
use sio_redis::{RedisAdapter, RedisConfig, TlsConfig};

/// How long a cluster node waits for its Redis subscriptions before giving up on starting.
const REDIS_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long `/guarded`'s middleware waits, standing for a token lookup in a database: the
/// hardening harness needs a middleware that really suspends, not one that returns at once.
const TOKEN_LOOKUP: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    data: Value,
}

fn namespace(path: &str) -> Namespace {
    Namespace::new(path)
        .on(
            "echo",
            |args: Args, Bin(bin): Bin, ack: AckSender| async move {
                let _ = ack.bin(bin).send(&args);
            },
        )
        .on(
            "broadcast",
            |socket: SocketRef, args: Args, Bin(bin): Bin, ack: AckSender| async move {
                let _ = socket.namespace().bin(bin).emit("bcast", &args);
                let _ = ack.send("ok");
            },
        )
        .on(
            "join",
            |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
                socket.join(room.clone());
                let _ = ack.send(&room);
            },
        )
        .on(
            "room",
            |socket: SocketRef, Data(msg): Data<RoomMessage>| async move {
                let _ = socket.within(msg.room).emit("bcast", &msg.data);
            },
        )
}

/// `/guarded`'s middleware: lets in a CONNECT whose auth has `"token": "ok"`.
async fn authorize(Auth(auth): Auth<Value>) -> Result<(), ConnectError> {
    tokio::time::sleep(TOKEN_LOOKUP).await;
    if auth.get("token").and_then(Value::as_str) == Some("ok") {
        Ok(())
    } else {
        Err(ConnectError::new("unauthorized"))
    }
}

/// `GET /stats`: the Engine.IO sessions open on this process and the sockets of each
/// namespace, read now (the harness checks that nothing outlives the connection that made it).
async fn stats(io: web::Data<SocketIo>) -> HttpResponse {
    let metrics = io.metrics();
    let sockets: Map<String, Value> = metrics
        .sockets
        .into_iter()
        .map(|(namespace, count)| (namespace, count.into()))
        .collect();
    HttpResponse::Ok().json(json!({ "sessions": metrics.traffic.sessions, "sockets": sockets }))
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
    let mut builder = SocketIo::builder()
        .namespace(namespace("/"))
        .namespace(namespace("/custom"))
        .namespace(namespace("/guarded").middleware(authorize));
    let redis = match std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(url) => {
            // The adapter spawns its connections on the runtime, so it is made here, inside it.
            let mut config = RedisConfig::new(&url);
            if let Ok(ca) = std::env::var("REDIS_CA")
                && !ca.is_empty()
                && url.starts_with("rediss")
            {
                config = config.tls(TlsConfig::new().ca_file(ca));
            }
            let adapter = RedisAdapter::new(config).map_err(std::io::Error::other)?;
            builder = builder.adapter(adapter.clone());
            Some(adapter)
        }
        None => None,
    };
    let io = builder.build();
    if let Some(adapter) = redis {
        // A node that listened before its subscriptions are in place would miss the others'
        // broadcasts: load generators start as soon as the port answers.
        tokio::time::timeout(REDIS_READY_TIMEOUT, adapter.ready())
            .await
            .map_err(|_| std::io::Error::other("Redis subscriptions not confirmed within 10 s"))?;
    }
    let app_io = io.clone();
    // sio's server rather than actix-web's `HttpServer`: the same App, but sio drives each
    // WebSocket itself once it is upgraded, without actix-http's 16 KB of buffers per
    // connection (TCP_NODELAY is on by default).
    Server::new(move || {
        App::new()
            .app_data(web::Data::new(app_io.clone()))
            .route("/stats", web::get().to(stats))
            .service(app_io.service())
    })
    // On SIGTERM new connections are refused, running handlers get up to 5 s to send the
    // acks they owe, then every client is told to reconnect (to another node behind a
    // load balancer), and the process exits.
    .shutdown_on_signal(&io, std::time::Duration::from_secs(5))
    .shutdown_timeout(5)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
