//! Extractors: what a handler can ask for in its arguments.
//!
//! | extractor | gives | in handlers for |
//! | --- | --- | --- |
//! | [`SocketRef`] | the socket | all |
//! | [`Data<T>`] | the arguments (auth payload on connect), deserialized | events, connect |
//! | [`TryData<T>`] | the same, or the deserialization error | events, connect |
//! | [`Args`] | every argument as JSON, as it came | events, connect |
//! | [`Bin`] | the binary attachments | events |
//! | [`AckSender`] | the way to answer the client's ack | events |
//! | [`Event`] | the event's name | events |
//! | [`State<T>`] | application state given to the builder | all |
//! | [`Auth<T>`] | the connect payload, deserialized | all |
//! | [`DisconnectReason`] | why the socket disconnected | disconnect |
//!
//! When an extractor fails, the handler is not called and the failure is logged with the target
//! `sio::rejection`.

use std::any::type_name;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::oneshot;

use crate::ack::{AckResponse, AckSender, AckTarget};
use crate::args::{Args, from_args};
use crate::namespace::Shared;
use crate::socket::{DisconnectReason, SocketRef};

/// Everything a handler call can draw from. Extractors take what they need.
#[derive(Debug)]
pub struct Context {
    /// The socket, except in handlers of server-side events (`on_server_event`).
    pub(crate) socket: Option<SocketRef>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) event: Option<String>,
    pub(crate) args: Option<Vec<Value>>,
    pub(crate) attachments: Option<Vec<Bytes>>,
    pub(crate) ack_id: Option<u64>,
    /// Set when the handler's [`AckSender`] sent the ack.
    pub(crate) acked: Arc<AtomicBool>,
    /// Where the answer to a server-side event goes, when its sender waits for one.
    pub(crate) server_ack: Option<oneshot::Sender<AckResponse>>,
    pub(crate) reason: Option<DisconnectReason>,
}

impl Context {
    pub(crate) fn new(socket: SocketRef) -> Self {
        let shared = socket.nsp().shared().clone();
        Context {
            socket: Some(socket),
            ..Context::server(shared)
        }
    }

    /// A context without socket, for a server-side event.
    pub(crate) fn server(shared: Arc<Shared>) -> Self {
        Context {
            socket: None,
            shared,
            event: None,
            args: None,
            attachments: None,
            ack_id: None,
            acked: Arc::default(),
            server_ack: None,
            reason: None,
        }
    }

    /// The socket the handler runs for (none for server-side events).
    pub fn socket(&self) -> Option<&SocketRef> {
        self.socket.as_ref()
    }

    fn require_socket(&self, what: &'static str) -> Result<&SocketRef, ExtractError> {
        self.socket.as_ref().ok_or(ExtractError::NotAvailable(what))
    }
}

/// Why an extractor could not produce its value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The arguments (or the auth payload) do not deserialize into the asked type.
    #[error("cannot deserialize the data into {ty}: {source}")]
    Data {
        /// The asked type.
        ty: &'static str,
        /// What serde said.
        source: serde_json::Error,
    },
    /// No [`State<T>`] of this type was given to the builder.
    #[error("no state of type {0} was given to the SocketIo builder")]
    MissingState(&'static str),
    /// The extractor does not apply to this kind of handler (e.g. `DisconnectReason` in an
    /// event handler).
    #[error("{0} is not available in this handler")]
    NotAvailable(&'static str),
}

/// A type a handler can take as an argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    note = "handler arguments must be extractors: SocketRef, Data<T>, TryData<T>, Args, Bin, AckSender, Event, State<T>, Auth<T>, DisconnectReason"
)]
pub trait FromContext: Sized {
    /// Takes the value out of the handler's context.
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError>;
}

impl FromContext for SocketRef {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        ctx.require_socket("SocketRef").cloned()
    }
}

/// The arguments deserialized as `T` (on connect: the auth payload). One argument is read as
/// `T` itself, several as a tuple or list (see [`Args`] for the rule).
///
/// ```
/// use serde::Deserialize;
/// use sio_core::{Data, SocketRef};
///
/// #[derive(Deserialize)]
/// struct Msg { room: String, text: String }
///
/// async fn chat(socket: SocketRef, Data(msg): Data<Msg>) {
///     let _ = socket.to(msg.room).emit("chat", &msg.text);
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Data<T>(pub T);

impl<T: DeserializeOwned> FromContext for Data<T> {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        from_args(ctx.args.take().unwrap_or_default())
            .map(Data)
            .map_err(|source| ExtractError::Data {
                ty: type_name::<T>(),
                source,
            })
    }
}

/// Like [`Data`], but the handler runs either way and gets the deserialization error.
#[derive(Debug)]
pub struct TryData<T>(pub Result<T, serde_json::Error>);

impl<T: DeserializeOwned> FromContext for TryData<T> {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        Ok(TryData(from_args(ctx.args.take().unwrap_or_default())))
    }
}

impl FromContext for Args {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        Ok(Args(ctx.args.take().unwrap_or_default()))
    }
}

/// The binary attachments of the event, in order. The arguments hold a placeholder
/// `{"_placeholder":true,"num":i}` where attachment `i` was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bin(pub Vec<Bytes>);

impl FromContext for Bin {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        Ok(Bin(ctx.attachments.take().unwrap_or_default()))
    }
}

impl FromContext for AckSender {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        let to = match &ctx.socket {
            Some(socket) => AckTarget::Client(socket.clone(), ctx.ack_id.take()),
            None => AckTarget::Server(ctx.server_ack.take()),
        };
        Ok(AckSender::new(to, ctx.acked.clone()))
    }
}

/// The name of the event being handled (useful in `on_any` handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event(pub String);

impl FromContext for Event {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        ctx.event
            .clone()
            .map(Event)
            .ok_or(ExtractError::NotAvailable("Event"))
    }
}

/// Application state given to [`SocketIoBuilder::with_state`](crate::SocketIoBuilder::with_state).
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromContext for State<T> {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        ctx.shared
            .state
            .get::<T>()
            .map(State)
            .ok_or(ExtractError::MissingState(type_name::<T>()))
    }
}

/// The payload the client sent with its CONNECT (`auth` in the JS client), deserialized.
#[derive(Debug, Clone)]
pub struct Auth<T>(pub T);

impl<T: DeserializeOwned> FromContext for Auth<T> {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        let auth = ctx.require_socket("Auth")?.handshake().auth.clone();
        serde_json::from_value(auth)
            .map(Auth)
            .map_err(|source| ExtractError::Data {
                ty: type_name::<T>(),
                source,
            })
    }
}

impl FromContext for DisconnectReason {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        ctx.reason
            .ok_or(ExtractError::NotAvailable("DisconnectReason"))
    }
}
