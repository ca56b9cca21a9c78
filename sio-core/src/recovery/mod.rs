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
//! node can send a returning client what it missed. When the backend offers a
//! [`SessionStore`], sessions live there instead of in this node's memory, and are written
//! through while the socket lives: a client whose node was killed comes back to any other node.
//!
//! Nodes log the cluster's broadcasts in the order each received them, and two nodes that
//! broadcast at the same time each deliver their own first: a position in one node's log
//! means nothing in another's. So every node numbers its own broadcasts and sends the number
//! with them (as their last argument, which the receiving node takes off); the offset a
//! client gets says where the serving node stood in every node's numbering when it delivered
//! the event, and the event's position in that node's log (see the `offset` and `origins`
//! modules). A client back on the node it left is served by position. On another node it is
//! served by numbering: each node delivers another's broadcasts in the order they were sent,
//! so any node knows which of its logged broadcasts the client missed, and whether its log
//! still holds all of them; if not, the client gets a new session.
//!
//! When the backend keeps a [`BroadcastLog`] (Redis streams), it gives broadcasts their
//! offsets and every node hands its own broadcasts back in log order; the node then keeps only
//! a short window of the log in memory and reads older broadcasts back from the backend, so a
//! node that just started can still send a returning client what it missed.

mod log;
mod offset;
mod origins;
mod store;

pub(crate) use log::read_missed;
pub use log::{BroadcastLog, LogPage, LoggedBroadcast};
pub use store::{RecoverableSession, SessionStore};

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _};
use serde_json::Value;
use tokio::time::Instant;

use crate::adapter::{BroadcastOptions, Room};
use crate::engine::Sid;
use crate::parser::{Packet, PacketData};
use offset::{Offset, Origin, Scope};
use origins::{Arrival, Origins, Verdict};

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
    /// The offset its clients got (its last argument).
    offset: String,
    /// Without a backend log: its place in this node's log and in its origin's numbering.
    place: Option<Place>,
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

/// Where a broadcast stands, without a backend log.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// In this node's log.
    position: u64,
    /// The node that numbered it (its origin), and its number there.
    origin: Origin,
    seq: u64,
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
#[derive(Debug)]
struct Log {
    entries: VecDeque<Logged>,
    /// What `entries` hold, as [`Logged::size`] counts it.
    bytes: usize,
    /// Without a backend log: how far this node delivered each node's broadcasts, and which
    /// `entries` still holds.
    origins: Origins,
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
    /// How this node numbers its own broadcasts. Held from numbering a broadcast to
    /// delivering it here, so that other nodes and this one get them in number order.
    own: Mutex<Own>,
    /// Held while a broadcast is logged and delivered, and while a restoring socket joins its
    /// rooms and reads what it missed: no broadcast is missed or sent twice, and every socket
    /// gets the broadcasts in the order of the log, the order its offsets follow.
    gate: Mutex<()>,
}

/// This node's numberings of its broadcasts: those to the cluster, and those to its own
/// sockets only (which the other nodes never see, so they must not wait for them).
#[derive(Debug)]
struct Own {
    cluster: Numbering,
    local: Numbering,
}

#[derive(Debug)]
struct Numbering {
    origin: Origin,
    next: u64,
    /// When the last broadcast was numbered.
    last: Option<Instant>,
}

impl Numbering {
    fn new(scope: Scope) -> Self {
        Numbering {
            origin: Origin::random(scope),
            next: 0,
            last: None,
        }
    }

    /// The next number, in a new numbering after a silence longer than `window`: by then the
    /// other nodes may have forgotten this one (see `origins::GRACE`), and a node hearing it
    /// again from the middle would think it had missed its beginning.
    fn take(&mut self, now: Instant, window: Duration) -> (Origin, u64) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > window)
        {
            *self = Numbering::new(self.origin.scope());
        }
        self.last = Some(now);
        let seq = self.next;
        self.next += 1;
        (self.origin, seq)
    }
}

/// The number of one of this node's broadcasts; keeps the node's numbering until dropped.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    _order: MutexGuard<'a, Own>,
    origin: Origin,
    seq: u64,
}

impl Claim<'_> {
    /// Appends the broadcast's number to the packet the other nodes get (as its last
    /// argument, where their [`Recovery::take_remote`] finds it).
    pub(crate) fn mark(&self, packet: &mut Packet) {
        if let Some((args, _)) = event_args(packet) {
            let token = Offset::new(vec![(self.origin, self.seq)]);
            args.push(Value::String(token.to_string()));
        }
    }
}

impl Recovery {
    pub(crate) fn new(config: RecoveryConfig, backend_log: bool) -> Self {
        let window = config.max_disconnection_duration;
        Recovery {
            config,
            backend_log,
            sessions: Mutex::new(Sessions {
                by_pid: HashMap::new(),
                next_sweep: Instant::now(),
            }),
            log: Mutex::new(Log {
                entries: VecDeque::new(),
                bytes: 0,
                origins: Origins::new(window),
                complete_after: None,
                position: None,
            }),
            own: Mutex::new(Own {
                cluster: Numbering::new(Scope::Cluster),
                local: Numbering::new(Scope::Local),
            }),
            gate: Mutex::new(()),
        }
    }

    /// Held by a broadcast while it is logged and delivered.
    pub(crate) fn broadcasting(&self) -> MutexGuard<'_, ()> {
        lock(&self.gate)
    }

    /// Held by a socket being restored, see [`Recovery::broadcasting`].
    pub(crate) fn restoring(&self) -> MutexGuard<'_, ()> {
        lock(&self.gate)
    }

    pub(crate) fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    /// Numbers a broadcast of this node (`local`: for its own sockets only). Take it before
    /// publishing the broadcast and keep it until [`Recovery::deliver_own`]: the numbering is
    /// held meanwhile.
    pub(crate) fn claim(&self, local: bool) -> Claim<'_> {
        let mut own = lock(&self.own);
        let numbering = if local {
            &mut own.local
        } else {
            &mut own.cluster
        };
        let (origin, seq) = numbering.take(Instant::now(), self.config.max_disconnection_duration);
        Claim {
            _order: own,
            origin,
            seq,
        }
    }

    /// Logs this node's broadcast numbered by `claim`, and appends to it the offset its
    /// clients get. Run under [`Recovery::broadcasting`], before delivering it.
    pub(crate) fn deliver_own(
        &self,
        claim: &Claim<'_>,
        packet: &mut Packet,
        opts: &BroadcastOptions,
    ) {
        let Some((args, attachments)) = event_args(packet) else {
            return;
        };
        let now = Instant::now();
        let mut log = lock(&self.log);
        log.origins.arrive(claim.origin, claim.seq, false, now);
        self.stamp(
            &mut log,
            (claim.origin, claim.seq),
            args,
            attachments,
            opts,
            now,
        );
    }

    /// Takes another node's number off its broadcast (its last argument), logs the broadcast
    /// and appends the offset this node's clients get instead. A last argument that is not an
    /// offset (an application's, from an emitter or a node without recovery) is left alone:
    /// offsets carry a check that text does not pass by chance. Run under
    /// [`Recovery::broadcasting`], before delivering it.
    pub(crate) fn take_remote(&self, packet: &mut Packet, opts: &BroadcastOptions) {
        let Some((args, attachments)) = event_args(packet) else {
            return;
        };
        let Some(Value::String(last)) = args.last() else {
            return;
        };
        let Some(&(origin, seq)) = Offset::parse(last).as_ref().and_then(|o| o.marks().first())
        else {
            return;
        };
        if origin.scope() != Scope::Cluster {
            return;
        }
        args.pop();
        let now = Instant::now();
        let mut log = lock(&self.log);
        match log.origins.arrive(origin, seq, true, now) {
            Arrival::New => self.stamp(&mut log, (origin, seq), args, attachments, opts, now),
            Arrival::Again => {
                let offset = log.origins.offset(now);
                args.push(Value::String(offset.to_string()));
            }
        }
    }

    /// Appends where this node stands to a broadcast it delivers, and logs the broadcast.
    fn stamp(
        &self,
        log: &mut Log,
        (origin, seq): (Origin, u64),
        args: &mut Vec<Value>,
        attachments: &[Bytes],
        opts: &BroadcastOptions,
        now: Instant,
    ) {
        let (position, offset) = log.origins.stamp(now);
        let offset = offset.to_string();
        args.push(Value::String(offset.clone()));
        let args = Value::Array(args.clone());
        let size = Logged::size(&args, attachments);
        let place = Place {
            position,
            origin,
            seq,
        };
        self.append(
            log,
            Logged {
                offset,
                place: Some(place),
                opts: opts.clone(),
                at: now,
                args,
                attachments: attachments.to_vec(),
                size,
            },
        );
    }

    /// Logs a broadcast handed over by the backend's log (its arguments already end with
    /// `offset`).
    fn log(&self, offset: String, opts: BroadcastOptions, args: Value, attachments: Vec<Bytes>) {
        let size = Logged::size(&args, &attachments);
        let entry = Logged {
            offset,
            place: None,
            opts,
            at: Instant::now(),
            args,
            attachments,
            size,
        };
        self.append(&mut lock(&self.log), entry);
    }

    /// Adds an entry to the log, dropping the entries older than the recovery window (or the
    /// backend log's window) and the oldest beyond the byte cap.
    fn append(&self, log: &mut Log, entry: Logged) {
        let keep = if self.backend_log {
            self.config.max_disconnection_duration.min(LOG_WINDOW)
        } else {
            self.config.max_disconnection_duration
        };
        while log.entries.front().is_some_and(|e| {
            entry.at.duration_since(e.at) > keep || log.bytes + entry.size > LOG_MAX_BYTES
        }) {
            if let Some(gone) = log.entries.pop_front() {
                log.bytes -= gone.size;
                if let Some(place) = gone.place {
                    log.origins.dropped(place.position, place.origin, place.seq);
                }
                log.complete_after = Some(gone.offset);
            }
        }
        log.bytes += entry.size;
        log.entries.push_back(entry);
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
    /// [`Recovery::missed`]); `None` when the session expired or is unknown, or what the
    /// client missed is no longer all in the log.
    pub(crate) fn restore(&self, pid: Sid, offset: &str) -> Option<Session> {
        let (session, expires) = lock(&self.sessions).by_pid.remove(&pid)?;
        if expires <= Instant::now() {
            return None;
        }
        let sendable = if self.backend_log {
            self.logs(offset)
        } else {
            // A session in this node's memory: its client was here, and its offset has its
            // position in this node's log.
            let had = Offset::parse(offset)?;
            self.verdict(&had) <= Verdict::Behind
        };
        sendable.then_some(session)
    }

    /// Whether a client at `offset`, which may come from another node, can be sent exactly
    /// what it missed. Waits (at most a second) for this node to deliver what the client got
    /// already, and for late broadcasts to fill the holes that may hide what it missed; past
    /// that, broadcasts still on their way may reach the client twice, and a hole refuses.
    pub(crate) async fn ready_for(&self, offset: &str) -> bool {
        if self.backend_log {
            return self.logs(offset);
        }
        let Some(had) = Offset::parse(offset) else {
            return false;
        };
        for _ in 0..50 {
            match self.verdict(&had) {
                Verdict::Complete => return true,
                Verdict::Incomplete => return false,
                Verdict::Behind | Verdict::Unsure => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        self.verdict(&had) <= Verdict::Behind
    }

    fn verdict(&self, had: &Offset) -> Verdict {
        lock(&self.log).origins.verdict(had, Instant::now())
    }

    /// Whether `offset` is still in the log, so that what came after it can be sent: a check
    /// before [`Recovery::missed`] reads (and clones) the events themselves. With a backend
    /// log only: without one, offsets are no positions in the log.
    pub(crate) fn logs(&self, offset: &str) -> bool {
        lock(&self.log).entries.iter().any(|e| e.offset == offset)
    }

    /// The logged broadcasts that the client at `offset` missed and that would have reached
    /// `session`, in this node's order; `None` when some of them are no longer in the log.
    /// Run under [`Recovery::restoring`]: every later broadcast reaches the socket live.
    ///
    /// Each comes with the offset this node gave it, moved on to where the client already
    /// stands where it stands further (broadcasts it got on another node that this node
    /// delivered later), so that its next recovery does not send those again.
    pub(crate) fn missed(&self, session: &Session, offset: &str) -> Option<Vec<Missed>> {
        if self.backend_log {
            return self.missed_after(session, offset);
        }
        let had = Offset::parse(offset)?;
        let now = Instant::now();
        let mut log = lock(&self.log);
        // Holes opened since the check are what every connected socket misses too.
        if log.origins.verdict(&had, now) == Verdict::Incomplete {
            return None;
        }
        let log = &*log;
        Some(
            log.entries
                .iter()
                .filter(|e| {
                    e.place.is_some_and(|p| {
                        log.origins.missed(&had, p.position, (p.origin, p.seq), now)
                    }) && reaches(&e.opts, session)
                })
                .map(|e| replay(e, &had))
                .collect(),
        )
    }

    /// With a backend log: the logged broadcasts after `offset` that would have reached
    /// `session`; `None` when the offset is no longer (or not yet) in the log.
    fn missed_after(&self, session: &Session, offset: &str) -> Option<Vec<Missed>> {
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

/// A logged broadcast as a client at `had` gets it again: its offset joined with `had`.
fn replay(entry: &Logged, had: &Offset) -> Missed {
    let mut args = entry.args.clone();
    if let Some(stamped) = Offset::parse(&entry.offset) {
        let joined = stamped.join(had);
        if joined != stamped
            && let Value::Array(items) = &mut args
            && let Some(last) = items.last_mut()
        {
            *last = Value::String(joined.to_string());
        }
    }
    (args, entry.attachments.clone())
}

/// The arguments and attachments of an event without ack id (the only broadcasts logged).
fn event_args(packet: &mut Packet) -> Option<(&mut Vec<Value>, &Vec<Bytes>)> {
    match &mut packet.data {
        PacketData::Event {
            args: Value::Array(args),
            attachments,
            id: None,
        } => Some((args, attachments)),
        _ => None,
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

    fn to(rooms: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A node of a cluster without a shared log, as the namespace and the operators drive it.
    struct Node(Recovery);

    /// A broadcast as the sending node's sockets got it, and as the other nodes get it.
    struct Sent {
        here: Packet,
        published: Packet,
    }

    impl Node {
        fn new() -> Self {
            Node(Recovery::new(RecoveryConfig::default(), false))
        }

        fn emit(&self, text: &str, opts: &BroadcastOptions) -> Sent {
            self.emit_with(text, opts, false)
        }

        fn emit_with(&self, text: &str, opts: &BroadcastOptions, local: bool) -> Sent {
            let mut here = Packet::event("/", "msg", text, vec![]).unwrap();
            let claim = self.0.claim(local);
            let mut published = here.clone();
            claim.mark(&mut published);
            let _gate = self.0.broadcasting();
            self.0.deliver_own(&claim, &mut here, opts);
            Sent { here, published }
        }

        /// What this node's sockets get of another node's broadcast.
        fn receive(&self, sent: &Sent, opts: &BroadcastOptions) -> Packet {
            let mut packet = sent.published.clone();
            let _gate = self.0.broadcasting();
            self.0.take_remote(&mut packet, opts);
            packet
        }

        /// The payloads of what a client at `offset` missed, if this node can tell.
        fn missed(&self, session: &Session, offset: &str) -> Option<Vec<String>> {
            let missed = self.0.missed(session, offset)?;
            Some(missed.iter().map(|(args, _)| text(args)).collect())
        }

        fn verdict(&self, offset: &str) -> Verdict {
            self.0.verdict(&Offset::parse(offset).unwrap())
        }
    }

    fn args(packet: &Packet) -> &Value {
        match &packet.data {
            PacketData::Event { args, .. } => args,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn text(args: &Value) -> String {
        args[1].as_str().unwrap().to_owned()
    }

    /// The offset a client remembers from an event (its last argument).
    fn offset(packet: &Packet) -> String {
        let args = args(packet).as_array().unwrap();
        args.last().unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn crossed_broadcasts_recover_on_either_node_without_loss_or_duplicate() {
        let (a, b) = (Node::new(), Node::new());
        let all = to(&[]);
        // X from A and Y from B cross: A delivers X then Y, B delivers Y then X.
        let x = a.emit("X", &all);
        let y = b.emit("Y", &all);
        let y_on_a = a.receive(&y, &all);
        let x_on_b = b.receive(&x, &all);
        assert_eq!(text(args(&y_on_a)), "Y");
        assert_eq!(args(&y_on_a).as_array().unwrap().len(), 3, "one offset");
        let s = session(&[]);
        for (got_last, missed) in [
            (&x.here, vec!["Y"]),
            (&y_on_a, vec![]),
            (&y.here, vec!["X"]),
            (&x_on_b, vec![]),
        ] {
            let at = offset(got_last);
            for node in [&a, &b] {
                assert_eq!(node.verdict(&at), Verdict::Complete);
                assert_eq!(node.missed(&s, &at).unwrap(), missed, "at {at}");
            }
        }
        // A client that got X on A and Y from B's log stands after both: back on A, it gets
        // neither again, although Y's offset on B did not count X.
        let replayed = b.0.missed(&s, &offset(&x.here)).unwrap();
        let at = replayed[0]
            .0
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap();
        assert_ne!(at, offset(&y.here));
        assert_eq!(a.missed(&s, at).unwrap(), Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_back_on_its_node_gets_what_followed_it_whatever_reached_the_node() {
        // Broadcasts of A that B gets late, or never (as from a backend that reorders them,
        // or sends some only to the nodes with sockets in their rooms).
        let (a, b) = (Node::new(), Node::new());
        let all = to(&[]);
        let sent: Vec<Sent> = (0..4).map(|n| a.emit(&n.to_string(), &all)).collect();
        b.receive(&sent[0], &all);
        b.receive(&sent[2], &all);
        let after_3 = offset(&b.receive(&sent[3], &all));
        let late = b.receive(&sent[1], &all);
        let s = session(&[]);
        assert_eq!(b.verdict(&after_3), Verdict::Complete);
        assert_eq!(b.missed(&s, &after_3).unwrap(), ["1"]);
        assert_eq!(b.missed(&s, &offset(&late)).unwrap(), Vec::<String>::new());
        tokio::time::advance(Duration::from_secs(1)).await;
        let more = a.emit("4", &all);
        b.receive(&more, &all);
        assert_eq!(b.missed(&s, &after_3).unwrap(), ["1", "4"]);
    }

    #[test]
    fn restores_once_with_the_broadcasts_that_would_have_reached_it() {
        let node = Node::new();
        let s = session(&["a"]);
        let first = offset(&node.emit("0", &to(&[])).here);
        node.0.persist(s.clone());
        for (text, rooms) in [("1", to(&["a"])), ("2", to(&["b"])), ("3", to(&[]))] {
            node.emit(text, &rooms);
        }
        let restored = node.0.restore(s.pid, &first).unwrap();
        assert_eq!(restored, s);
        assert_eq!(node.missed(&restored, &first).unwrap(), ["1", "3"]);
        assert!(node.0.restore(s.pid, &first).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_broadcast_that_never_arrives_refuses_the_clients_that_missed_it() {
        let (a, b) = (Node::new(), Node::new());
        let all = to(&[]);
        let sent: Vec<Sent> = (0..3).map(|n| a.emit(&n.to_string(), &all)).collect();
        // B never gets 1: it waits for it a little, then knows it lost it.
        b.receive(&sent[0], &all);
        b.receive(&sent[2], &all);
        let (after_0, after_1) = (offset(&sent[0].here), offset(&sent[1].here));
        assert_eq!(b.verdict(&after_0), Verdict::Unsure);
        assert!(!b.0.ready_for(&after_0).await);
        assert!(b.0.ready_for(&after_1).await);
        assert_eq!(b.missed(&session(&[]), &after_1).unwrap(), ["2"]);
        assert!(b.missed(&session(&[]), &after_0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_ahead_of_the_node_waits_for_it() {
        let (a, b) = (Node::new(), Node::new());
        let all = to(&[]);
        let x = a.emit("X", &all);
        let at = offset(&x.here);
        assert_eq!(
            b.verdict(&at),
            Verdict::Incomplete,
            "B never heard of A yet"
        );
        let waiting = async { b.0.ready_for(&at).await };
        let arriving = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            b.receive(&x, &all);
        };
        let (ready, ()) = tokio::join!(waiting, arriving);
        assert!(
            !ready,
            "an origin it never heard of, so soon after it started"
        );
        // Once B heard of A, a client further along A waits for B to catch up.
        let y = a.emit("Y", &all);
        let at = offset(&y.here);
        assert_eq!(b.verdict(&at), Verdict::Behind);
        let waiting = async { b.0.ready_for(&at).await };
        let arriving = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            b.receive(&y, &all);
        };
        let (ready, ()) = tokio::join!(waiting, arriving);
        assert!(ready);
        assert_eq!(b.missed(&session(&[]), &at).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn local_broadcasts_are_numbered_apart_and_never_awaited_elsewhere() {
        let (a, b) = (Node::new(), Node::new());
        let all = to(&[]);
        let x = a.emit("X", &all);
        b.receive(&x, &all);
        let local = a.emit_with("L", &all, true);
        let y = a.emit("Y", &all);
        b.receive(&y, &all);
        let s = session(&[]);
        let after_local = offset(&local.here);
        assert_eq!(a.missed(&s, &after_local).unwrap(), ["Y"]);
        assert_eq!(b.verdict(&after_local), Verdict::Complete);
        assert_eq!(b.missed(&s, &after_local).unwrap(), ["Y"]);
        assert_eq!(
            b.missed(&s, &offset(&y.here)).unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_silent_for_longer_than_the_window_numbers_anew() {
        let node = Node::new();
        let first = node.emit("0", &to(&[])).published;
        let again = node.emit("1", &to(&[])).published;
        tokio::time::advance(RecoveryConfig::default().max_disconnection_duration).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let renewed = node.emit("2", &to(&[])).published;
        let origin = |p: &Packet| Offset::parse(&offset(p)).unwrap().marks()[0];
        assert_eq!(origin(&first).0, origin(&again).0);
        assert_eq!(origin(&again).1, 1);
        assert_ne!(origin(&renewed).0, origin(&first).0);
        assert_eq!(origin(&renewed).1, 0);
    }

    #[test]
    fn application_text_is_not_taken_for_an_offset() {
        let node = Node::new();
        let all = to(&[]);
        for last in [
            "hello".to_owned(),
            "username:1".to_owned(),
            format!("{}-1f", Sid::new(0)),
        ] {
            let mut packet = Packet::event("/", "msg", &("text", &last), vec![]).unwrap();
            let before = packet.clone();
            node.0.take_remote(&mut packet, &all);
            assert_eq!(packet, before);
        }
        assert!(lock(&node.0.log).entries.is_empty());
    }

    #[test]
    fn with_a_backend_log_older_broadcasts_come_from_it_and_newer_from_memory() {
        let recovery = Recovery::new(RecoveryConfig::default(), true);
        let event = |n: u64| crate::parser::Packet::event("/", "e", &n, vec![]).unwrap();
        // Handed over before the backend said where it started: not logged, nor counted.
        let mut early = event(0);
        recovery.take_logged(&mut early, &to(&["a"]), false, "1-0".into());
        assert!(!recovery.logs("1-0"));
        recovery.log_reached("5-0");
        for (n, room) in [(6, "a"), (7, "b"), (8, "a")] {
            let mut packet = event(n);
            recovery.take_logged(&mut packet, &to(&[room]), false, format!("{n}-0"));
        }
        assert!(recovery.has_reached("8-0") && !recovery.has_reached("9-0"));
        assert_eq!(recovery.complete_after().as_deref(), Some("5-0"));
        let fetched = [(3, "a"), (4, "b"), (5, "a"), (6, "a")]
            .map(|(n, room)| LoggedBroadcast::new(format!("{n}-0"), event(n), to(&[room]), false));
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
    fn the_log_keeps_at_most_its_byte_cap_dropping_the_oldest() {
        let node = Node::new();
        let big = Bytes::from(vec![0u8; 1 << 20]);
        let offsets: Vec<String> = (0..100)
            .map(|_| {
                let mut here = Packet::event("/", "msg", "big", vec![big.clone()]).unwrap();
                let claim = node.0.claim(false);
                node.0.deliver_own(&claim, &mut here, &to(&[]));
                offset(&here)
            })
            .collect();
        let log = lock(&node.0.log);
        assert!(log.bytes <= LOG_MAX_BYTES, "{}", log.bytes);
        drop(log);
        let s = session(&[]);
        assert!(node.0.missed(&s, &offsets[0]).is_none());
        assert_eq!(node.0.missed(&s, &offsets[98]).unwrap().len(), 1);
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
