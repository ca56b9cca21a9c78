//! Engine.IO v4: sessions over HTTP long-polling and WebSocket, heartbeats and upgrades.
//!
//! This layer knows nothing of namespaces, rooms or events: it moves text and binary messages
//! between a client and a [`Handler`]. The Socket.IO layer is one such handler; a bare
//! Engine.IO server is another:
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer};
//! use sio_core::engine::{Engine, EngineConfig, Handler, Message, Socket};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Data = ();
//!     fn on_message(&self, socket: &Arc<Socket<()>>, message: Message) {
//!         let _ = socket.send(message.into_frame());
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let engine = Engine::new(EngineConfig::default(), Echo);
//!     HttpServer::new(move || App::new().service(engine.service()))
//!         .bind(("127.0.0.1", 3000))?
//!         .run()
//!         .await
//! }
//! ```

mod adopt;
mod config;
mod cors;
mod error;
mod forward;
mod headers;
mod inbound;
mod outbound;
pub mod packet;
pub mod payload;
mod polling;
mod service;
mod sid;
mod socket;
mod tunnel;
mod websocket;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use bytestring::ByteString;
use foldhash::{HashMap, HashMapExt as _};

pub use config::{AllowRequest, EngineConfig, EngineConfigBuilder, Transports};
pub use cors::{AllowOrigin, Cors};
pub use error::RequestError;
pub use forward::{
    ForwardDecodeError, ForwardError, ForwardFuture, ForwardMessage, ForwardMethod,
    ForwardedRequest, ForwardedResponse, Forwarder, TunnelEvent, TunnelFuture, TunnelId,
    TunnelMessage,
};
pub(crate) use headers::header_text;
pub use packet::{DecodeError, Frame, OpenPacket, Packet};
pub use service::EngineService;
pub use sid::{InvalidSid, Sid};
use socket::Traffic;
pub use socket::{CloseReason, Protocol, RequestInfo, SendError, Socket, TransportKind};
pub use tunnel::{Tunnel, TunnelInlet, TunnelLink, TunnelSendFuture};

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The frame that sends this message back to a client.
    pub fn into_frame(self) -> Frame {
        match self {
            Message::Text(text) => Frame::message(&text),
            Message::Binary(data) => Frame::Binary(data),
        }
    }
}

/// What the layer above the engine does with sessions. Every method runs on the request or
/// connection task that caused it, so it must return quickly: spawn for anything slow.
pub trait Handler: Send + Sync + 'static {
    /// Per-session state, created when the session opens and reachable as [`Socket::data`].
    type Data: Default + Send + Sync + 'static;

    /// A session opened (after the handshake was sent).
    fn on_open(&self, socket: &Arc<Socket<Self::Data>>) {
        let _ = socket;
    }

    /// A message arrived. Messages of one session arrive in order.
    fn on_message(&self, socket: &Arc<Socket<Self::Data>>, message: Message);

    /// Resolves once the handler takes more of the session's messages. Until then the engine
    /// reads nothing more from the client (a WebSocket is not read, a polling POST is not
    /// answered), so that a client cannot make the handler hold more work than it allows;
    /// the default is always ready.
    fn ready(
        &self,
        socket: &Arc<Socket<Self::Data>>,
    ) -> impl Future<Output = ()> + Send + use<Self> {
        let _ = socket;
        std::future::ready(())
    }

    /// The owner of session `socket` (a session of another node, see [`Sid::node_id`]) is
    /// dead, and its client POSTed to this node: restores what the layer above kept of the
    /// session elsewhere (the cluster's session store) into `socket`, a session made for this
    /// POST alone, which nobody polls and which is closed ([`Handler::on_close`]) once the
    /// POST's messages ran. Whether it did; if not, the client gets "Session ID unknown" as
    /// for any dead owner's session. The default adopts nothing.
    fn adopt(
        &self,
        socket: &Arc<Socket<Self::Data>>,
    ) -> impl Future<Output = bool> + Send + use<Self> {
        let _ = socket;
        std::future::ready(false)
    }

    /// A session closed; it is gone from the engine when this runs.
    fn on_close(&self, socket: &Arc<Socket<Self::Data>>, reason: CloseReason) {
        let _ = (socket, reason);
    }
}

/// An Engine.IO server: the session table, the configuration and the handler. Cheap to clone;
/// build it once, outside `HttpServer::new`, so that every actix-web worker shares one session
/// table.
pub struct Engine<H: Handler> {
    inner: Arc<Inner<H>>,
}

struct Inner<H: Handler> {
    config: EngineConfig,
    handler: H,
    node_id: u32,
    sessions: RwLock<HashMap<Sid, Arc<Socket<H::Data>>>>,
    /// Handshakes allowed now, for `max_handshakes_per_second`.
    handshake_tokens: std::sync::Mutex<TokenBucket>,
    /// Cleared by [`Engine::close_all`]: a server going away takes no new sessions.
    accepting: std::sync::atomic::AtomicBool,
    traffic: Arc<Traffic>,
    /// Carries requests for other nodes' sessions to them (sticky-free clusters).
    forwarder: std::sync::OnceLock<Arc<dyn Forwarder>>,
}

/// Counters of an [`Engine`]: Engine.IO packets and their payload bytes, in (from clients) and
/// out (handed to a transport), control packets included; for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficStats {
    /// Sessions open now.
    pub sessions: usize,
    /// Packets received.
    pub packets_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
}

/// A token bucket: `rate` tokens a second, at most one second's worth saved up.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: std::time::Instant,
}

impl TokenBucket {
    fn take(&mut self, rate: u32, now: std::time::Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An [`Engine`] that may be gone (held by what the engine itself owns).
pub(crate) struct WeakEngine<H: Handler>(std::sync::Weak<Inner<H>>);

impl<H: Handler> WeakEngine<H> {
    pub(crate) fn upgrade(&self) -> Option<Engine<H>> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

impl<H: Handler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

impl<H: Handler> fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .field("node_id", &self.inner.node_id)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Engine<H> {
    /// An engine with a random node id.
    pub fn new(config: EngineConfig, handler: H) -> Self {
        Self::with_node_id(config, handler, rand::random())
    }

    /// An engine whose session ids carry `node_id` (see [`Sid::node_id`]).
    pub fn with_node_id(config: EngineConfig, handler: H, node_id: u32) -> Self {
        Engine {
            inner: Arc::new(Inner {
                handler,
                handshake_tokens: std::sync::Mutex::new(TokenBucket {
                    tokens: config.max_handshakes_per_second.map_or(0.0, f64::from),
                    last: std::time::Instant::now(),
                }),
                accepting: std::sync::atomic::AtomicBool::new(true),
                traffic: Arc::default(),
                forwarder: std::sync::OnceLock::new(),
                config,
                node_id,
                sessions: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// A handle that does not keep the engine alive.
    pub(crate) fn downgrade(&self) -> WeakEngine<H> {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// The node id carried by this engine's session ids.
    pub fn node_id(&self) -> u32 {
        self.inner.node_id
    }

    /// The open session with this id.
    pub fn session(&self, sid: Sid) -> Option<Arc<Socket<H::Data>>> {
        self.sessions().get(&sid).cloned()
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// What the sessions have received and sent so far.
    pub fn traffic(&self) -> TrafficStats {
        let t = &self.inner.traffic;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        // A closed session may be kept a little longer for its client's last poll: it is not
        // open any more, and monitoring must not count it.
        let open = self.sessions().values().filter(|s| !s.is_closed()).count();
        TrafficStats {
            sessions: open,
            packets_in: load(&t.packets_in),
            bytes_in: load(&t.bytes_in),
            packets_out: load(&t.packets_out),
            bytes_out: load(&t.bytes_out),
        }
    }

    /// Whether a new session may open now: the server is not closing, and the session and
    /// handshake-rate limits leave room.
    pub(crate) fn admit(&self) -> Result<(), RequestError> {
        let config = &self.inner.config;
        if !self
            .inner
            .accepting
            .load(std::sync::atomic::Ordering::Acquire)
            || self.session_count() >= config.max_sessions
        {
            return Err(RequestError::TooManySessions);
        }
        if let Some(rate) = config.max_handshakes_per_second {
            let mut bucket = self
                .inner
                .handshake_tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !bucket.take(rate, std::time::Instant::now()) {
                return Err(RequestError::TooManyHandshakes);
            }
        }
        Ok(())
    }

    /// Refuses new sessions (HTTP 503) from now on; open ones go on.
    pub fn stop_accepting(&self) {
        self.inner
            .accepting
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Closes every session, telling each client the server is going away, and refuses new
    /// ones (HTTP 503) from now on.
    pub fn close_all(&self) {
        self.stop_accepting();
        let sockets: Vec<_> = self.sessions().values().cloned().collect();
        for socket in sockets {
            socket.close(CloseReason::ServerShutdown);
        }
    }

    /// The actix-web service answering on [`EngineConfig::path`].
    pub fn service(&self) -> EngineService<H> {
        EngineService::new(self.clone())
    }

    fn sessions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, Arc<Socket<H::Data>>>> {
        self.inner
            .sessions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new session and starts its heartbeat.
    fn open(
        &self,
        transport: TransportKind,
        request: RequestInfo,
        protocol: Protocol,
    ) -> Arc<Socket<H::Data>> {
        let sid = Sid::new(self.inner.node_id);
        let socket = Arc::new(Socket::new(
            sid,
            transport,
            self.inner.config.max_buffer_size,
            request,
            protocol,
            H::Data::default(),
            self.inner.traffic.clone(),
        ));
        self.inner
            .sessions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sid, socket.clone());
        tokio::spawn(self.clone().lifecycle(socket.clone()));
        tracing::debug!(%sid, transport = transport.as_str(), "session opened");
        socket
    }

    /// The handshake packet for a session.
    fn open_packet(&self, socket: &Socket<H::Data>) -> Packet {
        let config = &self.inner.config;
        let upgrades = match socket.transport() {
            TransportKind::Polling if config.transports.websocket => vec!["websocket".into()],
            _ => vec![],
        };
        Packet::Open(OpenPacket {
            sid: socket.sid().to_string(),
            upgrades,
            ping_interval: duration_ms(config.ping_interval),
            ping_timeout: duration_ms(config.ping_timeout),
            max_payload: config.max_payload,
        })
    }

    /// Pings the client every `ping_interval` (the first one an interval after the handshake)
    /// until the session closes or a pong is missed; then removes the session and tells the
    /// handler. This is the one place a session is torn down.
    async fn lifecycle(self, socket: Arc<Socket<H::Data>>) {
        let config = &self.inner.config;
        let heartbeat = async {
            if let Protocol::V3 { .. } = socket.protocol() {
                // In v3 the client pings; it must do so within an interval and a timeout.
                loop {
                    let due =
                        tokio::time::Instant::now() + config.ping_interval + config.ping_timeout;
                    if !socket.heard_by(due).await {
                        return;
                    }
                }
            }
            loop {
                let ping_at = tokio::time::Instant::now() + config.ping_interval;
                tokio::time::sleep_until(ping_at).await;
                if !socket.ping(ping_at + config.ping_timeout).await {
                    return;
                }
            }
        };
        tokio::select! {
            () = socket.closed() => {}
            () = heartbeat => socket.close(CloseReason::PingTimeout),
        }
        let reason = socket.close_reason().unwrap_or(CloseReason::TransportClose);
        tracing::debug!(sid = %socket.sid(), %reason, "session closed");
        self.inner.handler.on_close(&socket, reason);
        if socket.transport() == TransportKind::Polling
            && (reason == CloseReason::TransportClose || (reason.flushes() && socket.has_queued()))
        {
            // The close may have come with no poll pending: keep the session long enough for
            // the client's next poll to get the answer (see `Socket::deliver_close`) or the
            // frames queued before the close.
            let _ = tokio::time::timeout(config.ping_timeout, socket.close_delivered()).await;
        }
        self.inner
            .sessions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&socket.sid());
    }

    /// Resolves once the handler takes more of `socket`'s messages ([`Handler::ready`]).
    pub(crate) fn ready(&self, socket: &Arc<Socket<H::Data>>) -> impl Future<Output = ()> + use<H> {
        self.inner.handler.ready(socket)
    }

    /// Acts on one packet from the client, on either transport.
    fn on_packet(&self, socket: &Arc<Socket<H::Data>>, packet: Packet) {
        let bytes = match &packet {
            Packet::Message(text) => text.len(),
            Packet::Binary(data) => data.len(),
            _ => 1,
        };
        self.inner.traffic.received(bytes);
        match packet {
            Packet::Message(text) => self.inner.handler.on_message(socket, Message::Text(text)),
            Packet::Binary(data) => self.inner.handler.on_message(socket, Message::Binary(data)),
            Packet::Pong => socket.on_pong(),
            Packet::Ping if socket.protocol() == Protocol::V4 => {
                // In v4 the server pings. Answering a client's ping would let it keep a session
                // alive without ever reading, and queue pongs it never takes (Node closes too).
                tracing::debug!(sid = %socket.sid(), "invalid heartbeat direction, closing the session");
                socket.close(CloseReason::TransportError);
            }
            Packet::Ping => {
                // A v3 client's heartbeat; the pong counts against its buffer.
                socket.on_pong();
                socket.send_control(&Packet::Pong);
            }
            Packet::Close => socket.close(CloseReason::TransportClose),
            Packet::Noop => {}
            Packet::Open(_) | Packet::PingProbe | Packet::PongProbe | Packet::Upgrade => {
                tracing::debug!(sid = %socket.sid(), ?packet, "unexpected packet, closing the session");
                socket.close(CloseReason::ParseError);
            }
        }
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn handshakes_are_admitted_at_the_rate_with_a_one_second_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket {
            tokens: 3.0,
            last: start,
        };
        assert!((0..3).all(|_| bucket.take(3, start)));
        assert!(!bucket.take(3, start));
        assert!(bucket.take(3, start + Duration::from_millis(400)));
        assert!(!bucket.take(3, start + Duration::from_millis(450)));
        // Idle time saves up one second's worth, no more.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(3, later)));
        assert!(!bucket.take(3, later));
    }
}
