//! `#[namespace]` registers every handler of a module, including cfg-gated ones.

use sio_core::{SocketIo, namespace};

#[namespace("/chat")]
mod chat {
    use sio_core::{ConnectError, Data, SocketRef, middleware, on, on_connect, on_disconnect};

    #[middleware]
    async fn auth() -> Result<(), ConnectError> {
        Ok(())
    }

    #[on_connect]
    async fn join(socket: SocketRef) {
        socket.join("lobby");
    }

    #[on("msg")]
    pub(crate) async fn msg(socket: SocketRef, Data(text): Data<String>) {
        let _ = socket.to("lobby").emit("msg", &text);
    }

    #[sio_core::on("typing")]
    async fn typing(socket: SocketRef) {
        let _ = socket.to("lobby").emit("typing", &());
    }

    #[cfg(any())]
    #[on("never")]
    async fn never() {}

    #[on_disconnect]
    async fn leave() {}

    /// Not a handler: left alone.
    pub fn helper() -> u8 {
        1
    }
}

fn main() {
    let io = SocketIo::builder().namespace(chat::namespace()).build();
    let _ = (io, chat::helper());
    // The handlers stay items of the module.
    let _ = chat::msg;
}
