//! Connection state recovery sessions in Redis, so that a client whose node died (SIGKILL
//! included) recovers on any other node of the cluster.
//!
//! One key per session, `sio:rs-session:<pid>`, holding the session as JSON with a TTL of
//! `max_disconnection_duration` that sio-core refreshes while the socket lives; taken back with
//! `GETDEL`, so a session recovers once. The key is not Node's `sio:session:<pid>`: Node keeps
//! sessions only with the streams adapter, in MessagePack, and a sio session in it would fail
//! its decoding.

use std::time::Duration;

use sio_core::{BackendFuture, RecoverableSession, SessionStore};
use tokio::sync::mpsc;

use crate::adapter::{run_pipeline, unavailable};
use crate::target::Connections;

type Pool = bb8_redis::bb8::Pool<Connections>;

/// Writes queued in order (a session's later state must win), at most this many waiting.
const QUEUE: usize = 10_000;

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
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn key(pid: &str) -> String {
    format!("sio:rs-session:{pid}")
}

impl Sessions {
    /// Must be called inside a Tokio runtime: it starts the writer task.
    pub(crate) fn start(pool: Pool) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(pool.clone(), queue));
        Sessions { pool, writes }
    }

    fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            tracing::warn!(target: "sio::redis", "session write queue full, write dropped");
        }
    }
}

impl SessionStore for Sessions {
    fn save(&self, _ns: &str, session: &RecoverableSession, ttl: Duration) {
        match serde_json::to_string(session) {
            Ok(json) => self.queue(Write::Save {
                key: key(&session.pid),
                json,
                ttl,
            }),
            Err(err) => tracing::warn!(target: "sio::redis", %err, "session not saved"),
        }
    }

    fn remove(&self, _ns: &str, pid: &str) {
        self.queue(Write::Remove { key: key(pid) });
    }

    fn take(&self, _ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>> {
        let pool = self.pool.clone();
        let key = key(pid);
        Box::pin(async move {
            let mut conn = pool.get().await.map_err(unavailable)?;
            let json: Option<String> = redis::cmd("GETDEL")
                .arg(&key)
                .query_async(&mut conn.inner)
                .await
                .map_err(unavailable)?;
            // A value this store did not write is no session: the client starts anew.
            Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
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
