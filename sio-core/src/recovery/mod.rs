//! Connection state recovery (Node's `connectionStateRecovery`): a client that lost its
//! connection and comes back within `max_disconnection_duration` gets its socket id and rooms
//! back, and every broadcast it missed.
//!
//! How it works, as in Node so that the official client needs nothing more: the CONNECT answer
//! carries a private session id (`pid`); every broadcast event carries an offset as its last
//! argument, which the client remembers; on reconnection the client sends `pid` and its last
//! offset in its CONNECT payload. The server keeps, per namespace, the sessions of recently
//! disconnected sockets and a log of recent broadcasts.
//!
//! In a cluster every node logs every broadcast (its own and the other nodes'), so that any
//! node can send a returning client what it missed; offsets are unique cluster-wide. When the
//! backend offers a [`SessionStore`], sessions live there instead of in this node's memory, and
//! are written through while the socket lives: a client whose node was killed comes back to
//! any other node.

mod store;

pub use store::{RecoverableSession, SessionStore};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::adapter::{BroadcastOptions, Room};
use crate::engine::Sid;

/// Settings of connection state recovery.
///
/// ```
/// use std::time::Duration;
/// use sio_core::{RecoveryConfig, SocketIo};
///
/// let io = SocketIo::builder()
///     .connection_state_recovery(RecoveryConfig::default().max_disconnection_duration(Duration::from_secs(30)))
///     .build();
/// # let _ = io;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryConfig {
    /// How long a disconnected client's session and missed broadcasts are kept. Default 2 min.
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips the namespace's middlewares. Default true.
    pub skip_middlewares: bool,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
        }
    }
}

impl RecoveryConfig {
    /// Sets [`RecoveryConfig::max_disconnection_duration`].
    pub fn max_disconnection_duration(mut self, duration: Duration) -> Self {
        self.max_disconnection_duration = duration;
        self
    }

    /// Sets [`RecoveryConfig::skip_middlewares`].
    pub fn skip_middlewares(mut self, skip: bool) -> Self {
        self.skip_middlewares = skip;
        self
    }
}

/// What a disconnected socket leaves behind for its client's return.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub(crate) sid: Sid,
    pub(crate) pid: Sid,
    pub(crate) rooms: Vec<Room>,
    /// `socket.data`, given back to the recovered socket.
    pub(crate) data: Value,
}

/// A broadcast event, kept for clients that may come back.
#[derive(Debug, Clone)]
struct Logged {
    offset: String,
    opts: BroadcastOptions,
    at: Instant,
    args: Value,
    attachments: Vec<Bytes>,
}

/// A missed event to send again: its arguments (offset included) and attachments.
pub(crate) type Missed = (Value, Vec<Bytes>);

/// The sessions and broadcast log of one namespace.
#[derive(Debug)]
pub(crate) struct Recovery {
    config: RecoveryConfig,
    sessions: Mutex<HashMap<Sid, (Session, Instant)>>,
    log: Mutex<VecDeque<Logged>>,
    next_offset: AtomicU64,
    /// Makes offsets unique in the cluster: nodes log each other's broadcasts.
    prefix: String,
    /// Broadcasts (log then deliver) hold it shared; a restoring socket holds it alone while
    /// it joins its rooms and reads what it missed, so that no broadcast is missed or sent twice.
    gate: RwLock<()>,
}

impl Recovery {
    pub(crate) fn new(config: RecoveryConfig) -> Self {
        Recovery {
            config,
            sessions: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            next_offset: AtomicU64::new(0),
            prefix: Sid::new(0).to_string(),
            gate: RwLock::new(()),
        }
    }

    /// Held by a broadcast while it is logged and delivered.
    pub(crate) fn broadcasting(&self) -> RwLockReadGuard<'_, ()> {
        self.gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held by a socket being restored, see [`Recovery::broadcasting`].
    pub(crate) fn restoring(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    /// A new offset, unique in this namespace and increasing.
    pub(crate) fn next_offset(&self) -> String {
        let n = self.next_offset.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }

    /// Logs a broadcast (its arguments already end with `offset`).
    pub(crate) fn log(
        &self,
        offset: String,
        opts: BroadcastOptions,
        args: Value,
        attachments: Vec<Bytes>,
    ) {
        let now = Instant::now();
        let mut log = lock(&self.log);
        while log
            .front()
            .is_some_and(|e| now.duration_since(e.at) > self.config.max_disconnection_duration)
        {
            log.pop_front();
        }
        log.push_back(Logged {
            offset,
            opts,
            at: now,
            args,
            attachments,
        });
    }

    /// Keeps a disconnected socket's session until the deadline.
    pub(crate) fn persist(&self, session: Session) {
        let expires = Instant::now() + self.config.max_disconnection_duration;
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, (_, at)| *at > Instant::now());
        sessions.insert(session.pid, (session, expires));
    }

    /// Takes back a session whose client missed the broadcasts after `offset` (see
    /// [`Recovery::missed`]); `None` when the session expired or is unknown, or the offset is
    /// no longer in the log.
    pub(crate) fn restore(&self, pid: Sid, offset: &str) -> Option<Session> {
        let (session, expires) = lock(&self.sessions).remove(&pid)?;
        if expires <= Instant::now() {
            return None;
        }
        self.logs(offset).then_some(session)
    }

    /// Whether `offset` is still in the log, so that what came after it can be sent: a check
    /// before [`Recovery::missed`] reads (and clones) the events themselves.
    pub(crate) fn logs(&self, offset: &str) -> bool {
        lock(&self.log).iter().any(|e| e.offset == offset)
    }

    /// The logged broadcasts after `offset` that would have reached `session`; `None` when
    /// the offset is no longer (or not yet) in the log.
    pub(crate) fn missed(&self, session: &Session, offset: &str) -> Option<Vec<Missed>> {
        let log = lock(&self.log);
        let start = log.iter().position(|e| e.offset == offset)? + 1;
        Some(
            log.iter()
                .skip(start)
                .filter(|e| reaches(&e.opts, session))
                .map(|e| (e.args.clone(), e.attachments.clone()))
                .collect(),
        )
    }
}

impl Session {
    /// The form a [`SessionStore`] keeps.
    pub(crate) fn to_stored(&self) -> RecoverableSession {
        RecoverableSession::new(
            self.sid.to_string(),
            self.pid.to_string(),
            self.rooms.clone(),
            self.data.clone(),
        )
    }

    /// Back from a [`SessionStore`]; `None` for ids this server could not have made.
    pub(crate) fn from_stored(stored: RecoverableSession) -> Option<Session> {
        Some(Session {
            sid: stored.sid.parse().ok()?,
            pid: stored.pid.parse().ok()?,
            rooms: stored.rooms,
            data: stored.data,
        })
    }
}

/// Whether a broadcast with `opts` would have reached the socket of `session`.
fn reaches(opts: &BroadcastOptions, session: &Session) -> bool {
    let included = opts.rooms.is_empty() || session.rooms.iter().any(|r| opts.rooms.contains(r));
    let excluded = opts.except_sid == Some(session.sid)
        || session.rooms.iter().any(|r| opts.except.contains(r));
    included && !excluded
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(rooms: &[&str]) -> Session {
        Session {
            sid: Sid::new(0),
            pid: Sid::new(0),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            data: json!({"name": "ada"}),
        }
    }

    #[test]
    fn restores_once_with_the_broadcasts_that_would_have_reached_it() {
        let recovery = Recovery::new(RecoveryConfig::default());
        let s = session(&["a"]);
        let first = recovery.next_offset();
        recovery.log(
            first.clone(),
            BroadcastOptions::default(),
            json!(["e", 0]),
            vec![],
        );
        recovery.persist(s.clone());
        for (args, rooms) in [
            (1, vec!["a".to_string()]),
            (2, vec!["b".to_string()]),
            (3, vec![]),
        ] {
            let opts = BroadcastOptions {
                rooms,
                ..Default::default()
            };
            recovery.log(recovery.next_offset(), opts, json!(["e", args]), vec![]);
        }
        let restored = recovery.restore(s.pid, &first).unwrap();
        assert_eq!(restored, s);
        let missed = recovery.missed(&restored, &first).unwrap();
        let args: Vec<Value> = missed.into_iter().map(|(args, _)| args).collect();
        assert_eq!(args, vec![json!(["e", 1]), json!(["e", 3])]);
        assert!(recovery.restore(s.pid, &first).is_none());
    }

    #[test]
    fn unknown_offsets_and_expired_sessions_do_not_restore() {
        let recovery =
            Recovery::new(RecoveryConfig::default().max_disconnection_duration(Duration::ZERO));
        let s = session(&[]);
        recovery.persist(s.clone());
        assert!(recovery.restore(s.pid, "0").is_none());
        let recovery = Recovery::new(RecoveryConfig::default());
        recovery.persist(s.clone());
        assert!(recovery.restore(s.pid, "nope").is_none());
    }
}
