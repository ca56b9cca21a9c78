use sio_core::{SocketRef, on};

#[on("chat")]
async fn chat(socket: SocketRef, text: String) {
    let _ = (socket, text);
}

fn main() {}
