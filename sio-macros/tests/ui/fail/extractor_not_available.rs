use sio_core::{Bin, DisconnectReason, SocketRef, on, on_server_event};

#[on("chat")]
async fn chat(reason: DisconnectReason) {
    let _ = reason;
}

#[on_server_event("reload")]
async fn reload(socket: SocketRef, bin: Bin) {
    let _ = (socket, bin);
}

fn main() {}
