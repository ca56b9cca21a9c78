//! `crate = "..."` for a crate that re-exports sio-core under another path.

mod sio {
    pub use sio_core::*;
}

use sio::{Namespace, SocketRef, on};

#[on("chat", crate = "crate::sio")]
async fn chat(socket: SocketRef) {
    let _ = socket;
}

#[sio::namespace("/admin", crate = "crate::sio")]
mod admin {
    #[crate::sio::on_connect(crate = "crate::sio")]
    async fn hello() {}
}

fn main() {
    let _ = (Namespace::new("/").service(chat), admin::namespace());
}
