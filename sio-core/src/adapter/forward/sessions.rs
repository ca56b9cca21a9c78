//! What the edge knows of the sessions it forwards requests for: which ones their owner has
//! confirmed, and which have a POST on its way.
//!
//! A POST carries up to `max_payload` bytes, which the backend copies to the owner. It is only
//! sent for a session its owner has answered for (anything but "Session ID unknown") in a
//! while, and one at a time per session, as a real client sends them: a made-up sid with a
//! real node id gets a small probe through, never a body.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{ForwardedResponse, Sid};

/// Confirmed sessions kept at most. Past it, a session is probed before each POST, which is
/// correct, only slower.
const MAX_CONFIRMED: usize = 100_000;

/// How often a full table is swept of its expired entries, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The sessions of other nodes that this edge forwards for.
#[derive(Debug)]
pub(super) struct Sessions {
    /// How long an owner's answer confirms its session: longer than a client waits between
    /// two polls, so a live session stays confirmed.
    ttl: Duration,
    confirmed: Mutex<Confirmed>,
    /// Sessions with a POST on its way through this node.
    posting: Mutex<HashSet<Sid>>,
}

#[derive(Debug)]
struct Confirmed {
    until: HashMap<Sid, Instant>,
    swept: Instant,
}

/// A session's one POST in flight through this node; dropping it lets the next one go.
#[derive(Debug)]
pub(super) struct Posting {
    sessions: Arc<Sessions>,
    sid: Sid,
}

impl Drop for Posting {
    fn drop(&mut self) {
        self.sessions.posting().remove(&self.sid);
    }
}

impl Sessions {
    /// Sessions confirmed for `ttl` by each answer of their owner.
    pub(super) fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            confirmed: Mutex::new(Confirmed {
                until: HashMap::new(),
                swept: Instant::now(),
            }),
            posting: Mutex::new(HashSet::new()),
        }
    }

    fn confirmed(&self) -> MutexGuard<'_, Confirmed> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn posting(&self) -> MutexGuard<'_, HashSet<Sid>> {
        self.posting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the owner of `sid` answered for it recently.
    pub(super) fn is_confirmed(&self, sid: Sid) -> bool {
        self.confirmed()
            .until
            .get(&sid)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Records the owner's answer to a request for `sid`: "Session ID unknown" forgets the
    /// session, any other answer confirms it.
    pub(super) fn answered(&self, sid: Sid, response: &ForwardedResponse) {
        let mut confirmed = self.confirmed();
        if response.is_unknown_session() {
            confirmed.until.remove(&sid);
            return;
        }
        let now = Instant::now();
        if confirmed.until.len() >= MAX_CONFIRMED
            && !confirmed.until.contains_key(&sid)
            && now.saturating_duration_since(confirmed.swept) >= SWEEP_EVERY
        {
            confirmed.swept = now;
            confirmed.until.retain(|_, until| *until > now);
        }
        if confirmed.until.len() < MAX_CONFIRMED || confirmed.until.contains_key(&sid) {
            confirmed.until.insert(sid, now + self.ttl);
        }
    }

    /// Claims the one POST of `sid` that may be on its way; `None` when one is already.
    pub(super) fn claim_post(self: &Arc<Self>, sid: Sid) -> Option<Posting> {
        self.posting().insert(sid).then(|| Posting {
            sessions: self.clone(),
            sid,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn answer(status: u16, body: &'static str) -> ForwardedResponse {
        ForwardedResponse {
            id: 0,
            status,
            headers: vec![],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_owner_s_answer_confirms_for_a_while_and_unknown_forgets() {
        let sessions = Sessions::new(Duration::from_secs(10));
        let sid = Sid::new(1);
        assert!(!sessions.is_confirmed(sid));
        sessions.answered(sid, &answer(200, "ok"));
        assert!(sessions.is_confirmed(sid));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!sessions.is_confirmed(sid));
        sessions.answered(sid, &answer(400, r#"{"code":3,"message":"Bad request"}"#));
        assert!(sessions.is_confirmed(sid));
        sessions.answered(
            sid,
            &answer(400, r#"{"code":1,"message":"Session ID unknown"}"#),
        );
        assert!(!sessions.is_confirmed(sid));
    }

    #[test]
    fn one_post_per_session_at_a_time() {
        let sessions = Arc::new(Sessions::new(Duration::from_secs(10)));
        let (a, b) = (Sid::new(1), Sid::new(1));
        let first = sessions.claim_post(a).expect("free");
        assert!(sessions.claim_post(a).is_none());
        let other = sessions.claim_post(b).expect("another session");
        drop(first);
        assert!(sessions.claim_post(a).is_some());
        drop(other);
        assert!(sessions.posting().is_empty());
    }
}
