use sio_core::{SocketRef, on};

#[on("chat")]
async fn chat(socket: SocketRef, ...) {
    let _ = socket;
}

fn main() {}
