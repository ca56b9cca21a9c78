//! Connections that leave HTTP (WebSockets), driven by sio instead of actix-http's dispatcher.
//!
//! actix-http's dispatcher keeps an 8 KB read and an 8 KB write buffer for as long as a
//! connection lives: 16 of the 25 KB of heap an idle sio WebSocket used (massif,
//! `bench/profile/memory.sh`). Here the request still goes through the application like any
//! other, so routing, middleware and handlers are unchanged; only the bytes move differently
//! once the response is `101 Switching Protocols`: what the client sends is read into the stack
//! and handed to the request's payload, and the response body's chunks are written as they
//! come. An idle connection holds no buffer.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_codec::{Encoder as _, Framed};
use actix_http::body::{BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, Payload, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory};
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::shared::SharedApp;

/// Bytes read from the socket in one go (on the stack, copied out at their length).
const READ_SIZE: usize = 8 * 1024;

/// Read and not yet taken by the application, above which reading pauses.
const PIPE_LIMIT: usize = 64 * 1024;

/// How long a response may go on after its client closed its side of the connection: what it
/// sent last is still handled (a WebSocket close, a Socket.IO disconnect), then the connection
/// goes.
const LINGER: Duration = Duration::from_secs(1);

/// How long writing may make no progress before the connection is given up: its client
/// stopped reading, and any session it carried was closed by its heartbeat long before.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// actix-http's upgrade service factory: upgrade requests go to the same application as the
/// others ([`SharedApp`]).
pub(super) struct Upgrade<F: ServiceFactory<Request, Config = ()>, B> {
    app: SharedApp<F>,
    /// The application's body type.
    body: PhantomData<fn() -> B>,
}

impl<F: ServiceFactory<Request, Config = ()>, B> Upgrade<F, B> {
    pub(super) fn new(app: SharedApp<F>) -> Self {
        Upgrade {
            app,
            body: PhantomData,
        }
    }
}

impl<F, B> ServiceFactory<(Request, Framed<TcpStream, h1::Codec>)> for Upgrade<F, B>
where
    F: ServiceFactory<Request, Config = ()> + 'static,
    F::InitError: std::fmt::Debug,
    F::Response: Into<Response<B>>,
    F::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Infallible;
    type Config = ();
    type Service = UpgradeService<F::Service, B>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Service, ()>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let app = self.app.service();
        Box::pin(async move {
            app.await.map(|app| UpgradeService {
                app,
                body: PhantomData,
            })
        })
    }
}

/// Serves one upgrade request, then its connection.
pub(super) struct UpgradeService<S, B> {
    app: Rc<S>,
    body: PhantomData<fn() -> B>,
}

impl<S, B> Service<(Request, Framed<TcpStream, h1::Codec>)> for UpgradeService<S, B>
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<(), Infallible>>;

    actix_service::always_ready!();

    fn call(&self, (req, framed): (Request, Framed<TcpStream, h1::Codec>)) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move {
            serve(&*app, req, framed).await;
            Ok(())
        })
    }
}

/// Hands `req` to the application with a payload fed from the connection, writes the
/// response's head, then moves bytes both ways until the response ends.
async fn serve<S, B>(app: &S, req: Request, framed: Framed<TcpStream, h1::Codec>)
where
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    // actix-http's buffers go with `framed`; what the client sent behind the request's head
    // (a first WebSocket frame, say) is the payload's start.
    let parts = framed.into_parts();
    let (io, mut codec) = (parts.io, parts.codec);
    let pipe = Rc::new(RefCell::new(Pipe::default()));
    if !parts.read_buf.is_empty() {
        pipe.borrow_mut().buf.extend_from_slice(&parts.read_buf);
    }
    drop((parts.read_buf, parts.write_buf));
    let (req, _) = req.replace_payload(Payload::from(
        Box::pin(PipeReader(pipe.clone())) as Pin<Box<dyn Stream<Item = _>>>
    ));
    let res = match app.call(req).await {
        Ok(res) => res.into().map_into_boxed_body(),
        Err(err) => err.into(),
    };
    let (mut head, body) = res.into_parts();
    let raw = head.status() == StatusCode::SWITCHING_PROTOCOLS;
    if !raw {
        // The connection is no HTTP connection any more: it ends with this response.
        head.head_mut().set_connection_type(ConnectionType::Close);
    }
    let mut buf = BytesMut::new();
    if let Err(err) = codec.encode(Message::Item((head, body.size())), &mut buf) {
        tracing::debug!(%err, "upgrade response not encoded");
        return;
    }
    Connection::new(io, codec, Some(pipe), Some(body), buf.freeze(), raw).await;
}

/// What the connection read and the application has not taken yet.
#[derive(Default)]
struct Pipe {
    buf: BytesMut,
    /// The client closed its side, or reading failed.
    end: Option<Result<(), PayloadError>>,
    /// The application waits for bytes.
    reader: Option<Waker>,
    /// The connection waits for the application to take bytes.
    writer: Option<Waker>,
}

/// The request's payload: the bytes of the connection.
struct PipeReader(Rc<RefCell<Pipe>>);

impl Stream for PipeReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut pipe = self.0.borrow_mut();
        if !pipe.buf.is_empty() {
            // The whole buffer: the pipe keeps no allocation once its bytes are taken.
            let chunk = std::mem::take(&mut pipe.buf).freeze();
            if let Some(writer) = pipe.writer.take() {
                writer.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        match pipe.end.take() {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(err)) => Poll::Ready(Some(Err(err))),
            None => {
                pipe.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        // The connection stops reading for an application that no longer listens.
        if let Some(writer) = self.0.borrow_mut().writer.take() {
            writer.wake();
        }
    }
}

/// An upgraded connection: bytes from the client go to the pipe, the body's chunks to the
/// client.
struct Connection<T> {
    io: T,
    codec: h1::Codec,
    /// `None` once reading ended (the client closed, or the application dropped the payload).
    pipe: Option<Rc<RefCell<Pipe>>>,
    /// `None` once the body ended.
    body: Option<BoxBody>,
    /// Bytes to write before anything else.
    pending: Bytes,
    /// `pending` is the response's head, not written yet.
    with_head: bool,
    /// The body's chunks go out as they are (`101`); otherwise through the HTTP codec.
    raw: bool,
    /// Started when the client closed its side.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Runs while the socket takes nothing ([`WRITE_STALL`]); kept for the next stall.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// A connection whose response `head` is not written yet; `raw` for a `101`.
    fn new(
        io: T,
        codec: h1::Codec,
        pipe: Option<Rc<RefCell<Pipe>>>,
        body: Option<BoxBody>,
        head: Bytes,
        raw: bool,
    ) -> Self {
        Connection {
            io,
            codec,
            pipe,
            body,
            pending: head,
            with_head: true,
            raw,
            linger: None,
            stall: None,
            stalled: false,
        }
    }

    /// Reads while the pipe has room.
    fn poll_read(&mut self, cx: &mut Context<'_>) {
        let Some(pipe) = &self.pipe else {
            return;
        };
        if Rc::strong_count(pipe) == 1 {
            // The application dropped its payload.
            self.pipe = None;
            return;
        }
        let mut pipe = pipe.borrow_mut();
        loop {
            if pipe.buf.len() >= PIPE_LIMIT {
                pipe.writer = Some(cx.waker().clone());
                return;
            }
            // Uninitialised: zeroing 8 KB on every wake-up would cost more than the read.
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut read = ReadBuf::uninit(&mut stack);
            let end = match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    pipe.buf.extend_from_slice(read.filled());
                    if let Some(reader) = pipe.reader.take() {
                        reader.wake();
                    }
                    continue;
                }
                Poll::Ready(Ok(())) => Ok(()),
                Poll::Ready(Err(err)) => Err(PayloadError::Io(err)),
            };
            pipe.end = Some(end);
            if let Some(reader) = pipe.reader.take() {
                reader.wake();
            }
            break;
        }
        drop(pipe);
        self.pipe = None;
        self.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
    }

    /// Writes what is pending and what the body gives; `Ready` once the connection is done.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.with_head) {
            // The body's first chunk (a WebSocket's open packet, say) joins the response's
            // head: one write, and one wake-up of the client, fewer per connection.
            match self.poll_body(cx) {
                Poll::Ready(Ok(Some(first))) => {
                    let mut joined = BytesMut::with_capacity(self.pending.len() + first.len());
                    joined.extend_from_slice(&self.pending);
                    joined.extend_from_slice(&first);
                    self.pending = joined.freeze();
                }
                Poll::Ready(Ok(None)) | Poll::Pending => {}
                Poll::Ready(Err(())) => return Poll::Ready(()),
            }
        }
        loop {
            while !self.pending.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &self.pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        self.pending.advance(n);
                        self.stalled = false;
                    }
                    Poll::Ready(Err(err)) => {
                        tracing::debug!(%err, "upgraded connection write failed");
                        return Poll::Ready(());
                    }
                    Poll::Pending => return self.poll_stall(cx),
                }
            }
            // Written: the chunk's memory goes back to the body before it is polled, so that
            // its buffer is reused rather than allocated anew for every chunk.
            self.pending = Bytes::new();
            match self.poll_body(cx) {
                Poll::Ready(Ok(Some(next))) => self.pending = next,
                Poll::Ready(Ok(None)) => {
                    return Pin::new(&mut self.io).poll_shutdown(cx).map(|_| ());
                }
                Poll::Ready(Err(())) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Times a write that makes no progress; `Ready` once it has stalled for too long.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::now() + WRITE_STALL;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !std::mem::replace(&mut self.stalled, true) {
            stall.as_mut().reset(deadline);
        }
        if stall.as_mut().poll(cx).is_ready() {
            tracing::debug!("upgraded connection's client stopped reading, closing it");
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// The body's next bytes as they go on the wire (its end included); `None` once the body
    /// has ended, an error when it failed.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ()>> {
        let Some(body) = &mut self.body else {
            return Poll::Ready(Ok(None));
        };
        let chunk = match Pin::new(body).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Some(chunk),
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(%err, "upgraded connection's response failed");
                return Poll::Ready(Err(()));
            }
            Poll::Ready(None) => {
                self.body = None;
                None
            }
            Poll::Pending => return Poll::Pending,
        };
        match chunk {
            Some(chunk) if self.raw => Poll::Ready(Ok(Some(chunk))),
            chunk => {
                let mut buf = BytesMut::new();
                if let Err(err) = self.codec.encode(Message::Chunk(chunk), &mut buf) {
                    tracing::debug!(%err, "response chunk not encoded");
                    return Poll::Ready(Err(()));
                }
                Poll::Ready(Ok(Some(buf.freeze())))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Connection<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.poll_read(cx);
        if this.poll_write(cx).is_ready() {
            return Poll::Ready(());
        }
        match &mut this.linger {
            Some(linger) => linger.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use futures_util::stream;

    use super::*;

    /// A client that records each write the server makes, and sends without end when
    /// `flood` is set (never otherwise).
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flood: bool,
        /// Takes no bytes, as a client that stopped reading once its buffers are full.
        full: bool,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.flood {
                return Poll::Pending;
            }
            buf.put_slice(&vec![b'x'; buf.remaining()]);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.full {
                return Poll::Pending;
            }
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[actix_web::test]
    async fn the_first_chunk_leaves_with_the_head_and_the_rest_as_they_come() {
        let chunks = [Bytes::from_static(b"first"), Bytes::from_static(b"second")];
        let body = BoxBody::new(actix_http::body::BodyStream::new(stream::iter(
            chunks.map(Ok::<_, Infallible>),
        )));
        let head = Bytes::from_static(b"HEAD");
        let mut conn = Connection::new(
            Recorder::default(),
            h1::Codec::default(),
            None,
            Some(body),
            head,
            true,
        );
        std::future::poll_fn(|cx| Pin::new(&mut conn).poll(cx)).await;
        assert_eq!(conn.io.writes, [b"HEADfirst".to_vec(), b"second".to_vec()]);
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[actix_web::test]
    async fn a_client_that_floods_is_read_only_as_fast_as_the_application_takes() {
        let pipe = Rc::new(RefCell::new(Pipe::default()));
        let mut reader = PipeReader(pipe.clone());
        let client = Recorder {
            flood: true,
            ..Recorder::default()
        };
        let mut conn = Connection::new(
            client,
            h1::Codec::default(),
            Some(pipe.clone()),
            None,
            Bytes::new(),
            true,
        );
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        conn.poll_read(&mut cx);
        let unread = pipe.borrow().buf.len();
        assert!(
            (PIPE_LIMIT..PIPE_LIMIT + READ_SIZE).contains(&unread),
            "{unread} bytes buffered"
        );
        // The application takes them: the connection is woken to read on.
        let Poll::Ready(Some(Ok(chunk))) = Pin::new(&mut reader).poll_next(&mut cx) else {
            panic!("nothing to take");
        };
        assert_eq!(chunk.len(), unread);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        conn.poll_read(&mut cx);
        assert!(pipe.borrow().buf.len() >= PIPE_LIMIT);
        // An application that drops its payload is not read for.
        drop((reader, pipe));
        conn.poll_read(&mut cx);
        assert!(conn.pipe.is_none());
    }

    #[actix_web::test]
    async fn a_client_that_takes_nothing_for_a_minute_is_let_go() {
        tokio::time::pause();
        let client = Recorder {
            full: true,
            ..Recorder::default()
        };
        let (body, head) = (BoxBody::new(()), Bytes::from_static(b"unsent"));
        let mut conn = Connection::new(client, h1::Codec::default(), None, Some(body), head, true);
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag);
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut conn).poll(&mut cx).is_pending());
        tokio::time::advance(WRITE_STALL - Duration::from_secs(1)).await;
        assert!(
            Pin::new(&mut conn).poll(&mut cx).is_pending(),
            "let go before the stall limit"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            Pin::new(&mut conn).poll(&mut cx).is_ready(),
            "still held after the stall limit"
        );
    }
}
