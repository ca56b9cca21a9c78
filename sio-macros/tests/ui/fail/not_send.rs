use std::rc::Rc;

use sio_core::{SocketRef, on};

#[on("chat")]
async fn chat(socket: SocketRef) {
    let shared = Rc::new(socket);
    tokio::task::yield_now().await;
    let _ = shared;
}

fn main() {}
