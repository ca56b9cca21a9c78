//! The bench-server contract (`shared/protocol/bench-server.md`) on socketioxide + axum, the
//! same events as sio's `examples/bench`: namespaces `/` and `/custom`, each with
//! - `echo` (with an ack): acknowledged with the arguments unchanged;
//! - `broadcast`: `bcast` with the same payload to every socket of the namespace, sender included;
//! - `join` (with an ack): joins the room named by the argument, acknowledged with its name;
//! - `room` (`{"room": r, "data": d}`): `bcast` with `d` to every socket in room `r`.
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1; `TCP_NODELAY` on accepted sockets; library
//! defaults otherwise. Nothing is logged per message. Exits on SIGTERM or Ctrl-C.

use axum::serve::ListenerExt;
use serde::Deserialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    data: Value,
}

async fn on_connect(socket: SocketRef) {
    socket.on("echo", async |Data::<Value>(data), ack: AckSender| {
        let _ = ack.send(&data);
    });
    socket.on(
        "broadcast",
        async |socket: SocketRef, io: SocketIo, Data::<Value>(data)| {
            if let Some(ns) = io.of(socket.ns()) {
                let _ = ns.emit("bcast", &data).await;
            }
        },
    );
    socket.on(
        "join",
        async |socket: SocketRef, Data::<String>(room), ack: AckSender| {
            socket.join(room.clone());
            let _ = ack.send(&room);
        },
    );
    socket.on(
        "room",
        async |socket: SocketRef, Data::<RoomMessage>(msg)| {
            let _ = socket.within(msg.room).emit("bcast", &msg.data).await;
        },
    );
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", on_connect);
    io.ns("/custom", on_connect);
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    // A bench server has nothing to flush: stop at once rather than wait for every websocket.
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        served = axum::serve(listener, app) => served,
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
