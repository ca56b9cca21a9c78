/// Relays a message.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct chat;
impl chat {
    #[doc(hidden)]
    async fn __sio_handler(
        socket: SocketRef,
        Data(msg): Data<Msg>,
    ) -> Result<usize, String> {
        socket.to(msg.room).emit("chat", &msg.text).map_err(|e| e.to_string())?;
        Ok(msg.text.len())
    }
}
#[allow(deprecated)]
impl ::sio_core::HandlerService for chat {
    fn register(self, ns: ::sio_core::Namespace) -> ::sio_core::Namespace {
        ::sio_core::__private::assert_extractor::<SocketRef>();
        ::sio_core::__private::assert_extractor::<Data<Msg>>();
        ::sio_core::__private::assert_handler_result::<Result<usize, String>>();
        ns.on("chat", chat::__sio_handler)
    }
}
#[allow(deprecated)]
impl ::sio_core::__private::Deref for chat {
    type Target = fn(
        SocketRef,
        Data<Msg>,
    ) -> ::sio_core::__private::Pin<
        ::sio_core::__private::Box<
            dyn ::sio_core::__private::Future<
                Output = Result<usize, String>,
            > + ::core::marker::Send,
        >,
    >;
    fn deref(&self) -> &Self::Target {
        static CALL: <chat as ::sio_core::__private::Deref>::Target = |arg0, arg1| ::sio_core::__private::Box::pin(
            chat::__sio_handler(arg0, arg1),
        );
        &CALL
    }
}
