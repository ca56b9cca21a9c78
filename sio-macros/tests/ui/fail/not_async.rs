use sio_core::{SocketRef, on};

#[on("chat")]
fn chat(socket: SocketRef) {
    let _ = socket;
}

fn main() {}
