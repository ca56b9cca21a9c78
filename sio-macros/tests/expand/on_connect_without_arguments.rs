#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
struct hello;
impl hello {
    #[doc(hidden)]
    #[allow(unused_variables)]
    async fn __sio_handler() {}
}
#[allow(deprecated)]
impl ::sio_core::HandlerService for hello {
    fn register(self, ns: ::sio_core::Namespace) -> ::sio_core::Namespace {
        ns.on_connect(hello::__sio_handler)
    }
}
#[allow(deprecated)]
impl ::sio_core::__private::Deref for hello {
    type Target = fn() -> ::sio_core::__private::Pin<
        ::sio_core::__private::Box<
            dyn ::sio_core::__private::Future<Output = ()> + ::core::marker::Send,
        >,
    >;
    fn deref(&self) -> &Self::Target {
        static CALL: <hello as ::sio_core::__private::Deref>::Target = || ::sio_core::__private::Box::pin(
            hello::__sio_handler(),
        );
        &CALL
    }
}
