use sio_core::{SocketRef, middleware};

#[middleware]
async fn auth(socket: SocketRef) {
    let _ = socket;
}

fn main() {}
