//! Each attribute on the handler it is made for, all on one namespace.

use serde_json::json;
use sio_core::{
    AckSender, Args, Auth, ConnectError, Data, DisconnectReason, Event, Namespace, SocketIo,
    SocketRef, middleware, on_any, on_connect, on_disconnect, on_disconnecting, on_server_event,
};

#[middleware]
async fn auth(Auth(token): Auth<String>) -> Result<(), ConnectError> {
    if token == "secret" {
        Ok(())
    } else {
        Err(ConnectError::new("not authorized").with_data(json!({ "retry": false })))
    }
}

#[middleware]
async fn allow_all() -> Result<(), &'static str> {
    Ok(())
}

#[on_connect]
async fn connected(socket: SocketRef, Data(payload): Data<serde_json::Value>) {
    let _ = socket.emit("welcome", &payload);
}

#[on_connect]
async fn connected_or_log() -> Result<(), String> {
    Ok(())
}

#[on_any]
async fn any(Event(event): Event, Args(args): Args) {
    let _ = (event, args);
}

#[on_disconnect]
async fn disconnected(socket: SocketRef, reason: DisconnectReason) {
    let _ = (socket.id(), reason);
}

#[on_disconnecting]
async fn disconnecting(reason: DisconnectReason, socket: SocketRef) {
    let _ = (socket.rooms(), reason);
}

#[on_server_event("reload")]
async fn reload(Data(section): Data<String>, ack: AckSender) {
    let _ = ack.send(&section);
}

#[on_server_event("count")]
async fn count() -> Result<u32, String> {
    Ok(1)
}

fn main() {
    let ns = Namespace::new("/")
        .service(auth)
        .service(allow_all)
        .service(connected)
        .service(any)
        .service(disconnected)
        .service(disconnecting)
        .service(reload)
        .service(count);
    let other = Namespace::new("/other").service(connected_or_log);
    let io = SocketIo::builder().namespace(ns).namespace(other).build();
    let _ = io;
}
