//! Adoption of a dead owner's POST: the Socket.IO side of
//! [`Handler::adopt`](crate::engine::Handler::adopt).
//!
//! A polling session lives on its owner node; when that node is dead (its node channel has no
//! listener: killed, or cut off from the cluster backend), the POST a client had just sent
//! would be answered "Session ID unknown" and its packets lost. Instead, the edge that got it
//! claims the connection in the session store (one node at a time), takes its sockets' sessions
//! (the store refuses those of a node that is alive, so a frozen owner is never adopted),
//! restores them on a connection of its own that nobody polls, runs the POST's packets through
//! them, and releases them again: the client, told by its next poll that the session is gone,
//! reconnects and recovers them, with every broadcast it missed.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Sid;
use crate::io::IoInner;
use crate::recovery::Session;
use crate::socket::{Conn, Socket};

/// How long a claim keeps other nodes from adopting the same connection: longer than an
/// adoption takes (a few store round trips and one POST's handlers being taken), short enough
/// that a node that dies mid-adoption does not hold the connection's next POST for long.
const CLAIM_TTL: Duration = Duration::from_secs(5);

/// How long an adoption waits for another one's claim of the same connection to go, and how
/// often it asks. The previous adoption's releases must land before it lets go, which takes a
/// store round trip or two.
const CLAIM_WAIT: Duration = Duration::from_secs(1);
const CLAIM_RETRY: Duration = Duration::from_millis(10);

/// Restores on `conn` (a connection made for the adoption, never polled) the sockets of its
/// connection that a dead owner left; whether any was restored. Then the caller runs the POST
/// and closes `conn`, which releases them ([`let_go`]).
pub(crate) async fn adopt(io: &Arc<IoInner>, conn: &Arc<Conn>) -> bool {
    let Some(store) = io.session_store() else {
        return false;
    };
    let sid = conn.sid().to_string();
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    let pairs = loop {
        match store.adopt(&sid, CLAIM_TTL).await {
            Ok(Some(pairs)) => break pairs,
            // The client's previous POST, adopted elsewhere, is letting its sockets go: its
            // client sent this one once it was answered, so the claim goes soon.
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(CLAIM_RETRY).await;
            }
            Ok(None) => return false,
            Err(err) => {
                tracing::debug!(target: "sio::adoption", %err, "session store unreachable, no adoption");
                return false;
            }
        }
    };
    conn.data.start_adoption(io);
    let mut restored = Vec::new();
    for (ns, pid) in pairs {
        if let Some(pid) = restore(io, conn, &ns, &pid).await {
            restored.push(pid);
        }
    }
    if restored.is_empty() {
        // Nothing of it was takeable (its owner is alive, or its client recovered already).
        store.adopted(&sid, restored);
        return false;
    }
    tracing::debug!(target: "sio::adoption", sockets = restored.len(), "adopting a dead owner's POST");
    true
}

/// Takes the session `pid` of namespace `ns` and restores its socket on `conn`; its pid when
/// it did.
async fn restore(io: &Arc<IoInner>, conn: &Arc<Conn>, ns: &str, pid: &str) -> Option<String> {
    let nsp = io.namespace(ns)?;
    let (store, recovery) = (nsp.session_store()?, nsp.recovery()?);
    let wanted = Sid::parse_socket_id(pid).ok()?;
    let stored = match store.take(ns, pid).await {
        Ok(stored) => stored?,
        Err(err) => {
            tracing::debug!(target: "sio::adoption", %err, "session store unreachable, socket not adopted");
            return None;
        }
    };
    let session = Session::from_stored(stored).filter(|s| s.pid == wanted)?;
    let ttl = recovery.config().max_disconnection_duration;
    let put_back = |session: &Session| store.release(ns, &session.to_stored(), ttl);
    let Some(ticket) = conn.data.reserve(ns) else {
        put_back(&session);
        return None;
    };
    let socket = Socket::restore(
        nsp.clone(),
        conn.clone(),
        serde_json::Value::Object(Default::default()),
        &session,
    );
    if conn.data.fill(&ticket, &socket).is_err() || !nsp.add_socket(socket.clone()) {
        // Its id is live on this node already: the session is not for taking here.
        conn.data.remove(&socket);
        put_back(&session);
        return None;
    }
    socket.join(session.rooms.clone());
    Some(pid.to_owned())
}

/// Lets the sockets an adoption restored on `conn` go as a recoverable disconnection (released
/// in the store, no handler run), then ends the adoption's claim.
pub(crate) fn let_go(io: &IoInner, conn: &Conn, sockets: Vec<crate::socket::SocketRef>) {
    let mut pids = Vec::new();
    for socket in sockets {
        if let Some(pid) = socket.pid() {
            pids.push(pid.to_string());
        }
        socket.nsp().let_go(&socket);
    }
    if let Some(store) = io.session_store() {
        store.adopted(&conn.sid().to_string(), pids);
    }
}
