//! The bench-server contract (`shared/protocol/bench-server.md`) on socketioxide + axum, the
//! same events as sio's `examples/bench`: namespaces `/` and `/custom`, each with
//! - `echo` (with an ack): acknowledged with the arguments unchanged;
//! - `broadcast`: `bcast` with the same payload to every socket of the namespace, sender included;
//! - `join` (with an ack): joins the room named by the argument, acknowledged with its name;
//! - `room` (`{"room": r, "data": d}`): `bcast` with `d` to every socket in room `r`.
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1; `TCP_NODELAY` on accepted sockets; library
//! defaults otherwise. `REDIS_URL` (set and non-empty): socketioxide-redis's adapter on that Redis
//! (RESP3, which it requires), so that `broadcast` and `room` reach every node; unset: in memory.
//! Nothing is logged per message. Exits on SIGTERM or Ctrl-C.

use axum::serve::ListenerExt;
use serde::Deserialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    data: Value,
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    socket.on("echo", async |Data::<Value>(data), ack: AckSender<A>| {
        let _ = ack.send(&data);
    });
    socket.on(
        "broadcast",
        async |socket: SocketRef<A>, io: SocketIo<A>, Data::<Value>(data)| {
            if let Some(ns) = io.of(socket.ns()) {
                let _ = ns.emit("bcast", &data).await;
            }
        },
    );
    socket.on(
        "join",
        async |socket: SocketRef<A>, Data::<String>(room), ack: AckSender<A>| {
            socket.join(room.clone());
            let _ = ack.send(&room);
        },
    );
    socket.on(
        "room",
        async |socket: SocketRef<A>, Data::<RoomMessage>(msg)| {
            let _ = socket.within(msg.room).emit("bcast", &msg.data).await;
        },
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = match std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        None => {
            let (layer, io) = SocketIo::new_layer();
            io.ns("/", on_connect);
            io.ns("/custom", on_connect);
            axum::Router::new().layer(layer)
        }
        Some(url) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            let client = redis::Client::open(format!("{url}{separator}protocol=resp3"))?;
            let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
            let (layer, io) = SocketIo::builder()
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            // A remote adapter subscribes when the namespace is made: awaited, so that the node
            // hears the others before it listens.
            io.ns("/", on_connect).await?;
            io.ns("/custom", on_connect).await?;
            axum::Router::new().layer(layer)
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    // A bench server has nothing to flush: stop at once rather than wait for every websocket.
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
