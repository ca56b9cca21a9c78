//! What a [`RedisAdapter`](crate::RedisAdapter) connects to and how.

use std::time::Duration;

/// The configuration of a [`RedisAdapter`](crate::RedisAdapter).
///
/// ```
/// use sio_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379").key("chat");
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) key: String,
    pub(crate) queue_size: usize,
    pub(crate) mode: Mode,
    pub(crate) max_len: u64,
    pub(crate) timeout: Duration,
}

/// Which of Node's Redis adapters a node speaks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Classic,
    Sharded,
    Streams,
}

impl RedisConfig {
    /// The Redis server at `url`: `redis://[user:password@]host:port[/db]`, or the master a
    /// Redis Sentinel deployment names,
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]` (asked
    /// again on every reconnection, so a failover is followed; the credentials are the
    /// master's), or a Redis Cluster by some of its nodes,
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (classic protocol: its pub/sub
    /// reaches every node of the cluster, so one node at a time is used; sharded protocol: each
    /// channel on the master that owns its slot). TLS (`rediss://`) is not built in.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key: "socket.io".into(),
            queue_size: 65_536,
            mode: Mode::Classic,
            max_len: 10_000,
            timeout: Duration::from_secs(2),
        }
    }

    /// The channel prefix (`key` in Node's adapter; default `socket.io`). Every node of a
    /// cluster must use the same.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Speak the protocol of Node's `createShardedAdapter` (`subscriptionMode: "dynamic"`)
    /// instead of `createAdapter`: sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7+), one
    /// channel per room so a node only receives broadcasts to rooms it has. Every node of the
    /// cluster must use the same protocol, and `@socket.io/redis-emitter` (and
    /// [`Emitter`](crate::Emitter)) cannot reach such a cluster.
    pub fn sharded(mut self) -> Self {
        self.mode = Mode::Sharded;
        self
    }

    /// Speak the protocol of Node's `@socket.io/redis-streams-adapter` 0.3 instead of
    /// `createAdapter`: broadcasts and room changes are entries of a Redis stream named after
    /// [`key`](Self::key) (Redis 5+), read by every node from where it left off, so a node cut
    /// off from Redis for a moment misses nothing; requests and answers go over pub/sub. With
    /// connection state recovery the stream is also the log of missed broadcasts and sessions
    /// are kept in Redis, so a client recovers on any node, even one that started after the
    /// client left, sio or Node (Node reads sessions at `sio:session:<pid>`, where a sio node
    /// writes a session once its socket disconnected, and where the surviving sio nodes write
    /// those of a sio node that was killed). One stream for every namespace
    /// (`streamCount: 1`); not on Redis Cluster.
    pub fn streams(mut self) -> Self {
        self.mode = Mode::Streams;
        self
    }

    /// With [`streams`](Self::streams): the stream is trimmed to about this many entries
    /// (`MAXLEN ~`, `maxLen` in Node; default 10,000), which bounds both its memory and how
    /// far back a recovering client can be sent what it missed.
    pub fn max_len(mut self, entries: u64) -> Self {
        self.max_len = entries.max(1);
        self
    }

    /// How long a command may wait for a pooled connection, and then for Redis's answer,
    /// before it fails (default 2 s). A broadcast whose command fails is dropped and counted
    /// (session writes are sent again until they land), so this is what a loaded Redis (or a
    /// loaded node) may cost before messages are lost; a dead Redis fails at once anyway. A
    /// recovering client waits at most this long for its session, then starts anew.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = sio_redis::RedisConfig::new("redis://127.0.0.1:6379")
    ///     .timeout(Duration::from_secs(5));
    /// # let _ = config;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Messages that may wait for the publisher (default 65,536). When Redis is slow or
    /// unreachable and the queue is full, further messages are dropped rather than buffered
    /// without bound.
    pub fn queue_size(mut self, messages: usize) -> Self {
        self.queue_size = messages.max(1);
        self
    }
}
