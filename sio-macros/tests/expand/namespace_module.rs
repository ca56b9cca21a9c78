mod chat {
    use sio_core::{on, on_connect, middleware};
    #[middleware]
    async fn auth() -> Result<(), String> {
        Ok(())
    }
    #[on_connect]
    async fn join(socket: SocketRef) {
        socket.join("lobby");
    }
    #[cfg(feature = "debug")]
    #[sio_core::on("debug")]
    async fn debug() {}
    fn helper() {}
    /// The `/chat` namespace, with the handlers of this module.
    pub fn namespace() -> ::sio_core::Namespace {
        let ns = ::sio_core::Namespace::new("/chat");
        let ns = ns.service(auth);
        let ns = ns.service(join);
        #[cfg(feature = "debug")]
        let ns = ns.service(debug);
        ns
    }
}
