//! Handlers: async functions whose arguments are extractors.
//!
//! Any `async fn` (or closure returning a future) whose arguments all implement
//! [`FromContext`](crate::extract::FromContext), up to 16 of them and in any order, is a
//! [`Handler`]. There is no macro magic: each argument is extracted from the event, then the
//! function is called.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt as _;
use serde::Serialize;

use crate::args::to_args;
use crate::extract::{Context, ExtractError, FromContext};

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An async function that sio can call with extracted arguments.
///
/// If you see "the trait `Handler<_>` is not implemented", one of the function's arguments is
/// not an extractor (see [`extract`](crate::extract)), the function is not `async`, or its
/// future is not `Send` (a `!Send` value such as an `Rc` or a `std` mutex guard lives across an
/// `.await`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sio handler",
    note = "a handler is an async fn (or a closure returning a future) whose arguments all implement `FromContext` (SocketRef, Data<T>, TryData<T>, Args, Bin, AckSender, Event, State<T>, Auth<T>, DisconnectReason), at most 16 of them; its future must be `Send`"
)]
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// The future the handler returns.
    type Future: Future + Send + 'static;

    /// Extracts the arguments from `ctx` and calls the function.
    fn call(&self, ctx: &mut Context) -> Result<Self::Future, ExtractError>;
}

macro_rules! impl_handler {
    ($($ty:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<F, Fut, $($ty,)*> Handler<($($ty,)*)> for F
        where
            F: Fn($($ty),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            $($ty: FromContext,)*
        {
            type Future = Fut;

            #[allow(non_snake_case, unused_variables)]
            fn call(&self, ctx: &mut Context) -> Result<Fut, ExtractError> {
                $(let $ty = $ty::from_context(ctx)?;)*
                Ok((self)($($ty),*))
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14);
impl_handler!(
    T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15
);
impl_handler!(
    T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15, T16
);

/// What an event, connect or disconnect handler may return: nothing, or a `Result`.
///
/// - `()` and `Ok(())` answer nothing: the handler may still answer with an
///   [`AckSender`](crate::AckSender), now or later.
/// - `Ok(value)` answers the client's ack with `value` (as [`AckSender::send`](crate::AckSender::send)
///   would), when the client asked for one and the handler did not answer already; without an
///   ack request it is dropped (fire-and-forget).
/// - `Err(err)` is logged (target `sio::handler`) and answers a pending ack with one argument,
///   `{"error": "<err>"}`.
///
/// ```
/// use sio_core::{Data, Namespace};
///
/// // `socket.emitWithAck("add", 1, 2)` gets 3; `("add", 1, "x")` gets {"error": ...}.
/// let ns = Namespace::new("/").on("add", |Data((a, b)): Data<(i64, i64)>| async move {
///     a.checked_add(b).ok_or("overflow")
/// });
/// # let _ = ns;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a sio handler",
    note = "a handler returns `()` or `Result<T, E>` where `T: Serialize` is the ack's answer (`()` answers nothing) and `E: Display` is sent as `{{\"error\": ...}}`"
)]
pub trait HandlerResult: Send + 'static {
    /// The ack's arguments (`None`: no answer), or the error to log and answer.
    fn into_reply(self) -> Result<Option<Vec<serde_json::Value>>, String>;
}

impl HandlerResult for () {
    fn into_reply(self) -> Result<Option<Vec<serde_json::Value>>, String> {
        Ok(None)
    }
}

impl<T, E> HandlerResult for Result<T, E>
where
    T: Serialize + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn into_reply(self) -> Result<Option<Vec<serde_json::Value>>, String> {
        let value = self.map_err(|e| e.to_string())?;
        // `Ok(())` keeps meaning "no answer from the return value", as before acks could be
        // returned: a handler that moved its AckSender into a task answers later.
        if TypeId::of::<T>() == TypeId::of::<()>() {
            return Ok(None);
        }
        to_args(&value)
            .map(Some)
            .map_err(|err| format!("cannot serialize the ack: {err}"))
    }
}

/// Why a middleware refused a connection; the client gets it as a `CONNECT_ERROR`
/// (`{"message": ..., "data": ...}`) and its `connect_error` event.
///
/// ```
/// use sio_core::ConnectError;
/// use serde_json::json;
///
/// let err = ConnectError::new("not authorized").with_data(json!({"retry": false}));
/// assert_eq!(err.to_string(), "not authorized");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    message: String,
    data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds data the client receives as `err.data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The CONNECT_ERROR payload.
    pub(crate) fn to_payload(&self) -> serde_json::Value {
        let mut payload = serde_json::Map::new();
        payload.insert("message".into(), self.message.clone().into());
        if let Some(data) = &self.data {
            payload.insert("data".into(), data.clone());
        }
        payload.into()
    }
}

impl ConnectError {
    /// The CONNECT_ERROR payload for Socket.IO v4 clients: the data when there is some, else
    /// the message (as Node sends it to them).
    pub(crate) fn to_legacy_payload(&self) -> serde_json::Value {
        self.data
            .clone()
            .unwrap_or_else(|| self.message.clone().into())
    }
}

impl From<&str> for ConnectError {
    fn from(message: &str) -> Self {
        ConnectError::new(message)
    }
}

impl From<String> for ConnectError {
    fn from(message: String) -> Self {
        ConnectError::new(message)
    }
}

/// What a middleware returns: `Ok(())` lets the connection through, an error refuses it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a sio middleware",
    note = "a middleware returns `Result<(), E>` where `E: Into<ConnectError>` (a `ConnectError`, `String` or `&str`)"
)]
pub trait MiddlewareResult: Send + 'static {
    /// The refusal, if any.
    fn into_refusal(self) -> Option<ConnectError>;
}

impl<E: Into<ConnectError> + Send + 'static> MiddlewareResult for Result<(), E> {
    fn into_refusal(self) -> Option<ConnectError> {
        self.err().map(Into::into)
    }
}

/// A handler with its types erased, as namespaces store them.
pub(crate) type Erased<O> =
    Arc<dyn Fn(&mut Context) -> Result<BoxFuture<O>, ExtractError> + Send + Sync>;

/// Erases a handler whose output is turned into `O` by `map`.
pub(crate) fn erase<H, T, O>(handler: H, map: fn(<H::Future as Future>::Output) -> O) -> Erased<O>
where
    H: Handler<T>,
    T: 'static,
    O: 'static,
{
    Arc::new(move |ctx| {
        let fut = handler.call(ctx)?;
        Ok(Box::pin(fut.map(map)))
    })
}

/// Runs a handler's future: polled once right here (most handlers finish without waiting, and
/// then cost no task), spawned only if it has to wait, and then counted in `in_flight` until it
/// is done.
/// A handler of a client's connection waiting is also counted in that connection's own
/// `InFlight` (`connection`), which the engine waits on before it reads more from the client.
pub(crate) fn run<O: Send + 'static>(
    mut fut: BoxFuture<O>,
    in_flight: &Arc<InFlight>,
    connection: Option<&Arc<InFlight>>,
    done: impl FnOnce(O) + Send + 'static,
) {
    match (&mut fut).now_or_never() {
        Some(out) => done(out),
        None => {
            let running = InFlight::enter(in_flight);
            let of_connection = connection.map(InFlight::enter);
            tokio::spawn(async move {
                done(fut.await);
                drop((running, of_connection));
            });
        }
    }
}

/// The handlers still running, so that a graceful shutdown can let them finish (and send the
/// acks they owe) before closing connections.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One running handler; dropping it ends the count.
pub(crate) struct Running(Arc<InFlight>);

impl InFlight {
    fn enter(this: &Arc<Self>) -> Running {
        this.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Running(this.clone())
    }

    /// Resolves once fewer than `max` handlers are running.
    pub(crate) async fn below(&self, max: usize) {
        loop {
            let fewer = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::Acquire) < max {
                return;
            }
            fewer.await;
        }
    }

    /// Resolves once no handler is running.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        // Whoever waits for fewer (`below`) or none (`idle`) checks the count again.
        self.0.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::HandlerResult;

    #[test]
    fn only_ok_values_other_than_unit_answer_the_ack() {
        assert_eq!(().into_reply(), Ok(None));
        assert_eq!(Ok::<(), String>(()).into_reply(), Ok(None));
        assert_eq!(Ok::<i64, String>(3).into_reply(), Ok(Some(vec![json!(3)])));
        // A tuple is an argument list, as for `emit` and `AckSender::send`.
        assert_eq!(
            Ok::<_, String>((1, "a")).into_reply(),
            Ok(Some(vec![json!(1), json!("a")]))
        );
        assert_eq!(
            Err::<i64, _>("overflow").into_reply(),
            Err("overflow".to_owned())
        );
    }
}
