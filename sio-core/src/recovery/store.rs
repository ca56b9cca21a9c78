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
/// ```
/// use std::time::Duration;
/// use sio_core::{BackendFuture, RecoverableSession, SessionStore};
///
/// #[derive(Debug)]
/// struct Nowhere;
///
/// impl SessionStore for Nowhere {
///     fn save(&self, _ns: &str, _session: &RecoverableSession, _ttl: Duration) {}
///     fn remove(&self, _ns: &str, _pid: &str) {}
///     fn take(&self, _ns: &str, _pid: &str) -> BackendFuture<Option<RecoverableSession>> {
///         Box::pin(async { Ok(None) })
///     }
/// }
/// ```
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Writes (or rewrites) a session, kept for `ttl` from now. Fire and forget: a failed
    /// write costs only that session's recovery.
    fn save(&self, ns: &str, session: &RecoverableSession, ttl: Duration);

    /// Forgets a session that will not come back (a clean disconnection).
    fn remove(&self, ns: &str, pid: &str);

    /// Takes a session away (once: a second take finds nothing).
    fn take(&self, ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>>;
}
