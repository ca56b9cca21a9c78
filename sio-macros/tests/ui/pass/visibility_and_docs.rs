//! The struct takes the function's visibility and docs, so it is usable from other modules
//! and passes `missing_docs` / `missing_debug_implementations`.
#![deny(missing_docs, missing_debug_implementations)]

/// Handlers.
pub mod handlers {
    use sio_core::{SocketRef, on};

    /// Says hello.
    #[on("hello")]
    pub async fn hello(socket: SocketRef) {
        let _ = socket.emit("hello", "world");
    }

    #[on("private")]
    pub(crate) async fn private() {}

    /// Deprecated handlers keep their attribute.
    #[deprecated = "use hello"]
    #[on("old")]
    pub async fn old() {}
}

fn main() {
    #[allow(deprecated)]
    let ns = sio_core::Namespace::new("/")
        .service(handlers::hello)
        .service(handlers::private)
        .service(handlers::old);
    let _ = ns;
}
