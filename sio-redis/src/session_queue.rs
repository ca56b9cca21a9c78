//! This node's session writes on their way to Redis: one pending write per session (a later
//! state replaces an earlier one that has not been sent), sent in pipelined batches by one
//! task, and sent again until they land. Nothing is dropped, and memory is bounded by the
//! number of sessions, not by how often they change: a client that calls `set_data` in a loop
//! costs one pending write.
//!
//! A session whose state did not change since Redis last got it is refreshed with `PEXPIRE`
//! alone, so the keep-alive tick of a node with many sockets costs a few bytes per socket.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::target::Connections;

type Pool = bb8_redis::bb8::Pool<Connections>;

/// Writes per pipeline: big enough that 100k refreshes take a few hundred round trips, small
/// enough that one `MULTI` block does not hold Redis for long.
const BATCH: usize = 512;

/// Times a batch that Redis answered with an error (not a lost connection) is sent again
/// before it is given up on: such a batch was applied except for the failing command, so
/// sending it forever would only repeat the error.
const COMMAND_ERROR_TRIES: u32 = 3;

/// What Redis must end up holding for one session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// Connected to this node: not takeable while this node is alive.
    Live {
        ns: String,
        value: String,
        ttl_ms: u64,
        /// Of `ns`, `value` and `link`, to tell a refresh from a change.
        digest: u64,
        /// The connection whose socket it is, kept with it (see [`Link`]).
        link: Option<Link>,
    },
    /// The same state as Redis holds, for longer (its link too).
    Refresh { ttl_ms: u64, link: Option<Link> },
    /// Disconnected, may come back: takeable.
    Released {
        ns: String,
        value: String,
        ttl_ms: u64,
    },
    /// Will not come back.
    Removed,
}

/// That the socket of a session belongs to an Engine.IO connection: what an adoption of that
/// connection's POST looks up (see `SessionStore::adopt`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Link {
    /// The connection's engine sid.
    pub(crate) conn: String,
    /// The socket's namespace.
    pub(crate) ns: String,
}

/// How a [`Write`] becomes commands: the session store's key layout.
pub(crate) trait Layout: Send + Sync + 'static {
    /// Adds the commands of `write` for session `pid` to `pipe`. A [`Write::Refresh`] adds
    /// exactly one command whose answer is not ignored: `1` when the session was still there.
    fn commands(&self, pipe: &mut redis::Pipeline, pid: &str, write: &Write);
}

/// The queue, shared by the store and its writer task.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Something was queued (or the store closed).
    queued: Notify,
    /// A batch landed or failed: takes waiting for a session's writes look again.
    settled: Notify,
    closed: AtomicBool,
    hasher: RandomState,
}

#[derive(Default)]
struct State {
    /// The latest unsent write of each session.
    pending: HashMap<String, Write>,
    /// Sessions with a pending write, oldest first.
    order: VecDeque<String>,
    /// Sessions whose write is being sent now.
    sending: HashSet<String>,
    /// The digest of the live state Redis holds for each session, when known.
    written: HashMap<String, u64>,
}

impl Queue {
    /// A queue and its writer task (which must be started inside a Tokio runtime, and ends
    /// once the queue is closed and empty).
    pub(crate) fn start(pool: Pool, layout: impl Layout) -> Arc<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            queued: Notify::new(),
            settled: Notify::new(),
            closed: AtomicBool::new(false),
            hasher: RandomState::new(),
        });
        tokio::spawn(write_loop(queue.clone(), pool, layout));
        queue
    }

    /// A session is connected with this state: written in full, or only refreshed when Redis
    /// already holds it.
    pub(crate) fn live(&self, pid: &str, ns: &str, value: String, ttl_ms: u64, link: Option<Link>) {
        let digest = self.hasher.hash_one((ns, value.as_str(), &link));
        lock(&self.state).live(pid, ns, value, ttl_ms, digest, link);
        self.queued.notify_one();
    }

    /// The session's socket disconnected ([`Write::Released`]) or will not come back
    /// ([`Write::Removed`]).
    pub(crate) fn end(&self, pid: &str, write: Write) {
        let mut state = lock(&self.state);
        state.written.remove(pid);
        state.put(pid, write);
        drop(state);
        self.queued.notify_one();
    }

    /// Waits until every write this node made for `pid` has been sent, for at most `limit`;
    /// whether they were.
    pub(crate) async fn settled(&self, pid: &str, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                // Registered before looking, so that a batch landing in between wakes it.
                notified.as_mut().enable();
                if !lock(&self.state).has(pid) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// No more writes will come: the writer sends what is pending, then ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.queued.notify_one();
    }
}

impl State {
    /// See [`Queue::live`]; `digest` is of `ns`, `value` and `link`.
    fn live(
        &mut self,
        pid: &str,
        ns: &str,
        value: String,
        ttl_ms: u64,
        digest: u64,
        link: Option<Link>,
    ) {
        let unchanged = match self.pending.get(pid) {
            // The same state is already on its way: only its expiry moves.
            Some(Write::Live { digest: d, .. }) => *d == digest,
            Some(Write::Refresh { .. }) | None => self.written.get(pid) == Some(&digest),
            // No save follows an end.
            Some(Write::Released { .. } | Write::Removed) => false,
        };
        let write = if unchanged {
            Write::Refresh { ttl_ms, link }
        } else {
            Write::Live {
                ns: ns.to_owned(),
                value,
                ttl_ms,
                digest,
                link,
            }
        };
        self.put(pid, write);
    }

    fn has(&self, pid: &str) -> bool {
        self.pending.contains_key(pid) || self.sending.contains(pid)
    }

    /// Makes `write` the pending write of `pid`. A refresh does not replace a full write or
    /// an end (both set the expiry themselves; and no refresh comes after an end).
    fn put(&mut self, pid: &str, write: Write) {
        match self.pending.entry(pid.to_owned()) {
            Entry::Occupied(mut pending) => {
                let keep = matches!(write, Write::Refresh { .. })
                    && !matches!(pending.get(), Write::Refresh { .. });
                if let (true, Write::Live { ttl_ms, .. }, Write::Refresh { ttl_ms: new, .. }) =
                    (keep, pending.get_mut(), &write)
                {
                    *ttl_ms = *new;
                }
                if !keep {
                    pending.insert(write);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(write);
                self.order.push_back(pid.to_owned());
            }
        }
    }

    /// Moves up to `max` pending writes, oldest first, to the ones being sent.
    fn next_batch(&mut self, max: usize) -> Vec<(String, Write)> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(pid) = self.order.pop_front() else {
                break;
            };
            if let Some(write) = self.pending.remove(&pid) {
                self.sending.insert(pid.clone());
                batch.push((pid, write));
            }
        }
        batch
    }

    /// A batch landed; `refreshed` holds, in order, whether each of its refreshes found its
    /// session.
    fn landed(&mut self, batch: Vec<(String, Write)>, refreshed: &[i64]) {
        let mut refreshed = refreshed.iter();
        for (pid, write) in batch {
            self.sending.remove(&pid);
            match write {
                Write::Live { digest, .. } => {
                    self.written.insert(pid, digest);
                }
                // Gone (taken, or lost by a restarted Redis): the next save writes it in full.
                Write::Refresh { .. } if refreshed.next() != Some(&1) => {
                    self.written.remove(&pid);
                }
                Write::Refresh { .. } => {}
                Write::Released { .. } | Write::Removed => {
                    self.written.remove(&pid);
                }
            }
        }
    }

    /// A batch failed: its writes are pending again, unless a later one replaced them.
    fn failed(&mut self, batch: Vec<(String, Write)>) {
        for (pid, write) in batch.into_iter().rev() {
            self.sending.remove(&pid);
            if let Entry::Vacant(slot) = self.pending.entry(pid.clone()) {
                slot.insert(write);
                self.order.push_front(pid);
            }
        }
    }
}

/// Sends the queue's writes, batch after batch, until the queue is closed and empty.
async fn write_loop(queue: Arc<Queue>, pool: Pool, layout: impl Layout) {
    let mut delay = Duration::from_millis(50);
    let mut command_errors = 0;
    let mut failures_after_close = 0;
    loop {
        let batch = lock(&queue.state).next_batch(BATCH);
        if batch.is_empty() {
            if queue.closed.load(Ordering::Relaxed) {
                return;
            }
            queue.queued.notified().await;
            continue;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (pid, write) in &batch {
            layout.commands(&mut pipe, pid, write);
        }
        let failure = match send(&pool, &pipe).await {
            Ok(refreshed) => {
                lock(&queue.state).landed(batch, &refreshed);
                delay = Duration::from_millis(50);
                command_errors = 0;
                queue.settled.notify_waiters();
                continue;
            }
            Err(failure) => failure,
        };
        if let Failure::Command(_) = failure {
            command_errors += 1;
        }
        if command_errors >= COMMAND_ERROR_TRIES {
            tracing::error!(target: "sio::redis", err = %failure, writes = batch.len(), "Redis refused session writes; given up on");
            lock(&queue.state).landed(batch, &[]);
            command_errors = 0;
            queue.settled.notify_waiters();
            continue;
        }
        tracing::warn!(target: "sio::redis", err = %failure, writes = batch.len(), ?delay, "session writes failed; sending them again");
        lock(&queue.state).failed(batch);
        queue.settled.notify_waiters();
        if queue.closed.load(Ordering::Relaxed) {
            // The store is gone: a few more tries, not a task that outlives it for ever.
            failures_after_close += 1;
            if failures_after_close > COMMAND_ERROR_TRIES {
                tracing::error!(target: "sio::redis", "Redis unreachable at shutdown; session writes lost");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Why a batch did not land.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Redis could not be reached, or the connection broke: sent again until it lands.
    #[error("{0}")]
    Unreachable(String),
    /// Redis answered with an error.
    #[error("{0}")]
    Command(String),
}

async fn send(pool: &Pool, pipe: &redis::Pipeline) -> Result<Vec<i64>, Failure> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    pipe.query_async(&mut conn.inner).await.map_err(|e| {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            Failure::Unreachable(e.to_string())
        } else {
            Failure::Command(e.to_string())
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(value: &str) -> Write {
        Write::Live {
            ns: "/".into(),
            value: value.into(),
            ttl_ms: 10,
            digest: 1,
            link: None,
        }
    }

    #[test]
    fn a_later_write_replaces_an_unsent_one_in_place() {
        let mut state = State::default();
        state.put("a", live("1"));
        state.put("b", live("2"));
        state.put("a", Write::Removed);
        // A refresh never replaces a full write or an end.
        state.put(
            "a",
            Write::Refresh {
                ttl_ms: 5,
                link: None,
            },
        );
        state.put(
            "b",
            Write::Refresh {
                ttl_ms: 20,
                link: None,
            },
        );
        let batch = state.next_batch(10);
        let Some((_, Write::Live { ttl_ms, .. })) = batch.get(1) else {
            panic!("b is not live: {batch:?}");
        };
        assert_eq!(*ttl_ms, 20);
        assert_eq!(batch.first(), Some(&("a".to_owned(), Write::Removed)));
        assert!(state.has("a") && state.next_batch(10).is_empty());
    }

    #[test]
    fn a_failed_batch_comes_back_unless_replaced() {
        let mut state = State::default();
        state.put("a", live("1"));
        state.put("b", live("2"));
        let batch = state.next_batch(10);
        state.put("a", Write::Removed);
        state.failed(batch);
        let again = state.next_batch(10);
        assert_eq!(
            again,
            vec![
                ("b".to_owned(), live("2")),
                ("a".to_owned(), Write::Removed)
            ]
        );
    }

    #[test]
    fn a_refresh_that_finds_nothing_makes_the_next_save_full() {
        let mut state = State::default();
        state.put("a", live("1"));
        let batch = state.next_batch(10);
        state.landed(batch, &[]);
        assert_eq!(state.written.get("a"), Some(&1));
        state.put(
            "a",
            Write::Refresh {
                ttl_ms: 1,
                link: None,
            },
        );
        let batch = state.next_batch(10);
        state.landed(batch, &[0]);
        assert_eq!(state.written.get("a"), None);
        assert!(!state.has("a"));
    }

    #[test]
    fn unchanged_sessions_are_refreshed_not_rewritten() {
        let mut state = State::default();
        let live = |value: &str, digest| Write::Live {
            ns: "/".into(),
            value: value.into(),
            ttl_ms: 10,
            digest,
            link: None,
        };
        state.live("a", "/", "x".into(), 10, 7, None);
        let batch = state.next_batch(10);
        assert_eq!(batch, vec![("a".to_owned(), live("x", 7))]);
        state.landed(batch, &[]);
        state.live("a", "/", "x".into(), 20, 7, None);
        assert_eq!(
            state.pending.get("a"),
            Some(&Write::Refresh {
                ttl_ms: 20,
                link: None
            })
        );
        state.live("a", "/", "y".into(), 10, 8, None);
        assert_eq!(state.pending.get("a"), Some(&live("y", 8)));
        // The same unsent state again: its expiry moves, it stays a full write.
        state.live("a", "/", "y".into(), 30, 8, None);
        let Some(Write::Live { ttl_ms: 30, .. }) = state.pending.get("a") else {
            panic!("{:?}", state.pending.get("a"));
        };
    }
}
