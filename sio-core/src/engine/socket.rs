//! One Engine.IO session: its transport state, its outbound queue and how it closes.
//!
//! A session is shared (`Arc`) between the request handlers of whichever actix-web workers its
//! requests land on, its WebSocket task and its heartbeat task, so everything here is `Sync`
//! and every wait is on a `Notify` or a cancellation token, never on a worker-local channel.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::SystemTime;

use tokio::time::Instant;

use actix_web::HttpRequest;
use actix_web::http::{Method, Uri};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::headers::{Headers, header_text};
use super::packet::{Frame, Packet, encode};
use super::sid::Sid;

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    Websocket,
}

impl TransportKind {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::Websocket => "websocket",
        }
    }
}

/// The Engine.IO protocol revision of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Engine.IO v3 (`EIO=3`, socket.io-client 2.x), accepted with `allow_eio3`. `binary`:
    /// the client takes binary polling bodies (it did not ask for `b64=1`).
    V3 {
        /// Whether polling payloads may be binary.
        binary: bool,
    },
    /// Engine.IO v4.
    V4,
}

/// Why a session closed, named as Node's engine.io names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the session (close packet, WebSocket close, connection lost).
    TransportClose,
    /// The transport failed: an I/O error, overlapping polls, a body over `max_payload`.
    TransportError,
    /// The client did not answer a ping within `ping_timeout`.
    PingTimeout,
    /// The client sent bytes that are not Engine.IO packets.
    ParseError,
    /// The session's outbound queue grew past `max_buffer_size`.
    BufferFull,
    /// The server closed the session ([`Socket::close`]).
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// The reason as Node's engine.io writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::BufferFull => "buffer full",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }

    /// Whether the server chose to close: what it queued before still reaches the client (on
    /// polling, the next poll carries it), as Node drains its buffer first. A failed
    /// transport drops what was queued.
    pub(crate) fn flushes(self) -> bool {
        matches!(self, CloseReason::ForcedClose | CloseReason::ServerShutdown)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// The client reads slower than the server writes: the outbound queue holds
    /// `max_buffer_size` bytes already. The session is closed with [`CloseReason::BufferFull`].
    #[error("the session's outbound buffer is full")]
    BufferFull,
}

/// What the handshake request looked like (Socket.IO exposes it as `socket.handshake`).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request's method.
    pub method: Method,
    /// The request's URI, with its query string.
    pub uri: Uri,
    /// The request's headers, read with [`RequestInfo::headers`] and [`RequestInfo::header`].
    headers: Headers,
    /// The peer's address, when the connection has one.
    pub peer_addr: Option<SocketAddr>,
    /// When the handshake arrived.
    pub issued: SystemTime,
}

impl RequestInfo {
    /// Every header of the handshake request as (lowercase name, raw value), in the request's
    /// order; a repeated header appears once per value.
    ///
    /// ```
    /// # fn f(socket: sio_core::SocketRef) {
    /// for (name, value) in socket.request().headers() {
    ///     println!("{name}: {}", String::from_utf8_lossy(value));
    /// }
    /// # }
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter()
    }

    /// The first value of the handshake request's header `name` (any case), as text; `None`
    /// when it is absent or not visible ASCII.
    ///
    /// ```
    /// # fn f(socket: sio_core::SocketRef) {
    /// let agent = socket.request().header("user-agent").unwrap_or("unknown");
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(header_text)
    }

    /// Whether the handshake request has the header `name` (any case).
    ///
    /// ```
    /// # fn f(socket: sio_core::SocketRef) {
    /// let cross_origin = socket.request().has_header("origin");
    /// # }
    /// ```
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.get(name).is_some()
    }

    pub(crate) fn new(req: &HttpRequest) -> Self {
        RequestInfo {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: Headers::new(req.headers()),
            peer_addr: req.peer_addr(),
            issued: SystemTime::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// What the frames in `frames` cost: their payload bytes plus [`FRAME_OVERHEAD`] each
    /// (see [`queued_size`]).
    bytes: usize,
    /// The body of a local WebSocket waiting in [`Socket::poll_pop`] for a frame.
    body: Option<Waker>,
}

/// What an engine's sessions received and sent, in Engine.IO packets and payload bytes
/// (control packets included).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) packets_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Traffic {
    pub(crate) fn received(&self, bytes: usize) {
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One Engine.IO session. `D` is the state the layer above keeps per session.
pub struct Socket<D> {
    sid: Sid,
    traffic: Arc<Traffic>,
    transport: AtomicU8,
    /// A WebSocket claimed the upgrade of this session (one at a time).
    probing: AtomicBool,
    /// The probe was answered: polls answer with a noop until the upgrade completes or fails.
    upgrading: AtomicBool,
    queue: Mutex<Queue>,
    /// Signals the one reader of `queue` that there is something to look at.
    wake: Notify,
    /// Held by whoever reads the queue: a pending polling GET or the WebSocket writer. A second
    /// GET that finds it taken is a duplicate poll.
    pub(crate) reader: tokio::sync::Mutex<()>,
    /// Held by a polling POST while it is read; an overlapping POST is a protocol error.
    pub(crate) writer: tokio::sync::Mutex<()>,
    closed: CancellationToken,
    close_reason: OnceLock<CloseReason>,
    /// A poll has answered the client's own close (see [`Socket::deliver_close`]).
    close_delivered: AtomicBool,
    close_delivery: Notify,
    pong: Notify,
    pong_received: AtomicBool,
    created: Instant,
    /// When the pong of the last ping is due, in milliseconds after `created`; 0 when none is.
    pong_due_ms: AtomicU64,
    max_buffer_size: usize,
    request: RequestInfo,
    protocol: Protocol,
    /// The upper layer's per-session state.
    pub data: D,
}

impl<D> fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("sid", &self.sid)
            .field("transport", &self.transport())
            .field("closed", &self.close_reason.get())
            .finish_non_exhaustive()
    }
}

impl<D> Socket<D> {
    pub(crate) fn new(
        sid: Sid,
        transport: TransportKind,
        max_buffer_size: usize,
        request: RequestInfo,
        protocol: Protocol,
        data: D,
        traffic: Arc<Traffic>,
    ) -> Self {
        Socket {
            sid,
            traffic,
            transport: AtomicU8::new(transport as u8),
            probing: AtomicBool::new(false),
            upgrading: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            reader: tokio::sync::Mutex::new(()),
            writer: tokio::sync::Mutex::new(()),
            closed: CancellationToken::new(),
            close_reason: OnceLock::new(),
            close_delivered: AtomicBool::new(false),
            close_delivery: Notify::new(),
            pong: Notify::new(),
            pong_received: AtomicBool::new(false),
            created: Instant::now(),
            pong_due_ms: AtomicU64::new(0),
            max_buffer_size,
            request,
            protocol,
            data,
        }
    }

    /// The Engine.IO protocol revision the client speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The transport the session uses now.
    pub fn transport(&self) -> TransportKind {
        if self.transport.load(Ordering::Acquire) == TransportKind::Websocket as u8 {
            TransportKind::Websocket
        } else {
            TransportKind::Polling
        }
    }

    /// The handshake request.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// Queues a frame for the client. Frames leave in the order they were queued.
    ///
    /// ```no_run
    /// # fn f(socket: &sio_core::engine::Socket<()>) {
    /// use sio_core::engine::Frame;
    /// let _ = socket.send(Frame::message("hello"));
    /// # }
    /// ```
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all([frame])
    }

    /// Queues several frames at once: no frame of another sender can come between them (a
    /// Socket.IO packet and its binary attachments must arrive together).
    pub fn send_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let mut queue = self.lock_queue();
        let (mut added, mut pushed) = (0, 0);
        for frame in frames {
            added += queued_size(&frame);
            if queue.bytes + added > self.max_buffer_size {
                // Take back the frames of this call that were already queued.
                let kept = queue.frames.len().saturating_sub(pushed);
                queue.frames.truncate(kept);
                drop(queue);
                tracing::warn!("outbound buffer full, closing a session");
                tracing::debug!(sid = %self.sid, "outbound buffer full");
                self.close(CloseReason::BufferFull);
                return Err(SendError::BufferFull);
            }
            queue.frames.push_back(frame);
            pushed += 1;
        }
        queue.bytes += added;
        self.wake_reader(queue);
        Ok(())
    }

    /// Whether a frame sent now would leave at once: the session is open and nothing waits in
    /// its queue. Volatile emits are dropped when it is not.
    pub fn is_writable(&self) -> bool {
        !self.is_closed() && self.lock_queue().frames.is_empty()
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(Frame::message(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: Bytes) -> Result<(), SendError> {
        self.send(Frame::Binary(data))
    }

    /// Queues a control packet (a ping, a v3 pong). It counts against `max_buffer_size` like
    /// any frame: a client that makes the server queue them without reading (a v3 ping flood
    /// over polling) fills its own buffer and loses its session, not the node's memory.
    pub(crate) fn send_control(&self, packet: &Packet) {
        // A closed or full session has nothing more to hear.
        let _ = self.send(encode(packet));
    }

    /// Wakes the queue's reader after a change: a WebSocket body waiting in `poll_pop`, or
    /// else whoever waits in [`Socket::woken`].
    fn wake_reader(&self, mut queue: MutexGuard<'_, Queue>) {
        let body = queue.body.take();
        drop(queue);
        match body {
            Some(body) => body.wake(),
            None => self.wake.notify_one(),
        }
    }

    /// Takes queued frames, up to `max_bytes` of polling payload (but at least one frame).
    pub(crate) fn drain(&self, max_bytes: usize) -> Vec<Frame> {
        let out = self.take(max_bytes);
        self.count_out(out.len(), out.iter().map(Frame::payload_len).sum());
        out
    }

    /// Takes the frame at the head of the queue: the WebSocket writer's way, one frame at a
    /// time with no batch to allocate.
    pub(crate) fn pop(&self) -> Option<Frame> {
        self.poll_pop(None)
    }

    /// [`Socket::pop`] for a WebSocket body that reads the queue itself: when the queue is
    /// empty, `body` is woken by the next frame (or close).
    pub(crate) fn poll_pop(&self, body: Option<&Waker>) -> Option<Frame> {
        let frame = {
            let mut queue = self.lock_queue();
            let Some(frame) = queue.frames.pop_front() else {
                if let Some(body) = body
                    && !queue.body.as_ref().is_some_and(|w| w.will_wake(body))
                {
                    queue.body = Some(body.clone());
                }
                return None;
            };
            queue.bytes -= queued_size(&frame);
            frame
        };
        self.count_out(1, frame.payload_len());
        Some(frame)
    }

    /// Counts frames that left the queue for the client.
    fn count_out(&self, packets: usize, bytes: usize) {
        self.traffic
            .packets_out
            .fetch_add(packets as u64, Ordering::Relaxed);
        self.traffic
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn take(&self, max_bytes: usize) -> Vec<Frame> {
        let mut queue = self.lock_queue();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(front) = queue.frames.front() {
            let (len, cost) = (front.payload_len(), queued_size(front));
            // Frames after the first one take a separator too.
            let needed = if out.is_empty() { len } else { len + 1 };
            if !out.is_empty() && bytes + needed > max_bytes {
                break;
            }
            bytes += needed;
            queue.bytes -= cost;
            if let Some(frame) = queue.frames.pop_front() {
                out.push(frame);
            }
        }
        out
    }

    /// Waits until the queue may have changed (a frame, a close, an upgrade step).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Closes the session. The client gets a close packet (unless it asked for the close
    /// itself); the layer above hears of it once, with the first reason given.
    pub fn close(&self, reason: CloseReason) {
        if self.close_reason.set(reason).is_err() {
            return;
        }
        let mut queue = self.lock_queue();
        if reason == CloseReason::BufferFull {
            // A client that fell this far behind gets none of it: the memory goes now, not
            // when its connection does (one that never reads may hold on for minutes).
            queue.frames = VecDeque::new();
            queue.bytes = 0;
        }
        if reason != CloseReason::TransportClose {
            push(&mut queue, encode(&Packet::Close));
        }
        self.closed.cancel();
        self.wake_reader(queue);
    }

    /// Whether the session is closed (or closing).
    pub fn is_closed(&self) -> bool {
        // An atomic load: `CancellationToken::is_cancelled` takes a mutex, and every frame
        // sent asks (perf: 5% of a 10k-socket fan-out's CPU).
        self.close_reason.get().is_some()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.get().copied()
    }

    /// Resolves when the session closes.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Claims the upgrade for one WebSocket; `false` if another one holds it.
    pub(crate) fn claim_upgrade(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// Gives up an upgrade that did not complete; polling goes on.
    pub(crate) fn abandon_upgrade(&self) {
        self.probing.store(false, Ordering::Release);
        self.set_upgrading(false);
    }

    /// Whether this poll is the one that answers the client's own close packet (with a noop).
    /// A polling client may send its close while no poll is pending and poll again right
    /// after, on another connection: like Node's polling transport, the session waits for that
    /// poll (see [`Socket::close_delivered`]) instead of answering it "Session ID unknown".
    pub(crate) fn deliver_close(&self) -> bool {
        let first = self.close_reason() == Some(CloseReason::TransportClose)
            && !self.close_delivered.swap(true, Ordering::AcqRel);
        self.close_delivery.notify_one();
        first
    }

    /// Records that a poll carried the last frames of a closed session (the close packet
    /// among them), so the session may go.
    pub(crate) fn mark_close_delivered(&self) {
        self.close_delivered.store(true, Ordering::Release);
        self.close_delivery.notify_one();
    }

    /// Puts a drained frame back at the head of the queue, for the next poll.
    pub(crate) fn requeue(&self, frame: Frame) {
        let mut queue = self.lock_queue();
        queue.bytes += queued_size(&frame);
        queue.frames.push_front(frame);
        // A poll may be waiting already: it takes the frame now, not with the next one.
        self.wake_reader(queue);
    }

    /// Whether frames wait for the client.
    pub(crate) fn has_queued(&self) -> bool {
        !self.lock_queue().frames.is_empty()
    }

    /// Resolves once a poll has answered the close (the client's own, or the server's with the
    /// frames queued before it).
    pub(crate) async fn close_delivered(&self) {
        while !self.close_delivered.load(Ordering::Acquire) {
            self.close_delivery.notified().await;
        }
    }

    pub(crate) fn is_upgrading(&self) -> bool {
        self.upgrading.load(Ordering::Acquire)
    }

    /// Marks the start (probe answered) or the abandonment of an upgrade; a pending poll is
    /// woken so that it can answer with a noop.
    pub(crate) fn set_upgrading(&self, upgrading: bool) {
        self.upgrading.store(upgrading, Ordering::Release);
        self.wake.notify_one();
    }

    /// Completes an upgrade: from now on only the WebSocket carries this session.
    pub(crate) fn set_websocket(&self) {
        self.transport
            .store(TransportKind::Websocket as u8, Ordering::Release);
        self.upgrading.store(false, Ordering::Release);
        self.wake.notify_one();
    }

    /// Records a pong from the client.
    pub(crate) fn on_pong(&self) {
        self.pong_due_ms.store(0, Ordering::Release);
        self.pong_received.store(true, Ordering::Release);
        self.pong.notify_one();
    }

    /// Sends a ping and waits for its pong; `false` if none came by `due`. `due` counts from
    /// when the ping was scheduled, not from when a busy timer got round to sending it, so the
    /// session closes exactly `ping_interval + ping_timeout` after the handshake or last pong.
    pub(crate) async fn ping(&self, due: Instant) -> bool {
        self.send_control(&Packet::Ping);
        self.heard_by(due).await
    }

    /// Waits for the client to show it is alive (a pong in v4, a ping in v3) by `due`.
    pub(crate) async fn heard_by(&self, due: Instant) -> bool {
        self.pong_received.store(false, Ordering::Release);
        let due_ms = due.saturating_duration_since(self.created).as_millis();
        let due_ms = u64::try_from(due_ms).unwrap_or(u64::MAX).max(1);
        self.pong_due_ms.store(due_ms, Ordering::Release);
        tokio::time::timeout_at(due, async {
            while !self.pong_received.load(Ordering::Acquire) {
                self.pong.notified().await;
            }
        })
        .await
        .is_ok()
    }

    /// Whether the pong of the last ping is overdue. Requests check this themselves rather than
    /// trusting the heartbeat timer to have fired first: a client that polls the moment its
    /// ping timeout ends must find the session closed.
    pub(crate) fn pong_overdue(&self) -> bool {
        let due = self.pong_due_ms.load(Ordering::Acquire);
        due != 0 && self.created.elapsed().as_millis() >= u128::from(due)
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is left consistent at every await-free step, so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn push(queue: &mut Queue, frame: Frame) {
    queue.bytes += queued_size(&frame);
    queue.frames.push_back(frame);
}

/// What a queued frame is counted as against `max_buffer_size`: its payload and the frame
/// itself. Counting payload bytes alone let a flood of one-byte frames (pongs, empty events)
/// hold about 20 times the limit in memory before the limit was reached.
const FRAME_OVERHEAD: usize = std::mem::size_of::<Frame>();

fn queued_size(frame: &Frame) -> usize {
    frame.payload_len() + FRAME_OVERHEAD
}

#[cfg(test)]
impl Socket<()> {
    /// A polling session of a test request.
    pub(crate) fn for_test(max_buffer_size: usize, protocol: Protocol) -> Self {
        let req = actix_web::test::TestRequest::default().to_http_request();
        Socket::new(
            Sid::new(0),
            TransportKind::Polling,
            max_buffer_size,
            RequestInfo::new(&req),
            protocol,
            (),
            Arc::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(max_buffer_size: usize) -> Socket<()> {
        Socket::for_test(max_buffer_size, Protocol::V4)
    }

    #[test]
    fn drains_in_order_within_the_payload_limit() {
        let s = socket(1 << 20);
        s.send_text("a").unwrap();
        s.send_text("bb").unwrap();
        s.send_text("ccc").unwrap();
        // "4a" + separator + "4bb" fits in 6 bytes; "4ccc" does not.
        assert_eq!(s.drain(6), vec![Frame::message("a"), Frame::message("bb")]);
        // At least one frame, even over the limit.
        assert_eq!(s.drain(1), vec![Frame::message("ccc")]);
        assert!(s.drain(100).is_empty());
    }

    /// Room for `n` one-character messages.
    fn room_for(n: usize) -> usize {
        n * queued_size(&Frame::message("a"))
    }

    #[test]
    fn pops_in_order_and_frees_the_buffer() {
        let s = socket(room_for(2));
        s.send_text("a").unwrap();
        s.send_text("b").unwrap();
        // The queue is full: a third frame would not fit until one leaves.
        assert_eq!(s.pop(), Some(Frame::message("a")));
        s.send_text("c").unwrap();
        assert_eq!(s.pop(), Some(Frame::message("b")));
        assert_eq!(s.pop(), Some(Frame::message("c")));
        assert_eq!(s.pop(), None);
    }

    #[test]
    fn writable_only_when_nothing_waits() {
        let s = socket(100);
        assert!(s.is_writable());
        s.send_text("a").unwrap();
        assert!(!s.is_writable());
        s.drain(100);
        assert!(s.is_writable());
        s.close(CloseReason::TransportClose);
        assert!(!s.is_writable());
    }

    #[test]
    fn a_full_buffer_closes_the_session() {
        let s = socket(room_for(1) + 2);
        s.send_text("abc").unwrap();
        assert_eq!(s.send_text("d"), Err(SendError::BufferFull));
        assert_eq!(s.close_reason(), Some(CloseReason::BufferFull));
        assert_eq!(s.send_text("e"), Err(SendError::Closed));
        // What it had not read is dropped: only the close packet is left for it.
        assert_eq!(s.pop(), Some(encode(&Packet::Close)));
        assert_eq!(s.pop(), None);
    }

    #[test]
    fn close_queues_a_close_packet_unless_the_client_closed() {
        let s = socket(100);
        s.close(CloseReason::ForcedClose);
        s.close(CloseReason::PingTimeout);
        assert_eq!(s.close_reason(), Some(CloseReason::ForcedClose));
        assert_eq!(s.drain(100), vec![Frame::Text("1".into())]);
        let s = socket(100);
        s.close(CloseReason::TransportClose);
        assert!(s.drain(100).is_empty());
    }

    #[tokio::test]
    async fn ping_waits_for_the_pong() {
        let s = socket(100);
        let soon = Instant::now() + std::time::Duration::from_millis(50);
        assert!(!s.ping(soon).await);
        assert!(s.pong_overdue());
        let later = Instant::now() + std::time::Duration::from_secs(5);
        let (answered, ()) = tokio::join!(s.ping(later), async { s.on_pong() });
        assert!(answered);
    }

    #[test]
    fn control_frames_count_against_the_buffer() {
        let s = socket(room_for(100));
        // A v3 client that pings without ever polling: its pongs pile up until the buffer is
        // full, then the session closes and the queue is freed.
        for _ in 0..1_000 {
            s.send_control(&Packet::Pong);
        }
        assert_eq!(s.close_reason(), Some(CloseReason::BufferFull));
        assert_eq!(s.pop(), Some(encode(&Packet::Close)));
        assert_eq!(s.pop(), None);
    }
}
