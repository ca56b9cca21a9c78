use sio_core::{SocketRef, on};

#[on("connect")]
async fn connected(socket: SocketRef) {
    let _ = socket;
}

#[on("newListener")]
async fn listener() {}

fn main() {}
