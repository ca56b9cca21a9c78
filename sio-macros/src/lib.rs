//! Attribute macros for sio handlers: `#[on("event")]`, `#[on_connect]`, `#[namespace]`...
//!
//! Use them through `sio_core` (its default `macros` feature re-exports them), so that the
//! generated code finds `::sio_core`:
//!
//! ```
//! use serde::Deserialize;
//! use sio_core::{Data, Namespace, SocketRef, on};
//!
//! #[derive(Deserialize)]
//! struct Msg {
//!     room: String,
//!     text: String,
//! }
//!
//! /// Relays a message to its room.
//! #[on("chat")]
//! async fn chat(socket: SocketRef, Data(msg): Data<Msg>) {
//!     let _ = socket.to(msg.room).emit("chat", &msg.text);
//! }
//!
//! let ns = Namespace::new("/").service(chat);
//! # let _ = ns;
//! ```
//!
//! # What a handler attribute generates, and why
//!
//! `#[on("chat")] async fn chat(..)` becomes a unit struct `chat` (with the function's
//! visibility and docs) that implements `sio_core::HandlerService`, plus the function itself,
//! moved unchanged into the struct's impl as a hidden associated function. The shape follows
//! actix-web's `#[get]` + `App::service`, with two differences:
//!
//! - **Dispatch costs nothing more than a closure.** `register` hands the moved `async fn` to
//!   `Namespace::on` exactly as `Namespace::on("chat", |..| ..)` would get a closure: same
//!   `Handler` impl, same erasure, no extra box or indirection.
//! - **The function stays callable.** The struct derefs to a function pointer with the same
//!   arguments, so `chat(socket, Data(msg)).await` works in a unit test (a call expression
//!   auto-derefs its callee). That pointer returns a boxed future (an `async fn`'s future has
//!   no name to write), which only such direct calls pay for.
//!
//! A generated hidden module or a `__sio_chat` function would also keep the function, but
//! under another name: tests would call `__sio_chat`, and `chat` could not be both the
//! function and the thing `service` takes.
//!
//! # Grouping: `#[namespace]` on a module
//!
//! `#[namespace("/chat")] mod chat { .. }` adds `chat::namespace()`, which registers every
//! handler of the module in order; a chat app then registers a namespace in one line. A module
//! (rather than an impl block) because handlers are free functions without `self` (shared data
//! comes through `State<T>`), one module per namespace mirrors one file per namespace in a
//! Node app, and the handlers stay plain items a test can call.
//!
//! # Errors
//!
//! Every problem is reported at once, each at the user's token: a function that is not
//! `async`, generic, `const`, `unsafe`, `extern`, variadic or takes `self`; a bad or reserved
//! event name; a missing, extra or unknown attribute argument; a duplicate attribute; an
//! argument that is not an extractor (pointed at its type); an extractor this kind of handler
//! never gets (`DisconnectReason` in `#[on]`); two extractors that take the same thing.
//!
//! To see an expansion, build with `SIO_MACROS_DEBUG=1`: each expansion is printed to stderr
//! (touch the file first, since cargo does not rebuild for an environment variable).

mod attr;
mod check;
mod ctxt;
mod expand;
mod kind;
mod namespace;
#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;

use crate::kind::Kind;

/// Hands the expansion to the compiler, printing it first when `SIO_MACROS_DEBUG` is set (as
/// axum does with `AXUM_MACROS_DEBUG`): the quickest way to see what a handler became.
fn debug(expanded: proc_macro2::TokenStream) -> TokenStream {
    if std::env::var_os("SIO_MACROS_DEBUG").is_some() {
        eprintln!("{expanded}");
    }
    expanded.into()
}

/// Handles a client event: `socket.on("event", ...)`.
///
/// # Syntax
///
/// `#[on("event")]` or `#[on("event", crate = "path::to::sio_core")]` on an `async fn` whose
/// arguments are extractors (`sio_core::extract`), in any order, at most 16.
///
/// The function may return `()` or `Result<T, E>`: when the client asked for an ack, `Ok(value)`
/// answers it with `value` (`Ok(())` answers nothing) and `Err(err)` with
/// `{"error": "<err>"}`; without an ack request the value is dropped.
///
/// # Examples
///
/// ```
/// use sio_core::{Data, Namespace, on};
///
/// /// `socket.emitWithAck("add", 1, 2)` gets `3`.
/// #[on("add")]
/// async fn add(Data((a, b)): Data<(i64, i64)>) -> Result<i64, &'static str> {
///     a.checked_add(b).ok_or("overflow")
/// }
///
/// let ns = Namespace::new("/").service(add);
/// # let _ = ns;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // The function can still be called, e.g. from a unit test.
/// assert_eq!(add(Data((1, 2))).await, Ok(3));
/// # });
/// ```
#[proc_macro_attribute]
pub fn on(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(Kind::On, attr.into(), item.into()))
}

/// Handles every client event, before its own handler: `socket.onAny(...)`.
///
/// # Syntax
///
/// `#[on_any]` on an `async fn` of extractors; take `Event` to know which event came.
///
/// # Examples
///
/// ```
/// use sio_core::{Args, Event, Namespace, on_any};
///
/// #[on_any]
/// async fn log(Event(event): Event, Args(args): Args) {
///     println!("{event}: {args:?}");
/// }
///
/// let ns = Namespace::new("/").service(log);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn on_any(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(Kind::OnAny, attr.into(), item.into()))
}

/// Runs when a socket has connected: `io.on("connection", ...)`.
///
/// # Syntax
///
/// `#[on_connect]` on an `async fn` of extractors (`Data<T>` and `Auth<T>` give the auth
/// payload). It runs once the connection is accepted, so it cannot refuse it: to refuse with a
/// `CONNECT_ERROR` (message and data), write a [`macro@middleware`].
///
/// # Examples
///
/// ```
/// use sio_core::{Namespace, SocketRef, on_connect};
///
/// #[on_connect]
/// async fn join_lobby(socket: SocketRef) {
///     socket.join("lobby");
/// }
///
/// let ns = Namespace::new("/").service(join_lobby);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn on_connect(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(Kind::OnConnect, attr.into(), item.into()))
}

/// Runs when a socket has disconnected; take `DisconnectReason` to know why.
///
/// # Examples
///
/// ```
/// use sio_core::{DisconnectReason, Namespace, SocketRef, on_disconnect};
///
/// #[on_disconnect]
/// async fn bye(socket: SocketRef, reason: DisconnectReason) {
///     println!("{} left: {reason}", socket.id());
/// }
///
/// let ns = Namespace::new("/").service(bye);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn on_disconnect(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(
        Kind::OnDisconnect,
        attr.into(),
        item.into(),
    ))
}

/// Runs when a socket is about to disconnect, while it is still in its rooms (Node's
/// `disconnecting`).
///
/// # Examples
///
/// ```
/// use sio_core::{Namespace, SocketRef, on_disconnecting};
///
/// #[on_disconnecting]
/// async fn tell_rooms(socket: SocketRef) {
///     for room in socket.rooms() {
///         let _ = socket.to(room).emit("left", &socket.id().to_string());
///     }
/// }
///
/// let ns = Namespace::new("/").service(tell_rooms);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn on_disconnecting(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(
        Kind::OnDisconnecting,
        attr.into(),
        item.into(),
    ))
}

/// Handles an event another node of the cluster sent with `SocketIo::server_side_emit`.
///
/// # Syntax
///
/// `#[on_server_event("event")]`; there is no socket: `Data<T>`, `Args`, `Event`, `State<T>`
/// and `AckSender` apply. Like `#[on]`, a returned `Ok(value)` answers the sender's ack.
///
/// # Examples
///
/// ```
/// use sio_core::{Data, Namespace, on_server_event};
///
/// #[on_server_event("reload")]
/// async fn reload(Data(section): Data<String>) -> Result<bool, String> {
///     Ok(!section.is_empty())
/// }
///
/// let ns = Namespace::new("/").service(reload);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn on_server_event(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(
        Kind::OnServerEvent,
        attr.into(),
        item.into(),
    ))
}

/// Runs before a socket connects (`namespace.use(...)`), in the order registered; returning an
/// error refuses the connection with a `CONNECT_ERROR`.
///
/// # Syntax
///
/// `#[middleware]` on an `async fn` of extractors returning `Result<(), E>` where
/// `E: Into<ConnectError>`; a `ConnectError` can carry data the client gets as `err.data`.
///
/// # Examples
///
/// ```
/// use serde::Deserialize;
/// use serde_json::json;
/// use sio_core::{Auth, ConnectError, Namespace, middleware};
///
/// #[derive(Deserialize)]
/// struct Token {
///     token: String,
/// }
///
/// #[middleware]
/// async fn authorize(Auth(auth): Auth<Token>) -> Result<(), ConnectError> {
///     if auth.token == "secret" {
///         Ok(())
///     } else {
///         Err(ConnectError::new("not authorized").with_data(json!({ "retry": false })))
///     }
/// }
///
/// let ns = Namespace::new("/").service(authorize);
/// # let _ = ns;
/// ```
#[proc_macro_attribute]
pub fn middleware(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(expand::handler(Kind::Middleware, attr.into(), item.into()))
}

/// Groups the handlers of a module into one namespace: adds `namespace()` to the module,
/// which returns a `Namespace` with every handler of the module registered in order.
///
/// # Syntax
///
/// `#[namespace("/path")]` (or with `crate = "..."`) on an inline module. Two handlers of the
/// same event, or two `#[on_connect]` (`#[on_any]`, `#[on_disconnect]`...), are an error: a
/// namespace keeps one. Handlers in nested modules are not included.
///
/// # Examples
///
/// ```
/// use sio_core::{SocketIo, namespace};
///
/// #[namespace("/chat")]
/// mod chat {
///     use sio_core::{Data, SocketRef, on, on_connect};
///
///     #[on_connect]
///     async fn join(socket: SocketRef) {
///         socket.join("lobby");
///     }
///
///     #[on("msg")]
///     async fn msg(socket: SocketRef, Data(text): Data<String>) {
///         let _ = socket.to("lobby").emit("msg", &text);
///     }
/// }
///
/// let io = SocketIo::builder().namespace(chat::namespace()).build();
/// # let _ = io;
/// ```
#[proc_macro_attribute]
pub fn namespace(attr: TokenStream, item: TokenStream) -> TokenStream {
    debug(namespace::namespace(attr.into(), item.into()))
}
