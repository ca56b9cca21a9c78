//! What a [`RedisAdapter`](crate::RedisAdapter) connects to and how.

use std::fmt;
use std::time::Duration;

use crate::tls::TlsConfig;

/// The configuration of a [`RedisAdapter`](crate::RedisAdapter) (and of an
/// [`Emitter`](crate::Emitter)): where Redis is, how to log in, and which of Node's protocols
/// to speak.
///
/// ```
/// use std::time::Duration;
/// use sio_redis::{RedisConfig, TlsConfig};
///
/// // A managed Redis: TLS with the system's certificate authorities, an ACL user.
/// let config = RedisConfig::new("rediss://redis.example.com:6380")
///     .username("sio")
///     .password(std::env::var("REDIS_PASSWORD").unwrap_or_default())
///     .key("chat")
///     .pool_size(16)
///     .connect_timeout(Duration::from_secs(3));
/// # let _ = config;
/// ```
///
/// Its `Debug` output hides the passwords.
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) key: String,
    pub(crate) queue_size: usize,
    pub(crate) mode: Mode,
    pub(crate) max_len: u64,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_size: u32,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) database: Option<i64>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |password: &Option<String>| password.as_ref().map(|_| "***");
        f.debug_struct("RedisConfig")
            .field("url", &crate::url::redact(&self.url))
            .field("key", &self.key)
            .field("mode", &self.mode)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("queue_size", &self.queue_size)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Which of Node's Redis adapters a node speaks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Classic,
    Sharded,
    Streams,
}

impl RedisConfig {
    /// The Redis deployment at `url`:
    ///
    /// | URL | what |
    /// |---|---|
    /// | `redis://[user:password@]host[:port][/db]` | one server (port 6379 by default) |
    /// | `rediss://[user:password@]host[:port][/db]` | one server, over TLS |
    /// | `redis+sentinel://[user:password@]host[:port][,host[:port]...]/master-name[/db]` | the master that Redis Sentinel names (port 26379 by default) |
    /// | `rediss+sentinel://...` | the same, over TLS to the sentinels and to the master |
    /// | `redis+cluster://[user:password@]host[:port][,host[:port]...]` | a Redis Cluster, by some of its nodes |
    /// | `rediss+cluster://...` | the same, over TLS to every node |
    /// | `redis+unix:///path/to/redis.sock[?db=N]` | one server on a Unix socket |
    ///
    /// The user name and password in a URL are percent-encoded (`p%40ss` for `p@ss`), and
    /// are the data nodes' (the master's, behind Sentinel): [`username`](Self::username),
    /// [`password`](Self::password) and [`database`](Self::database) give them without the
    /// URL, and [`sentinel_password`](Self::sentinel_password) gives the sentinels'. A `rediss`
    /// URL trusts the system's certificate authorities; [`tls`](Self::tls) adds your own, or a
    /// client certificate.
    ///
    /// Behind Sentinel the master is asked for again on every new connection and checked every
    /// second, so a failover is followed. On a Redis Cluster the classic protocol's pub/sub
    /// reaches every node of the cluster, so one node at a time is used; the sharded protocol
    /// publishes and subscribes each channel on the master that owns its slot.
    ///
    /// The URL is checked when the adapter is created
    /// ([`Error::Url`](crate::Error::Url) names the part that is wrong).
    ///
    /// ```
    /// use sio_redis::RedisConfig;
    ///
    /// let one = RedisConfig::new("rediss://sio:p%40ss@redis.internal:6380/0");
    /// let sentinel = RedisConfig::new("redis+sentinel://s1:26379,s2:26379/mymaster");
    /// let cluster = RedisConfig::new("rediss+cluster://n1:6379,n2:6379").sharded();
    /// # let _ = (one, sentinel, cluster);
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key: "socket.io".into(),
            queue_size: 65_536,
            mode: Mode::Classic,
            max_len: 10_000,
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            pool_size: 10,
            username: None,
            password: None,
            database: None,
            tls: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }

    /// The Redis user (ACL, Redis 6+) to log in as, instead of the URL's; without one, and
    /// with a password, Redis's `default` user.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("rediss://redis.internal:6380")
    ///     .username("sio")
    ///     .password("a-long-random-password");
    /// # let _ = config;
    /// ```
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password to log in with (`AUTH`), instead of the URL's: any characters, nothing to
    /// encode, so a secret can come straight from the environment.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("redis://10.0.0.5:6379")
    ///     .password(std::env::var("REDIS_PASSWORD").unwrap_or_default());
    /// # let _ = config;
    /// ```
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database (`SELECT`) of the keys sio-redis writes (recovery sessions, the stream),
    /// instead of the URL's (default 0). Pub/sub channels are the same in every database.
    /// Redis Cluster has database 0 only.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("redis://127.0.0.1:6379").database(2);
    /// # let _ = config;
    /// ```
    pub fn database(mut self, database: u32) -> Self {
        self.database = Some(i64::from(database));
        self
    }

    /// How TLS connections check the server and prove who they are: your own certificate
    /// authority, a client certificate (mutual TLS). The URL must ask for TLS (`rediss://`,
    /// `rediss+sentinel://`, `rediss+cluster://`); a `rediss` URL without this trusts the
    /// system's certificate authorities.
    ///
    /// ```
    /// use sio_redis::{RedisConfig, TlsConfig};
    ///
    /// let config = RedisConfig::new("rediss://sio:secret@redis.internal:6380")
    ///     .tls(TlsConfig::new().ca_file("/etc/sio/redis-ca.pem"));
    /// # let _ = config;
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// With a `redis+sentinel://` URL: the user name of the sentinels (ACL, Redis 6.2+), when
    /// they have users of their own.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("redis+sentinel://sentinel-0:26379/mymaster")
    ///     .sentinel_username("sio")
    ///     .sentinel_password("sentinel-secret");
    /// # let _ = config;
    /// ```
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// With a `redis+sentinel://` URL: the sentinels' password (their `requirepass`). The
    /// URL's credentials are the master's.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("redis+sentinel://:master-secret@s1,s2/mymaster")
    ///     .sentinel_password("sentinel-secret");
    /// # let _ = config;
    /// ```
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Connections of the pool for publishing, forwarding and requests (default 10). The
    /// subscriber, the stream reader and the recovery sessions have connections of their own;
    /// a node opens about `pool_size + 6` connections to a single Redis, and one per node on
    /// a Redis Cluster.
    ///
    /// ```
    /// let config = sio_redis::RedisConfig::new("redis://127.0.0.1:6379").pool_size(4);
    /// # let _ = config;
    /// ```
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// How long a new connection may take: the TCP connection, the TLS handshake, and
    /// Redis's answer to `AUTH` and `PING`, each (default 2 s; also each sentinel's answer).
    /// Lost connections are made again with backoff, each attempt bounded by this.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = sio_redis::RedisConfig::new("rediss://redis.example.com:6380")
    ///     .connect_timeout(Duration::from_secs(5));
    /// # let _ = config;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
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
