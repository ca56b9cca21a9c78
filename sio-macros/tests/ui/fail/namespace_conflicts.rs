use sio_core::namespace;

#[namespace("/chat")]
mod chat {
    use sio_core::{SocketRef, on, on_connect};

    #[on_connect]
    async fn join(socket: SocketRef) {
        socket.join("lobby");
    }

    #[on("msg")]
    async fn msg() {}

    #[on("msg")]
    async fn msg_again() {}

    #[on_connect]
    async fn join_again() {}
}

fn main() {}
