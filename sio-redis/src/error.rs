//! Errors of the Redis adapter.

/// Why a [`RedisAdapter`](crate::RedisAdapter) or an [`Emitter`](crate::Emitter) could not be
/// created or could not reach Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not describe a Redis server.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// Redis refused a command or could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The event name is one the client reserves (`connect`, `disconnect`, ...).
    #[error("`{0}` is a reserved event name")]
    ReservedEvent(String),
    /// The data does not serialize to JSON.
    #[error("cannot serialize the data: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The configuration asks for something this deployment cannot do.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// No connection could be taken from the pool in time.
    #[error("no Redis connection: {0}")]
    Pool(#[from] bb8_redis::bb8::RunError<redis::RedisError>),
}
