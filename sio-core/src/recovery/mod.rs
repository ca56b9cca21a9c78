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
//!
//! When the backend keeps a [`BroadcastLog`] (Redis streams), it gives broadcasts their
//! offsets and every node hands its own broadcasts back in log order; the node then keeps only
//! a short window of the log in memory and reads older broadcasts back from the backend, so a
//! node that just started can still send a returning client what it missed.

mod log;
mod store;

pub(crate) use log::read_missed;
pub use log::{BroadcastLog, LogPage, LoggedBroadcast};
pub use store::{RecoverableSession, SessionStore};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _};
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
    /// See [`Logged::size`].
    size: usize,
}

impl Logged {
    /// Roughly what the entry holds: its strings and attachments, and a word per value.
    fn size(args: &Value, attachments: &[Bytes]) -> usize {
        fn of(value: &Value) -> usize {
            8 + match value {
                Value::String(s) => s.len(),
                Value::Array(items) => items.iter().map(of).sum(),
                Value::Object(map) => map.iter().map(|(k, v)| k.len() + of(v)).sum(),
                _ => 0,
            }
        }
        of(args) + attachments.iter().map(Bytes::len).sum::<usize>()
    }
}

/// A missed event to send again: its arguments (offset included) and attachments.
pub(crate) type Missed = (Value, Vec<Bytes>);

/// How long a node keeps a backend log's broadcasts in memory: long enough to cover the time
/// between reading the backend's log and joining the recovered socket to its rooms, and most
/// reconnections (which then need no read from the backend).
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// How many bytes of broadcasts one namespace's log holds at most (arguments, roughly, and
/// attachments); the oldest go first. Without it a client that can make the server broadcast
/// (any relay handler) could make every node of a cluster hold
/// `max_disconnection_duration` worth of its largest messages.
const LOG_MAX_BYTES: usize = 64 << 20;

/// The broadcasts a namespace logged.
#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<Logged>,
    /// What `entries` hold, as [`Logged::size`] counts it.
    bytes: usize,
    /// With a backend log: every broadcast after this offset that this node delivered is in
    /// `entries` (set when the backend starts reading, moved on as entries expire).
    complete_after: Option<String>,
    /// With a backend log: the last offset the backend handed over.
    position: Option<String>,
}

/// The sessions of this namespace's disconnected sockets, with their deadlines.
#[derive(Debug)]
struct Sessions {
    by_pid: HashMap<Sid, (Session, Instant)>,
    /// When expired sessions are swept out next.
    next_sweep: Instant,
}

/// How often expired sessions are swept out of a namespace's memory.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The sessions and broadcast log of one namespace.
#[derive(Debug)]
pub(crate) struct Recovery {
    config: RecoveryConfig,
    /// The offsets come from the backend's log (and older broadcasts are read back from it).
    backend_log: bool,
    sessions: Mutex<Sessions>,
    log: Mutex<Log>,
    next_offset: AtomicU64,
    /// Makes offsets unique in the cluster: nodes log each other's broadcasts.
    prefix: String,
    /// Broadcasts (log then deliver) hold it shared; a restoring socket holds it alone while
    /// it joins its rooms and reads what it missed, so that no broadcast is missed or sent twice.
    gate: RwLock<()>,
}

impl Recovery {
    pub(crate) fn new(config: RecoveryConfig, backend_log: bool) -> Self {
        Recovery {
            config,
            backend_log,
            sessions: Mutex::new(Sessions {
                by_pid: HashMap::new(),
                next_sweep: Instant::now(),
            }),
            log: Mutex::new(Log::default()),
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

    /// Whether `offset` has the form [`Recovery::next_offset`] gives offsets (on any node):
    /// another node's broadcast is logged under its last argument only then, so that an
    /// application's own text (or a broadcast from an emitter, which has no offset) is never
    /// taken for one.
    pub(crate) fn is_offset(offset: &str) -> bool {
        offset.rsplit_once('-').is_some_and(|(prefix, n)| {
            Sid::parse_socket_id(prefix).is_ok()
                && !n.is_empty()
                && n.len() <= 16
                && n.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
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
        let keep = if self.backend_log {
            self.config.max_disconnection_duration.min(LOG_WINDOW)
        } else {
            self.config.max_disconnection_duration
        };
        let size = Logged::size(&args, &attachments);
        let mut log = lock(&self.log);
        while log
            .entries
            .front()
            .is_some_and(|e| now.duration_since(e.at) > keep || log.bytes + size > LOG_MAX_BYTES)
        {
            if let Some(gone) = log.entries.pop_front() {
                log.bytes -= gone.size;
                log.complete_after = Some(gone.offset);
            }
        }
        log.bytes += size;
        log.entries.push_back(Logged {
            offset,
            opts,
            at: now,
            args,
            attachments,
            size,
        });
    }

    /// Keeps a disconnected socket's session until the deadline.
    pub(crate) fn persist(&self, session: Session) {
        let now = Instant::now();
        let expires = now + self.config.max_disconnection_duration;
        let mut sessions = lock(&self.sessions);
        // Expired sessions go in a sweep at most every SWEEP_EVERY, not on every disconnection:
        // a sweep reads them all, which under connection churn made disconnections quadratic.
        if now >= sessions.next_sweep {
            sessions.by_pid.retain(|_, (_, at)| *at > now);
            sessions.next_sweep = now + SWEEP_EVERY;
        }
        sessions.by_pid.insert(session.pid, (session, expires));
    }

    /// Takes back a session whose client missed the broadcasts after `offset` (see
    /// [`Recovery::missed`]); `None` when the session expired or is unknown, or the offset is
    /// no longer in the log.
    pub(crate) fn restore(&self, pid: Sid, offset: &str) -> Option<Session> {
        let (session, expires) = lock(&self.sessions).by_pid.remove(&pid)?;
        if expires <= Instant::now() {
            return None;
        }
        self.logs(offset).then_some(session)
    }

    /// Whether `offset` is still in the log, so that what came after it can be sent: a check
    /// before [`Recovery::missed`] reads (and clones) the events themselves.
    pub(crate) fn logs(&self, offset: &str) -> bool {
        lock(&self.log).entries.iter().any(|e| e.offset == offset)
    }

    /// The logged broadcasts after `offset` that would have reached `session`; `None` when
    /// the offset is no longer (or not yet) in the log.
    pub(crate) fn missed(&self, session: &Session, offset: &str) -> Option<Vec<Missed>> {
        let log = lock(&self.log);
        let start = log.entries.iter().position(|e| e.offset == offset)? + 1;
        Some(
            log.entries
                .iter()
                .skip(start)
                .filter(|e| reaches(&e.opts, session))
                .map(|e| (e.args.clone(), e.attachments.clone()))
                .collect(),
        )
    }
}

/// With a backend log ([`BroadcastLog`]): every broadcast the backend hands over is held here
/// in memory for a while, with its position. The callers hold [`Recovery::broadcasting`], so a
/// restoring socket sees the position and the entries change together.
impl Recovery {
    /// The backend handed over the broadcast at `offset`: `packet` gets the offset as its last
    /// argument (the client remembers it) and is logged, unless it is volatile or has an ack.
    pub(crate) fn take_logged(
        &self,
        packet: &mut crate::parser::Packet,
        opts: &BroadcastOptions,
        volatile: bool,
        offset: String,
    ) {
        let started = lock(&self.log).complete_after.is_some();
        if let crate::parser::PacketData::Event {
            args: Value::Array(args),
            attachments,
            id: None,
        } = &mut packet.data
            && !volatile
        {
            args.push(Value::String(offset.clone()));
            // Before the backend said where it started, no window can be complete.
            if started {
                let args = Value::Array(args.clone());
                self.log(offset.clone(), opts.clone(), args, attachments.clone());
            }
        }
        if started {
            lock(&self.log).position = Some(offset);
        }
    }

    /// The backend's log reached `offset`: every broadcast up to it was handed over.
    pub(crate) fn log_reached(&self, offset: &str) {
        let mut log = lock(&self.log);
        if log.complete_after.is_none() {
            log.complete_after = Some(offset.to_owned());
        }
        log.position = Some(offset.to_owned());
    }

    /// Whether the backend handed over the broadcast at `offset` already (a client that
    /// comes from a node ahead of this one must wait, or would get it again).
    pub(crate) fn has_reached(&self, offset: &str) -> bool {
        lock(&self.log)
            .position
            .as_deref()
            .and_then(|p| log::compare(p, offset))
            .is_some_and(|o| o.is_ge())
    }

    /// From where this node's memory holds every broadcast: what came before must be read
    /// from the backend.
    pub(crate) fn complete_after(&self) -> Option<String> {
        lock(&self.log).complete_after.clone()
    }

    /// What `session` missed after `offset`: the broadcasts read from the backend up to where
    /// this node's memory starts, then those in memory. Run under [`Recovery::restoring`]:
    /// every later broadcast reaches the socket live.
    pub(crate) fn missed_from_log(
        &self,
        session: &Session,
        offset: &str,
        fetched: Vec<LoggedBroadcast>,
    ) -> Vec<Missed> {
        let log = lock(&self.log);
        let before_memory = |o: &str| match &log.complete_after {
            Some(start) => log::compare(o, start).is_some_and(|c| c.is_le()),
            None => true,
        };
        let mut missed: Vec<Missed> = fetched
            .into_iter()
            .filter(|b| !b.volatile && before_memory(&b.offset) && reaches(&b.opts, session))
            .filter_map(|b| match b.packet.data {
                crate::parser::PacketData::Event {
                    args: Value::Array(mut args),
                    attachments,
                    id: None,
                } => {
                    args.push(Value::String(b.offset));
                    Some((Value::Array(args), attachments))
                }
                _ => None,
            })
            .collect();
        missed.extend(
            log.entries
                .iter()
                .filter(|e| log::compare(&e.offset, offset).is_some_and(|c| c.is_gt()))
                .filter(|e| reaches(&e.opts, session))
                .map(|e| (e.args.clone(), e.attachments.clone())),
        );
        missed
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

    /// Back from a [`SessionStore`]; `None` for ids neither sio nor Node could have made.
    pub(crate) fn from_stored(stored: RecoverableSession) -> Option<Session> {
        Some(Session {
            sid: Sid::parse_socket_id(&stored.sid).ok()?,
            pid: Sid::parse_socket_id(&stored.pid).ok()?,
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
        let recovery = Recovery::new(RecoveryConfig::default(), false);
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
    fn with_a_backend_log_older_broadcasts_come_from_it_and_newer_from_memory() {
        let recovery = Recovery::new(RecoveryConfig::default(), true);
        let event = |n: u64| crate::parser::Packet::event("/", "e", &n, vec![]).unwrap();
        let to = |room: &str| BroadcastOptions {
            rooms: vec![room.to_owned()],
            ..Default::default()
        };
        // Handed over before the backend said where it started: not logged, nor counted.
        let mut early = event(0);
        recovery.take_logged(&mut early, &to("a"), false, "1-0".into());
        assert!(!recovery.logs("1-0"));
        recovery.log_reached("5-0");
        for (n, room) in [(6, "a"), (7, "b"), (8, "a")] {
            let mut packet = event(n);
            recovery.take_logged(&mut packet, &to(room), false, format!("{n}-0"));
        }
        assert!(recovery.has_reached("8-0") && !recovery.has_reached("9-0"));
        assert_eq!(recovery.complete_after().as_deref(), Some("5-0"));
        let fetched = [(3, "a"), (4, "b"), (5, "a"), (6, "a")]
            .map(|(n, room)| LoggedBroadcast::new(format!("{n}-0"), event(n), to(room), false));
        let s = session(&["a"]);
        let args: Vec<Value> = recovery
            .missed_from_log(&s, "2-0", fetched.to_vec())
            .into_iter()
            .map(|(args, _)| args)
            .collect();
        // 6 is in memory: it is not sent twice.
        assert_eq!(
            args,
            vec![
                json!(["e", 3, "3-0"]),
                json!(["e", 5, "5-0"]),
                json!(["e", 6, "6-0"]),
                json!(["e", 8, "8-0"])
            ]
        );
    }

    #[test]
    fn only_offsets_of_the_recovery_form_are_offsets() {
        let recovery = Recovery::new(RecoveryConfig::default(), false);
        assert!(Recovery::is_offset(&recovery.next_offset()));
        for text in [
            "hello",
            "a-1",
            "",
            "-",
            &format!("{}-", Sid::new(0)),
            "1733-0",
        ] {
            assert!(!Recovery::is_offset(text), "{text}");
        }
    }

    #[test]
    fn the_log_keeps_at_most_its_byte_cap_dropping_the_oldest() {
        let recovery = Recovery::new(RecoveryConfig::default(), false);
        let big = Bytes::from(vec![0u8; 1 << 20]);
        let offsets: Vec<String> = (0..100).map(|_| recovery.next_offset()).collect();
        for offset in &offsets {
            recovery.log(
                offset.clone(),
                BroadcastOptions::default(),
                json!(["e"]),
                vec![big.clone()],
            );
        }
        let log = lock(&recovery.log);
        assert!(log.bytes <= LOG_MAX_BYTES, "{}", log.bytes);
        drop(log);
        assert!(!recovery.logs(&offsets[0]));
        assert!(recovery.logs(&offsets[99]));
    }

    #[test]
    fn unknown_offsets_and_expired_sessions_do_not_restore() {
        let recovery = Recovery::new(
            RecoveryConfig::default().max_disconnection_duration(Duration::ZERO),
            false,
        );
        let s = session(&[]);
        recovery.persist(s.clone());
        assert!(recovery.restore(s.pid, "0").is_none());
        let recovery = Recovery::new(RecoveryConfig::default(), false);
        recovery.persist(s.clone());
        assert!(recovery.restore(s.pid, "nope").is_none());
    }
}
