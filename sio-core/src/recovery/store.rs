//! The seam through which a cluster backend keeps recovery sessions where every node can take
//! them back, so that a client whose node died (even by SIGKILL) recovers on another one.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapter::{BackendFuture, Room};

/// What a socket leaves for its client's return: its id, private session id, rooms and
/// `socket.data`. Nodes write it through while the socket lives, since a killed node writes
/// nothing at disconnection time.
///
/// ```
/// use sio_core::RecoverableSession;
///
/// let s = RecoverableSession::new("sid".into(), "pid".into(), vec!["lobby".into()], serde_json::json!({}));
/// assert_eq!(s.rooms, ["lobby"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecoverableSession {
    /// The socket id the client gets back.
    pub sid: String,
    /// The private session id the client sends on reconnection.
    pub pid: String,
    /// The socket's rooms (its own id's room included).
    pub rooms: Vec<Room>,
    /// `socket.data`.
    pub data: Value,
}

impl RecoverableSession {
    /// A session with these fields.
    pub fn new(sid: String, pid: String, rooms: Vec<Room>, data: Value) -> Self {
        RecoverableSession {
            sid,
            pid,
            rooms,
            data,
        }
    }
}

/// Where a cluster keeps recovery sessions, shared by its nodes (see
/// [`Backend::session_store`](crate::Backend::session_store)). Missed broadcasts are not kept
/// here: every node already logs every broadcast of the cluster for its own recovering clients.
///
/// What a store must guarantee, since the `pid` a client presents is all that recovery trusts:
/// - a session belongs to the namespace it was saved for: [`take`](SessionStore::take) for
///   another namespace finds nothing;
/// - a session [`save`](SessionStore::save)d for a connected socket cannot be taken while that
///   socket's node is alive: only once it is [`release`](SessionStore::release)d (its socket
///   disconnected and may come back), or once its node is gone (killed);
/// - after [`remove`](SessionStore::remove) nothing can be taken, and no write that this node
///   made before it brings the session back: one node's writes apply in the order made;
/// - a take succeeds once: a second take finds nothing.
///
/// ```
/// use std::time::Duration;
/// use sio_core::{BackendFuture, RecoverableSession, SessionStore};
///
/// #[derive(Debug)]
/// struct Nowhere;
///
/// impl SessionStore for Nowhere {
///     fn save(&self, _ns: &str, _session: &RecoverableSession, _ttl: Duration) {}
///     fn release(&self, _ns: &str, _session: &RecoverableSession, _ttl: Duration) {}
///     fn remove(&self, _ns: &str, _pid: &str) {}
///     fn take(&self, _ns: &str, _pid: &str) -> BackendFuture<Option<RecoverableSession>> {
///         Box::pin(async { Ok(None) })
///     }
/// }
/// ```
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Writes (or rewrites) the session of a socket connected to this node, kept for `ttl`
    /// from now, so that its client can recover elsewhere if this node is killed. It cannot be
    /// taken while this node is alive. Fire and forget: a failed write costs only that
    /// session's recovery.
    fn save(&self, ns: &str, session: &RecoverableSession, ttl: Duration);

    /// The socket disconnected and its client may come back: from now on its session (this
    /// last state of it) can be taken, for `ttl`.
    fn release(&self, ns: &str, session: &RecoverableSession, ttl: Duration);

    /// Forgets a session that will not come back (a clean disconnection, a kick).
    fn remove(&self, ns: &str, pid: &str);

    /// Takes a released session of namespace `ns` away, or one whose node is gone (once: a
    /// second take finds nothing).
    fn take(&self, ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>>;

    /// [`save`](SessionStore::save), for a socket of the Engine.IO connection `conn` (its
    /// engine sid): the store also keeps, for as long as the session, that `conn` has a socket
    /// in `ns` with this `pid`, for [`adopt`](SessionStore::adopt). The default only saves
    /// (the connection is never adopted).
    fn save_linked(&self, conn: &str, ns: &str, session: &RecoverableSession, ttl: Duration) {
        let _ = conn;
        self.save(ns, session, ttl);
    }

    /// Claims the connection `conn` for one node's adoption of a POST its dead owner could not
    /// take, for at most `ttl`, and lists its sockets as `(namespace, pid)` pairs (those
    /// [`save_linked`](SessionStore::save_linked) for it; some may be gone already, which
    /// [`take`](SessionStore::take) tells). `None` when another node's adoption holds the
    /// claim: exactly one node adopts at a time. The claim says nothing of the owner: the
    /// takes that follow refuse the sessions of a node that is alive. The default never
    /// adopts.
    fn adopt(&self, conn: &str, ttl: Duration) -> BackendFuture<Option<Vec<(String, String)>>> {
        let _ = (conn, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Ends an adoption of `conn` that [`adopt`](SessionStore::adopt) claimed, whose sockets
    /// (the sessions `pids`) were released: the next adoption of `conn` may start once those
    /// releases are written, so that it can take them.
    fn adopted(&self, conn: &str, pids: Vec<String>) {
        let _ = (conn, pids);
    }
}
