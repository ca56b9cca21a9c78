//! `chat`: a chat app on sio, its Socket.IO handlers written with the macro DSL (see
//! [`chat::handlers`](crate::chat::handlers)), and its page served by the same actix-web app.
//!
//! - `/`: the page (HTML, CSS and JS, no build step), `/socket.io.min.js`: the official client;
//! - `/socket.io/`: the Socket.IO endpoint, with connection state recovery on, so a page that
//!   loses its connection for up to two minutes gets its socket id and rooms back;
//! - `/health`: `{"ok":true,"node":NODE_NAME}`, for load balancer and orchestrator probes;
//! - `/metrics`: Prometheus metrics (sessions, sockets per namespace, packets and bytes,
//!   handler errors, and the Redis adapter's publishes, receives, drops, reconnects, requests).
//!
//! Environment: `PORT` (3000), `HOST` (127.0.0.1), `NODE_NAME` (`chat-<PORT>`, shown in the
//! page), `REDIS_URL` (unset: one node, in memory; set: a cluster node on the Redis adapter,
//! wire-compatible with Node's `@socket.io/redis-adapter`; `rediss://` for TLS), `REDIS_CA` (a
//! PEM file: the CA of a `rediss://` server, trusted besides the system's roots),
//! `REDIS_USERNAME` and `REDIS_PASSWORD` (the Redis user and password, instead of the URL's:
//! from a Secret, nothing to percent-encode), `ADAPTER` (with `REDIS_URL`:
//! `classic`, the default; `sharded`, Node's `createShardedAdapter`; `streams`, Node's
//! `@socket.io/redis-streams-adapter`, where missed broadcasts are replayed from the Redis stream
//! by any node, even one started after them), `FORWARDING` (`off` turns
//! sticky-free forwarding of polling requests and upgrades between nodes off), `RUST_LOG` (`info`).
//!
//! On SIGTERM or Ctrl-C every client is told to reconnect (to another node, behind a load
//! balancer), in-flight requests finish (at most 5 s), and the process exits.

mod assets;
mod chat;
mod metrics;
mod rate_limit;
mod room_list;

use std::io::IsTerminal as _;
use std::time::Duration;

use actix_web::{App, HttpResponse, web};
use serde_json::json;
use sio_core::server::Server;
use sio_core::{RecoveryConfig, SocketIo};
use sio_redis::{RedisAdapter, RedisConfig, TlsConfig};

use crate::chat::NodeName;
use crate::room_list::RoomList;

/// How long a disconnected page keeps its session (id and rooms) on the node it was on.
const RECOVERY_WINDOW: Duration = Duration::from_secs(120);

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        // Colours for a person at a terminal, plain text for log collectors and tests.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let port: u16 = match env("PORT") {
        Some(port) => port
            .parse()
            .map_err(|err| std::io::Error::other(format!("PORT={port}: {err}")))?,
        None => 3000,
    };
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let node = env("NODE_NAME").unwrap_or_else(|| format!("chat-{port}"));

    let mut builder = SocketIo::builder()
        .connection_state_recovery(
            RecoveryConfig::default().max_disconnection_duration(RECOVERY_WINDOW),
        )
        .with_state(NodeName(node.clone()))
        .with_state(RoomList::default())
        .namespace(chat::handlers::namespace());
    // The adapter spawns its connections on the runtime, so it is made here, inside it.
    let redis = match env("REDIS_URL") {
        Some(url) => {
            let mut config = RedisConfig::new(&url);
            if let Some(ca) = env("REDIS_CA").filter(|_| url.starts_with("rediss")) {
                config = config.tls(TlsConfig::new().ca_file(ca));
            }
            if let Some(user) = env("REDIS_USERNAME") {
                config = config.username(user);
            }
            if let Some(password) = env("REDIS_PASSWORD") {
                config = config.password(password);
            }
            let config = match env("ADAPTER").as_deref() {
                None | Some("classic") => config,
                Some("sharded") => config.sharded(),
                Some("streams") => config.streams(),
                Some(other) => {
                    let why = format!("ADAPTER={other}: use classic, sharded or streams");
                    return Err(std::io::Error::other(why));
                }
            };
            let adapter = RedisAdapter::new(config).map_err(std::io::Error::other)?;
            // Sticky-free forwarding is on with a cluster adapter; FORWARDING=off needs a load
            // balancer that pins each client to one node.
            let forwarding = env("FORWARDING").is_none_or(|v| v != "off");
            builder = builder.adapter(adapter.clone()).forwarding(forwarding);
            Some((adapter, url))
        }
        None => None,
    };
    let io = builder.build();
    let metrics = metrics::Metrics::new(io.clone(), redis.as_ref().map(|(a, _)| a.clone()))
        .map_err(std::io::Error::other)?;

    let app_io = io.clone();
    let app_node = node.clone();
    // sio's server: the same App as under actix-web's `HttpServer`, but each WebSocket is
    // driven by sio once upgraded, at half the memory per idle connection.
    let server = Server::new(move || {
        let node = app_node.clone();
        App::new()
            .route(
                "/health",
                web::get().to(move || {
                    let body = json!({ "ok": true, "node": node });
                    async move { HttpResponse::Ok().json(body) }
                }),
            )
            .app_data(web::Data::new(metrics.clone()))
            .route("/metrics", web::get().to(metrics::route))
            .configure(assets::routes)
            .service(app_io.service())
    })
    // On SIGTERM new connections are refused, running handlers get up to 5 s to send the
    // acks they owe, then every session gets a close packet, which clients treat as a lost
    // connection: they reconnect (to another node behind a load balancer).
    .shutdown_on_signal(&io, Duration::from_secs(5))
    .shutdown_timeout(5)
    .bind((host.as_str(), port))?
    .run();

    match &redis {
        Some((adapter, url)) => {
            // Until the subscriptions are in place this node would miss the others' messages;
            // the log line below is what scripts wait for.
            adapter.ready().await;
            // The URL may carry a password (from a Kubernetes Secret): log only where it points.
            let server = url.rsplit_once('@').map_or(url.as_str(), |(_, at)| at);
            tracing::info!(%node, redis = %server, "cluster node subscribed to Redis");
        }
        None => tracing::info!(%node, "single node, in memory (set REDIS_URL for a cluster)"),
    }
    tracing::info!(%node, "chat listening on http://{host}:{port}");

    server.await
}
