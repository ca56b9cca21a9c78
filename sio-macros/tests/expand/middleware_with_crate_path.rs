#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct auth;
impl auth {
    #[doc(hidden)]
    async fn __sio_handler(Auth(token): Auth<String>) -> Result<(), ConnectError> {
        if token.is_empty() { Err(ConnectError::new("no token")) } else { Ok(()) }
    }
}
#[allow(deprecated)]
impl my_app::sio::HandlerService for auth {
    fn register(self, ns: my_app::sio::Namespace) -> my_app::sio::Namespace {
        my_app::sio::__private::assert_extractor::<Auth<String>>();
        my_app::sio::__private::assert_middleware_result::<Result<(), ConnectError>>();
        ns.middleware(auth::__sio_handler)
    }
}
#[allow(deprecated)]
impl my_app::sio::__private::Deref for auth {
    type Target = fn(
        Auth<String>,
    ) -> my_app::sio::__private::Pin<
        my_app::sio::__private::Box<
            dyn my_app::sio::__private::Future<
                Output = Result<(), ConnectError>,
            > + ::core::marker::Send,
        >,
    >;
    fn deref(&self) -> &Self::Target {
        static CALL: <auth as my_app::sio::__private::Deref>::Target = |arg0| my_app::sio::__private::Box::pin(
            auth::__sio_handler(arg0),
        );
        &CALL
    }
}
