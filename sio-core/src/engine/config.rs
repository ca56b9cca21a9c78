//! Engine.IO settings, with the names and defaults of Node's `engine.io` server.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;

use super::cors::Cors;

/// Decides whether a handshake may open a session (Node's `allowRequest`), for example by checking
/// its `Origin` header. Returning `false` answers 403 with `{"code":4,"message":"Forbidden"}`.
pub type AllowRequest = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;

/// The transports a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// HTTP long-polling.
    pub polling: bool,
    /// WebSocket.
    pub websocket: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            polling: true,
            websocket: true,
        }
    }
}

/// Engine.IO settings. Build one with [`EngineConfig::builder`]; every setting has Node's default.
///
/// ```
/// use std::time::Duration;
/// use sio_core::engine::EngineConfig;
///
/// let config = EngineConfig::builder()
///     .ping_interval(Duration::from_secs(10))
///     .max_payload(64 * 1024)
///     .build();
/// assert_eq!(config.path, "/engine.io/");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The URL path the server answers on (`path`). Default `/engine.io/`.
    pub path: String,
    /// Time between two pings (`pingInterval`). Default 25 s.
    pub ping_interval: Duration,
    /// Time a client has to answer a ping before the session closes (`pingTimeout`). Default 20 s.
    pub ping_timeout: Duration,
    /// The largest polling body or WebSocket message a client may send, in bytes
    /// (`maxHttpBufferSize`, announced as `maxPayload`). Default 1,000,000.
    pub max_payload: u64,
    /// Transports clients may use (`transports`). Default both.
    pub transports: Transports,
    /// Time a client has to complete an upgrade after its probe (`upgradeTimeout`). Default 10 s.
    pub upgrade_timeout: Duration,
    /// Bytes that may wait in one session's outbound queue; a send past it fails, so a client
    /// that reads too slowly cannot grow the server's memory. Default 8 MiB.
    pub max_buffer_size: usize,
    /// CORS headers for polling requests (`cors`). Default none.
    pub cors: Option<Cors>,
    /// A check run on every handshake (`allowRequest`). Default none.
    pub allow_request: Option<AllowRequest>,
    /// Accept Engine.IO v3 clients (`allowEIO3`; socket.io-client 2.x). A request without
    /// `EIO` then counts as v3, as in Node. Default false.
    pub allow_eio3: bool,
    /// Packets one polling POST may carry; a longer batch closes the session (HTTP 400).
    /// Default: no limit besides `max_payload`, as in Node. A client sends everything it has
    /// buffered in one POST of up to `max_payload` bytes (half a million packets of two bytes
    /// at the default), so a limit much lower than `max_payload / 2` refuses a legitimate
    /// client that emitted a burst while its previous POST was in flight. Whatever the limit,
    /// decoding a body takes little memory beyond the body itself: its packets are checked first
    /// (stopping at the first one past the limit), then decoded again one at a time as they
    /// are dispatched, never held as a list (40 times the body for tiny packets).
    pub max_packets_per_batch: usize,
    /// Time a client has to send a polling POST's body once its head has arrived; a slower
    /// one gets HTTP 400 (and a session of this node is closed, as for any bad body), so
    /// that a client trickling its body does not hold a connection open. Default 30 s (Node:
    /// its HTTP server's `requestTimeout`, 300 s).
    pub body_timeout: Duration,
    /// Sessions open at once in this process; handshakes past it get HTTP 503 and clients
    /// retry with their backoff. Default 100,000 (Node: no limit).
    pub max_sessions: usize,
    /// New sessions per second this process accepts (a token bucket allowing bursts of one
    /// second's worth); handshakes past it get HTTP 429. Default none (Node: none).
    pub max_handshakes_per_second: Option<u32>,
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("path", &self.path)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("max_payload", &self.max_payload)
            .field("transports", &self.transports)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("max_buffer_size", &self.max_buffer_size)
            .field("cors", &self.cors)
            .field("allow_request", &self.allow_request.is_some())
            .field("allow_eio3", &self.allow_eio3)
            .field("max_packets_per_batch", &self.max_packets_per_batch)
            .field("body_timeout", &self.body_timeout)
            .field("max_sessions", &self.max_sessions)
            .field("max_handshakes_per_second", &self.max_handshakes_per_second)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/engine.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            transports: Transports::default(),
            upgrade_timeout: Duration::from_millis(10_000),
            max_buffer_size: 8 << 20,
            cors: None,
            allow_request: None,
            allow_eio3: false,
            max_packets_per_batch: usize::MAX,
            body_timeout: Duration::from_secs(30),
            max_sessions: 100_000,
            max_handshakes_per_second: None,
        }
    }
}

impl EngineConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(EngineConfig::default())
    }

    /// [`max_payload`](Self::max_payload) as a length to compare buffers with.
    pub(crate) fn max_payload_len(&self) -> usize {
        usize::try_from(self.max_payload).unwrap_or(usize::MAX)
    }
}

/// Builds an [`EngineConfig`]; see its fields for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct EngineConfigBuilder(EngineConfig);

impl EngineConfigBuilder {
    /// Sets [`EngineConfig::path`]. A trailing slash is added when missing.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.ends_with('/') {
            path.push('/');
        }
        self.0.path = path;
        self
    }

    /// Sets [`EngineConfig::ping_interval`].
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.0.ping_interval = interval;
        self
    }

    /// Sets [`EngineConfig::ping_timeout`].
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.0.ping_timeout = timeout;
        self
    }

    /// Sets [`EngineConfig::max_payload`].
    pub fn max_payload(mut self, bytes: u64) -> Self {
        self.0.max_payload = bytes;
        self
    }

    /// Sets [`EngineConfig::transports`].
    pub fn transports(mut self, transports: Transports) -> Self {
        self.0.transports = transports;
        self
    }

    /// Sets [`EngineConfig::upgrade_timeout`].
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.0.upgrade_timeout = timeout;
        self
    }

    /// Sets [`EngineConfig::max_buffer_size`].
    pub fn max_buffer_size(mut self, bytes: usize) -> Self {
        self.0.max_buffer_size = bytes;
        self
    }

    /// Sets [`EngineConfig::cors`].
    pub fn cors(mut self, cors: Cors) -> Self {
        self.0.cors = Some(cors);
        self
    }

    /// Sets [`EngineConfig::max_packets_per_batch`].
    pub fn max_packets_per_batch(mut self, packets: usize) -> Self {
        self.0.max_packets_per_batch = packets.max(1);
        self
    }

    /// Sets [`EngineConfig::body_timeout`].
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.0.body_timeout = timeout;
        self
    }

    /// Sets [`EngineConfig::max_sessions`].
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.0.max_sessions = sessions;
        self
    }

    /// Sets [`EngineConfig::max_handshakes_per_second`].
    pub fn max_handshakes_per_second(mut self, rate: u32) -> Self {
        self.0.max_handshakes_per_second = Some(rate);
        self
    }

    /// Sets [`EngineConfig::allow_request`].
    pub fn allow_request(
        mut self,
        allow: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.0.allow_request = Some(Arc::new(allow));
        self
    }

    /// Sets [`EngineConfig::allow_eio3`].
    pub fn allow_eio3(mut self, allow: bool) -> Self {
        self.0.allow_eio3 = allow;
        self
    }

    /// The finished configuration.
    pub fn build(self) -> EngineConfig {
        self.0
    }
}
