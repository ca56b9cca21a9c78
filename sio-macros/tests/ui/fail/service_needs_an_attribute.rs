use sio_core::{Namespace, SocketRef};

async fn chat(socket: SocketRef) {
    let _ = socket;
}

fn main() {
    let _ = Namespace::new("/").service(chat);
}
