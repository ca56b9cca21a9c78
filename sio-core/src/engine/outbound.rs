//! The outgoing half of a WebSocket accepted on this node: the response body that actix-http
//! writes to the connection takes the session's frames from the session's queue itself, and
//! the session's loop writes the rest (the open packet, probe answers, pongs, the close frame)
//! into the same buffer. The body also runs that loop, in the connection's task
//! ([`OutboundBody::driving`]): what the client sends is read, handled and answered in the
//! poll of the task that read it from the socket, with no other task between.
//!
//! actix-ws's `Session` sends each message through a bounded channel to its response body,
//! which encodes it into a fresh buffer: per frame, a wake of the session task, a channel send
//! and receive, a semaphore permit and an allocation (callgrind, `bench/profile`: a broadcast
//! delivery took 6,732 instructions that way, 3,026 this way). Here a frame queued for the
//! client wakes only the connection's own task, which encodes it into a buffer whose memory
//! comes back once actix-http has written the chunk; frames queued while that task was busy
//! leave as one chunk, and frames stay in the session's queue (counted against
//! `max_buffer_size`) until actix-http has room for them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use actix_codec::Encoder as _;
use actix_http::ws::{Codec, Message};
use actix_web::body::{BodySize, MessageBody};
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::packet::Frame;
use super::socket::{Protocol, Socket};
use super::websocket::{Gone, on_the_wire};

/// Encoded bytes the body has not taken yet, above which writers wait: the session's queue
/// (bounded by `max_buffer_size`) holds what a slow client has not read, not this buffer.
const HIGH_WATER: usize = 64 * 1024;

/// The session's side: writes WebSocket messages for the body to send.
pub(super) struct Outbound {
    shared: Arc<Shared>,
}

/// The connection's side: the response body of the WebSocket handshake.
pub(super) struct OutboundBody {
    shared: Arc<Shared>,
    /// The session's loop (reading the client, closing), run inside the connection's task:
    /// as a task of its own it was queued behind every connection woken before it, once per
    /// message the client sent (with a broadcast to 10k sockets under way, for most of it).
    session: Option<Session>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes writers waiting for room (and tells them the body is gone).
    room: Notify,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    codec: Codec,
    /// A close frame is written: nothing more is, and the body ends once it is sent.
    closing: bool,
    /// The body was dropped: the connection is gone.
    gone: bool,
    body_waker: Option<Waker>,
    /// The session whose queue the body drains, once attached.
    source: Option<Arc<dyn Source>>,
}

/// A session's queue, seen from the body: [`Socket`] with its per-session state erased.
trait Source: Send + Sync {
    fn poll_pop(&self, body: Option<&Waker>) -> Option<Frame>;
    fn protocol(&self) -> Protocol;
}

impl<D: Send + Sync> Source for Socket<D> {
    fn poll_pop(&self, body: Option<&Waker>) -> Option<Frame> {
        Socket::poll_pop(self, body)
    }

    fn protocol(&self) -> Protocol {
        Socket::protocol(self)
    }
}

impl State {
    /// Encodes frames from the attached session's queue until `limit` bytes are buffered;
    /// `body` is woken by the next frame when the queue runs dry.
    fn fill(&mut self, body: Option<&Waker>, limit: usize) {
        let State {
            buf,
            codec,
            source: Some(source),
            ..
        } = self
        else {
            return;
        };
        while buf.len() < limit {
            let Some(frame) = source.poll_pop(body) else {
                break;
            };
            // Text and binary messages always encode.
            let _ = codec.encode(message(frame, source.protocol()), buf);
        }
    }
}

/// An Engine.IO frame as the WebSocket message that carries it.
pub(super) fn message(frame: Frame, protocol: Protocol) -> Message {
    match on_the_wire(frame, protocol) {
        Frame::Text(text) => Message::Text(text),
        Frame::Binary(data) => Message::Binary(data),
    }
}

/// A writer and the body it writes into.
pub(super) fn channel() -> (Outbound, OutboundBody) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        room: Notify::new(),
    });
    let body = OutboundBody {
        shared: shared.clone(),
        session: None,
    };
    (Outbound { shared }, body)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes a body waiting for bytes (after the lock is released).
fn wake_body(mut state: MutexGuard<'_, State>) {
    let waker = state.body_waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Outbound {
    /// From now on the body takes `socket`'s frames from its queue; what was written before
    /// goes first.
    pub(super) fn attach<D: Send + Sync + 'static>(&self, socket: &Arc<Socket<D>>) {
        let mut state = self.shared.lock();
        state.source = Some(socket.clone());
        wake_body(state);
    }

    /// Writes `message` once the body has room for it; `Gone` once the connection is, or
    /// after a close frame.
    pub(super) async fn write(&self, message: Message) -> Result<(), Gone> {
        let is_close = matches!(message, Message::Close(_));
        loop {
            let room = self.shared.room.notified();
            {
                let state = self.shared.lock();
                if state.gone || state.closing || state.buf.len() < HIGH_WATER || is_close {
                    return encode(state, message);
                }
            }
            room.await;
        }
    }

    /// Writes `message` at once, however much is buffered: the open packet, written before
    /// the handshake response leaves, so that actix-http sends both in one write.
    pub(super) fn write_now(&self, message: Message) -> Result<(), Gone> {
        encode(self.shared.lock(), message)
    }
}

/// Encodes `message` into the buffer and wakes the body; `Gone` once the connection is, or
/// after a close frame.
fn encode(mut state: MutexGuard<'_, State>, message: Message) -> Result<(), Gone> {
    if state.gone || state.closing {
        return Err(Gone);
    }
    let is_close = matches!(message, Message::Close(_));
    if is_close {
        // Whatever the session queued before it closed goes out first.
        state.fill(None, usize::MAX);
    }
    let State { buf, codec, .. } = &mut *state;
    // The server-side codec only fails on a frame it cannot size, which `max_payload` (far
    // below u64) rules out; drop the connection then.
    if codec.encode(message, buf).is_err() {
        state.closing = true;
    }
    state.closing |= is_close;
    wake_body(state);
    Ok(())
}

impl OutboundBody {
    /// Runs `session` in the connection's task, in the body's polls that follow its
    /// wake-ups: a message from the client is handled (and what it makes the session send is
    /// written) in the poll that read it. Dropped with the body when the connection goes away.
    pub(super) fn driving(mut self, session: impl Future<Output = ()> + 'static) -> Self {
        let wake = Arc::new(SessionWake {
            woken: AtomicBool::new(true),
            body: AtomicWaker::new(),
        });
        self.session = Some(Session {
            future: Box::pin(session),
            waker: Waker::from(wake.clone()),
            wake,
        });
        self
    }
}

/// A session's loop, polled by the body only after something woke it: the body is polled for
/// every frame sent, and polling the loop each time cost 1,350 instructions per broadcast
/// delivery (callgrind).
struct Session {
    future: Pin<Box<dyn Future<Output = ()>>>,
    wake: Arc<SessionWake>,
    /// `wake` as a waker, made once.
    waker: Waker,
}

impl Session {
    /// Polls the loop if it was woken; whether it has ended.
    fn poll(&mut self, body: &Waker) -> bool {
        if !self.wake.woken.swap(false, Ordering::AcqRel) {
            return false;
        }
        // Registered when the loop is polled only: the body is always polled by the same
        // task (its connection's), so the waker registered last is still the one to wake.
        self.wake.body.register(body);
        let mut cx = Context::from_waker(&self.waker);
        self.future.as_mut().poll(&mut cx).is_ready()
    }
}

/// What the session's loop wakes: a flag for the body to see, and the body's task.
struct SessionWake {
    woken: AtomicBool,
    body: AtomicWaker,
}

impl Wake for SessionWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.body.wake();
    }
}

impl MessageBody for OutboundBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        // Before the lock: the session writes through it.
        if let Some(session) = &mut this.session
            && session.poll(cx.waker())
        {
            this.session = None;
        }
        let mut state = this.shared.lock();
        if !state.closing {
            state.fill(Some(cx.waker()), HIGH_WATER);
        }
        if !state.buf.is_empty() {
            // `split` leaves the buffer's spare capacity here; once actix-http has copied the
            // chunk out and dropped it, the next write reuses the whole allocation.
            let chunk = state.buf.split().freeze();
            drop(state);
            this.shared.room.notify_waiters();
            return Poll::Ready(Some(Ok(chunk)));
        }
        if state.closing {
            return Poll::Ready(None);
        }
        if !state
            .body_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            state.body_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for OutboundBody {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.gone = true;
        // What was not sent will not be; let it go now rather than with the last writer.
        state.buf = BytesMut::new();
        state.body_waker = None;
        state.source = None;
        drop(state);
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    use actix_codec::Decoder as _;
    use actix_http::ws::{CloseCode, CloseReason, Frame};
    use bytestring::ByteString;

    use super::*;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn body() -> (Outbound, Pin<Box<OutboundBody>>) {
        let (out, body) = channel();
        (out, Box::pin(body))
    }

    async fn next(body: &mut Pin<Box<OutboundBody>>) -> Option<Bytes> {
        poll_fn(|cx| body.as_mut().poll_next(cx))
            .await
            .map(|chunk| chunk.unwrap_or_else(|never| match never {}))
    }

    /// The frames in `chunk`, as a client decodes them.
    fn frames(chunk: &[u8]) -> Vec<Frame> {
        let mut codec = Codec::new().client_mode().max_size(1 << 20);
        let mut buf = BytesMut::from(chunk);
        let mut out = Vec::new();
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            out.push(frame);
        }
        assert!(buf.is_empty(), "a partial frame is left");
        out
    }

    #[tokio::test]
    async fn frames_written_before_a_poll_leave_as_one_chunk_in_order() {
        let (out, mut body) = body();
        out.write(Message::Text(ByteString::from_static("40")))
            .await
            .unwrap();
        out.write(Message::Binary(Bytes::from_static(b"\x01\x02")))
            .await
            .unwrap();
        let chunk = next(&mut body).await.unwrap();
        let frames = frames(&chunk);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], Frame::Text(t) if &t[..] == b"40"));
        assert!(matches!(&frames[1], Frame::Binary(b) if &b[..] == b"\x01\x02"));
    }

    #[tokio::test]
    async fn a_waiting_body_wakes_on_a_write() {
        let (out, mut body) = body();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(body.as_mut().poll_next(&mut cx).is_pending());
        out.write(Message::Text(ByteString::from_static("2")))
            .await
            .unwrap();
        assert!(flag.0.load(Ordering::SeqCst), "the body was not woken");
        let Poll::Ready(Some(Ok(chunk))) = body.as_mut().poll_next(&mut cx) else {
            panic!("no chunk after the wake");
        };
        assert!(matches!(&frames(&chunk)[..], [Frame::Text(t)] if &t[..] == b"2"));
    }

    #[tokio::test]
    async fn a_close_frame_is_the_last_one_and_ends_the_body() {
        let (out, mut body) = body();
        let reason = CloseReason {
            code: CloseCode::Size,
            description: None,
        };
        out.write(Message::Close(Some(reason))).await.unwrap();
        assert!(out.write(Message::Text("late".into())).await.is_err());
        let chunk = next(&mut body).await.unwrap();
        assert!(matches!(
            &frames(&chunk)[..],
            [Frame::Close(Some(CloseReason {
                code: CloseCode::Size,
                ..
            }))]
        ));
        assert!(next(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn an_attached_body_sends_the_queue_after_what_was_written_before() {
        let (out, mut body) = body();
        let socket = Arc::new(Socket::for_test(1 << 20, Protocol::V4));
        socket.send_text("queued").unwrap();
        out.write(Message::Text("0open".into())).await.unwrap();
        out.attach(&socket);
        let chunk = next(&mut body).await.unwrap();
        assert!(matches!(
            &frames(&chunk)[..],
            [Frame::Text(a), Frame::Text(b)] if &a[..] == b"0open" && &b[..] == b"4queued"
        ));
        // An empty queue leaves the body waiting for the socket's next frame.
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert!(
            body.as_mut()
                .poll_next(&mut Context::from_waker(&waker))
                .is_pending()
        );
        socket.send_binary(Bytes::from_static(b"\x07")).unwrap();
        assert!(
            flag.0.load(Ordering::SeqCst),
            "a queued frame did not wake the body"
        );
        let chunk = next(&mut body).await.unwrap();
        assert!(matches!(&frames(&chunk)[..], [Frame::Binary(b)] if &b[..] == b"\x07"));
    }

    #[tokio::test]
    async fn the_close_frame_follows_everything_the_session_queued() {
        let (out, mut body) = body();
        let socket = Arc::new(Socket::for_test(1 << 20, Protocol::V3 { binary: true }));
        out.attach(&socket);
        socket.send_binary(Bytes::from_static(b"\x01")).unwrap();
        socket.close(crate::engine::CloseReason::ForcedClose);
        out.write(Message::Close(None)).await.unwrap();
        let chunk = next(&mut body).await.unwrap();
        // v3 binary frames carry their packet type; the close packet `1` precedes the frame.
        assert!(matches!(
            &frames(&chunk)[..],
            [Frame::Binary(b), Frame::Text(close), Frame::Close(None)]
                if &b[..] == b"\x04\x01" && &close[..] == b"1"
        ));
        assert!(next(&mut body).await.is_none());
        assert!(socket.pop().is_none());
    }

    #[tokio::test]
    async fn writers_wait_above_the_high_water_mark_until_the_body_takes() {
        let (out, mut body) = body();
        let big = Bytes::from(vec![0u8; HIGH_WATER]);
        out.write(Message::Binary(big.clone())).await.unwrap();
        let out = Arc::new(out);
        let writer = tokio::spawn({
            let out = out.clone();
            async move { out.write(Message::Binary(big)).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !writer.is_finished(),
            "the writer went past the high-water mark"
        );
        let first = next(&mut body).await.unwrap();
        assert_eq!(frames(&first).len(), 1);
        writer.await.unwrap().unwrap();
        assert_eq!(frames(&next(&mut body).await.unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn a_dropped_body_fails_waiting_and_later_writes() {
        let (out, body) = body();
        out.write(Message::Binary(Bytes::from(vec![0u8; HIGH_WATER])))
            .await
            .unwrap();
        let out = Arc::new(out);
        let writer = tokio::spawn({
            let out = out.clone();
            async move { out.write(Message::Text("x".into())).await }
        });
        tokio::task::yield_now().await;
        drop(body);
        assert!(writer.await.unwrap().is_err());
        assert!(out.write(Message::Text("y".into())).await.is_err());
    }

    #[tokio::test]
    async fn the_session_loop_runs_in_the_body_only_after_a_wake() {
        let (out, body) = channel();
        let polls = Arc::new(AtomicUsize::new(0));
        let go: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
        let (counted, gate) = (polls.clone(), go.clone());
        let mut body = Box::pin(body.driving(async move {
            // Counts every poll of the loop; ready once `go` is set.
            poll_fn(|cx| {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut gate = gate.lock().unwrap();
                if gate.0 {
                    return Poll::Ready(());
                }
                gate.1 = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            let _ = out
                .write(Message::Text(ByteString::from_static("done")))
                .await;
        }));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        // The body is polled for every frame sent; the loop only when something woke it.
        for _ in 0..3 {
            assert!(body.as_mut().poll_next(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        let loop_waker = {
            let mut gate = go.lock().unwrap();
            gate.0 = true;
            gate.1.take().unwrap()
        };
        loop_waker.wake();
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the loop's wake did not reach the body"
        );
        // What the loop writes when it runs leaves in the same poll.
        let Poll::Ready(Some(Ok(chunk))) = body.as_mut().poll_next(&mut cx) else {
            panic!("the woken loop wrote nothing");
        };
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(matches!(&frames(&chunk)[..], [Frame::Text(t)] if &t[..] == b"done"));
    }
}
