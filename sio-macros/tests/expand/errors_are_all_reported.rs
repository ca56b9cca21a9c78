fn chat<T>(reason: DisconnectReason) {}
::core::compile_error! {
    "unknown `#[on]` option `acks`; the only option is `crate`"
}
::core::compile_error! {
    "`connect` is a reserved Socket.IO event name: use `#[on_connect]` for a new connection"
}
::core::compile_error! {
    "`#[on]` handlers must be `async fn`"
}
::core::compile_error! {
    "a handler cannot be generic: sio extracts each argument by its concrete type"
}
::core::compile_error! {
    "a handler cannot take `self`: it is a free function; share data with `State<T>`"
}
::core::compile_error! {
    "`DisconnectReason` is not available in `#[on]` handlers, only in `#[on_disconnect]`, `#[on_disconnecting]` handlers"
}
