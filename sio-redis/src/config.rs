//! What a [`RedisAdapter`](crate::RedisAdapter) connects to and how.

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
}

impl RedisConfig {
    /// The Redis server at `url` (`redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS is not built in).
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key: "socket.io".into(),
            queue_size: 65_536,
        }
    }

    /// The channel prefix (`key` in Node's adapter; default `socket.io`). Every node of a
    /// cluster must use the same.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
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
