//! Connection state recovery sessions in Redis, so that a client whose node died (SIGKILL
//! included) recovers on any other node of the cluster.
//!
//! One key per session, `sio:rs-session:<pid>`, holding the session as JSON with a TTL of
//! `max_disconnection_duration` that sio-core refreshes while the socket lives; taken back with
//! `GETDEL`, so a session recovers once. The key is not Node's `sio:session:<pid>`: Node keeps
//! sessions only with the streams adapter, in MessagePack, and a sio session in it would fail
//! its decoding. With the streams protocol, sessions are Node's instead
//! ([`Format::Node`]): `sio:session:<pid>`, base64 of MessagePack, taken back with `GET` and
//! `DEL` in one transaction as Node does, so that Node and sio nodes recover each other's.

use std::time::Duration;

use sio_core::{BackendFuture, RecoverableSession, SessionStore};
use tokio::sync::mpsc;

use crate::adapter::{patient_connection, run_pipeline, unavailable};
use crate::streams;
use crate::target::Connections;

type Pool = bb8_redis::bb8::Pool<Connections>;

/// Writes queued in order (a session's later state must win), at most this many waiting.
const QUEUE: usize = 10_000;

/// How sessions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `sio:rs-session:<pid>`, JSON.
    Json,
    /// `sio:session:<pid>`, as Node's streams adapter.
    Node,
}

impl Format {
    fn key(self, pid: &str) -> String {
        match self {
            Format::Json => format!("sio:rs-session:{pid}"),
            Format::Node => format!("{}{pid}", streams::SESSION_PREFIX),
        }
    }

    fn encode(self, session: &RecoverableSession) -> Option<String> {
        match self {
            Format::Json => serde_json::to_string(session)
                .map_err(|err| tracing::warn!(target: "sio::redis", %err, "session not saved"))
                .ok(),
            Format::Node => Some(streams::encode_session(session)),
        }
    }

    fn decode(self, stored: &[u8]) -> Option<RecoverableSession> {
        match self {
            Format::Json => serde_json::from_slice(stored).ok(),
            Format::Node => streams::decode_session(stored),
        }
    }
}

enum Write {
    Save {
        key: String,
        json: String,
        ttl: Duration,
    },
    Remove {
        key: String,
    },
}

/// The [`SessionStore`] of a [`RedisAdapter`](crate::RedisAdapter) on a standalone or Sentinel
/// Redis.
pub(crate) struct Sessions {
    pool: Pool,
    format: Format,
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Must be called inside a Tokio runtime: it starts the writer task.
    pub(crate) fn start(pool: Pool, format: Format) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(pool.clone(), queue));
        Sessions {
            pool,
            format,
            writes,
        }
    }

    fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            tracing::warn!(target: "sio::redis", "session write queue full, write dropped");
        }
    }
}

impl SessionStore for Sessions {
    fn save(&self, _ns: &str, session: &RecoverableSession, ttl: Duration) {
        if let Some(json) = self.format.encode(session) {
            self.queue(Write::Save {
                key: self.format.key(&session.pid),
                json,
                ttl,
            });
        }
    }

    fn release(&self, ns: &str, session: &RecoverableSession, ttl: Duration) {
        self.save(ns, session, ttl);
    }

    fn remove(&self, _ns: &str, pid: &str) {
        self.queue(Write::Remove {
            key: self.format.key(pid),
        });
    }

    fn take(&self, _ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>> {
        let pool = self.pool.clone();
        let (format, key) = (self.format, self.format.key(pid));
        Box::pin(async move {
            let mut conn = patient_connection(&pool).await?;
            let stored: Option<Vec<u8>> = match format {
                Format::Json => redis::cmd("GETDEL")
                    .arg(&key)
                    .query_async(&mut conn.inner)
                    .await
                    .map_err(unavailable)?,
                // As Node does: GETDEL needs Redis 6.2.
                Format::Node => {
                    let (stored, _): (Option<Vec<u8>>, i64) = redis::pipe()
                        .atomic()
                        .cmd("GET")
                        .arg(&key)
                        .cmd("DEL")
                        .arg(&key)
                        .query_async(&mut conn.inner)
                        .await
                        .map_err(unavailable)?;
                    stored
                }
            };
            // A value this store did not write is no session: the client starts anew.
            Ok(stored.and_then(|s| format.decode(&s)))
        })
    }
}

async fn write_loop(pool: Pool, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        for write in batch.drain(..) {
            match write {
                Write::Save { key, json, ttl } => {
                    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(json)
                        .arg("PX")
                        .arg(ms)
                        .ignore();
                }
                Write::Remove { key } => {
                    pipe.cmd("DEL").arg(key).ignore();
                }
            }
        }
        if let Err(err) = run_pipeline(&pool, &pipe).await {
            tracing::warn!(target: "sio::redis", %err, "session writes failed");
        }
    }
}
