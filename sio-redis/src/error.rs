//! Errors of the Redis adapter.

use std::path::PathBuf;

/// Why a [`RedisAdapter`](crate::RedisAdapter) or an [`Emitter`](crate::Emitter) could not be
/// created or could not reach Redis.
///
/// The configuration errors ([`Url`](Self::Url), [`TlsFile`](Self::TlsFile),
/// [`Tls`](Self::Tls), [`Unsupported`](Self::Unsupported), [`NoRuntime`](Self::NoRuntime))
/// come from every constructor; the connection errors ([`Unreachable`](Self::Unreachable),
/// [`TlsHandshake`](Self::TlsHandshake), [`Auth`](Self::Auth), [`Database`](Self::Database),
/// [`Sentinel`](Self::Sentinel), [`Protocol`](Self::Protocol)) from
/// [`RedisAdapter::connect`](crate::RedisAdapter::connect), which connects once before it
/// returns. Each message says what failed and where, without a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not describe a Redis deployment; `part` is the part that is wrong
    /// (`scheme`, `host`, `port`, `credentials`, `user name`, `password`, `database`,
    /// `master name`, `path`, `query`, `fragment`). `url` is the URL without its password.
    #[error("invalid Redis URL `{url}`: {part}: {reason}")]
    Url {
        /// The URL, its password replaced by `***`.
        url: String,
        /// Which part of it is wrong.
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the TLS configuration could not be read.
    #[error("cannot read the {what} file {}: {reason}", path.display())]
    TlsFile {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// The TLS configuration is not usable: a file holds no certificate or key, the key does
    /// not fit the certificate, or nothing is trusted.
    #[error("TLS configuration: {what} ({origin}): {reason}")]
    Tls {
        /// What was being read: `CA certificate`, `client certificate`, `client key`, ...
        what: &'static str,
        /// Where it came from (`file <path>`, `PEM given`).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The adapter or emitter was created outside a Tokio runtime: its connections are tasks
    /// of that runtime.
    #[error(
        "no Tokio runtime: create the Redis adapter inside one (in an async fn under \
         #[actix_web::main] or #[tokio::main]), or with RedisAdapter::connect(..).await"
    )]
    NoRuntime,
    /// No connection to Redis: refused, unreachable, or not made in time.
    #[error("cannot reach Redis at {addr}: {reason}")]
    Unreachable {
        /// The server (`host:port`, or a socket path).
        addr: String,
        /// What the system or the timeout said.
        reason: String,
    },
    /// The TLS handshake with Redis failed: most often its certificate is not signed by a
    /// trusted CA ([`TlsConfig::ca_file`](crate::TlsConfig::ca_file)), does not name the
    /// host, or the server wants a client certificate.
    #[error("TLS handshake with Redis at {addr} failed: {reason}")]
    TlsHandshake {
        /// The server.
        addr: String,
        /// What rustls said, with a hint.
        reason: String,
    },
    /// Redis refused the user name and password (`AUTH`), or wants some and none was given.
    #[error("Redis at {addr} refused to authenticate user `{user}`: {reason}")]
    Auth {
        /// The server.
        addr: String,
        /// The user name (`default` when none was given).
        user: String,
        /// What Redis answered.
        reason: String,
    },
    /// Redis refused to select the database (`SELECT`).
    #[error("Redis at {addr} refused database {db}: {reason}")]
    Database {
        /// The server.
        addr: String,
        /// The database asked for.
        db: i64,
        /// What Redis answered.
        reason: String,
    },
    /// No sentinel named the master.
    #[error("no sentinel named master `{master}`: {reason}")]
    Sentinel {
        /// The master's name in the URL.
        master: String,
        /// What each sentinel answered, or why it could not be asked.
        reason: String,
    },
    /// Redis answered something that a Redis server does not (is it one, and is it speaking
    /// TLS exactly when the URL says `rediss`?).
    #[error("unexpected answer from {addr}: {reason}")]
    Protocol {
        /// The server.
        addr: String,
        /// What came back.
        reason: String,
    },
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
