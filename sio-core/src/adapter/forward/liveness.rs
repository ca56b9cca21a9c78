//! Which node ids the cluster knows alive, as the edge checks them before it forwards anything.
//!
//! The node id of a sid is the client's word: a forged one must not cost a request slot held
//! until the timeout, nor a backend round trip each. So the answers of
//! [`Backend::node_listens`] are kept for a short while, lookups of one id are shared by every
//! request that waits for them, and lookups of ids never seen alive are rate-limited: a flood of
//! random node ids costs a few lookups a second and is otherwise refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::adapter::cluster::Backend;
use crate::engine::ForwardError;

/// How long an answer about a node stands. A node that dies is found by the forwarder's own
/// liveness checks while it waits for an answer; this only spares a lookup per request.
const TTL: Duration = Duration::from_secs(1);

/// How long a request waits for a lookup: a backend that does not answer sooner leaves a
/// forged sid refused, not held.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// Lookups a second (and at once) of node ids never seen alive. Nodes join rarely, and a node
/// that sends this one requests is seen alive without a lookup; more than this is a flood.
const NEW_LOOKUPS_PER_SECOND: f64 = 20.0;

/// Answers about gone node ids kept at most: a flood of random ids is refused by the rate
/// limit, not remembered.
const MAX_GONE: usize = 1024;

/// What the edge knows of the liveness of the nodes it forwards to.
#[derive(Debug)]
pub(super) struct Liveness {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Nodes seen alive, and until when that stands. A node stays here once seen (until found
    /// gone), so that a stale entry is looked up again outside the rate limit.
    alive: HashMap<u32, Instant>,
    /// Nodes found gone, and until when that stands.
    gone: HashMap<u32, Instant>,
    /// Lookups under way: later requests for the same node wait for the same answer.
    lookups: HashMap<u32, watch::Receiver<Option<Verdict>>>,
    /// Tokens for lookups of nodes never seen alive.
    tokens: f64,
    refilled: Instant,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Alive,
    Gone,
    /// The backend did not answer (in time).
    Unknown,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            state: Mutex::new(State {
                alive: HashMap::new(),
                gone: HashMap::new(),
                lookups: HashMap::new(),
                tokens: NEW_LOOKUPS_PER_SECOND,
                refilled: Instant::now(),
            }),
        }
    }
}

impl Liveness {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `node` is alive (it sent this node a message, or answered one).
    pub(super) fn seen(&self, node: u32) {
        let mut state = self.state();
        state.gone.remove(&node);
        state.alive.insert(node, Instant::now() + TTL);
    }

    /// Checks that `node` is alive, asking `backend` when the last answer is too old.
    /// [`ForwardError::UnknownNode`] when it is gone, never was, or the rate limit for unknown
    /// ids is spent; [`ForwardError::Backend`] when the backend could not tell about a node
    /// never seen alive (one seen alive before is given the benefit of the doubt).
    pub(super) async fn check(
        self: &Arc<Self>,
        backend: &Arc<dyn Backend>,
        node: u32,
    ) -> Result<(), ForwardError> {
        let (mut answer, known) = {
            let mut state = self.state();
            let now = Instant::now();
            if state.alive.get(&node).is_some_and(|until| *until > now) {
                return Ok(());
            }
            if state.gone.get(&node).is_some_and(|until| *until > now) {
                return Err(ForwardError::UnknownNode(node));
            }
            let known = state.alive.contains_key(&node);
            let answer = match state.lookups.get(&node) {
                Some(answer) => answer.clone(),
                None => {
                    if !known && !state.take_token(now) {
                        return Err(ForwardError::UnknownNode(node));
                    }
                    let (tx, rx) = watch::channel(None);
                    state.lookups.insert(node, rx.clone());
                    // A task of its own, so that a request that goes away does not leave
                    // the others waiting on a lookup nobody finishes.
                    tokio::spawn(self.clone().look_up(backend.clone(), node, tx));
                    rx
                }
            };
            (answer, known)
        };
        let verdict = tokio::time::timeout(LOOKUP_TIMEOUT, answer.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|answer| answer.ok().and_then(|verdict| *verdict));
        match verdict {
            Some(Verdict::Alive) => Ok(()),
            Some(Verdict::Gone) => Err(ForwardError::UnknownNode(node)),
            _ if known => Ok(()),
            _ => Err(ForwardError::Backend(format!(
                "could not tell whether node {node:08x} is alive"
            ))),
        }
    }

    async fn look_up(
        self: Arc<Self>,
        backend: Arc<dyn Backend>,
        node: u32,
        tx: watch::Sender<Option<Verdict>>,
    ) {
        let verdict = match tokio::time::timeout(LOOKUP_TIMEOUT, backend.node_listens(node)).await {
            Ok(Ok(true)) => Verdict::Alive,
            Ok(Ok(false)) => Verdict::Gone,
            Ok(Err(_)) | Err(_) => Verdict::Unknown,
        };
        {
            let mut state = self.state();
            state.lookups.remove(&node);
            let until = Instant::now() + TTL;
            match verdict {
                Verdict::Alive => {
                    state.alive.insert(node, until);
                }
                Verdict::Gone => {
                    state.alive.remove(&node);
                    if state.gone.len() >= MAX_GONE {
                        let now = Instant::now();
                        state.gone.retain(|_, until| *until > now);
                    }
                    if state.gone.len() < MAX_GONE {
                        state.gone.insert(node, until);
                    }
                }
                Verdict::Unknown => {}
            }
        }
        let _ = tx.send(Some(verdict));
    }
}

impl State {
    /// Takes a token for a lookup of a node never seen alive, if one is left.
    fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * NEW_LOOKUPS_PER_SECOND).min(NEW_LOOKUPS_PER_SECOND);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::adapter::cluster::{BackendFuture, ClusterRequest, ClusterResponse, RequestHandler};

    /// A cluster node that counts the lookups it is asked, and answers them after `delay`.
    #[derive(Debug)]
    struct Counting {
        listening: Vec<u32>,
        lookups: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Backend for Counting {
        fn register(&self, _: &str, _: std::sync::Weak<dyn RequestHandler>) {}
        fn publish(&self, _: &str, _: ClusterRequest) {}
        fn request(
            &self,
            _: &str,
            _: ClusterRequest,
            _: Duration,
        ) -> BackendFuture<Vec<ClusterResponse>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn server_count(&self) -> BackendFuture<usize> {
            Box::pin(async { Ok(1) })
        }
        fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            let (listens, delay) = (self.listening.contains(&node_id), self.delay);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(listens)
            })
        }
    }

    fn counting(listening: &[u32], delay: Duration) -> (Arc<dyn Backend>, Arc<AtomicUsize>) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let backend = Counting {
            listening: listening.to_vec(),
            lookups: lookups.clone(),
            delay,
        };
        (Arc::new(backend), lookups)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_a_while_and_shared_by_concurrent_requests() {
        let (backend, lookups) = counting(&[1], Duration::from_millis(50));
        let liveness = Arc::new(Liveness::default());
        let checks = (0..100).map(|_| liveness.check(&backend, 1));
        let results = futures_util::future::join_all(checks).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(lookups.load(Ordering::Relaxed), 1);
        assert_eq!(liveness.check(&backend, 1).await, Ok(()));
        assert_eq!(lookups.load(Ordering::Relaxed), 1);
        assert_eq!(
            liveness.check(&backend, 2).await,
            Err(ForwardError::UnknownNode(2))
        );
        assert_eq!(
            liveness.check(&backend, 2).await,
            Err(ForwardError::UnknownNode(2))
        );
        assert_eq!(lookups.load(Ordering::Relaxed), 2);
        // Once the answers are old, they are asked again.
        tokio::time::sleep(TTL).await;
        assert_eq!(liveness.check(&backend, 1).await, Ok(()));
        assert_eq!(lookups.load(Ordering::Relaxed), 3);
    }

    /// Random forged node ids: a few lookups a second reach the backend, the rest are refused
    /// at once; a node seen alive before is still looked up (and cleared) during the flood.
    #[tokio::test(start_paused = true)]
    async fn lookups_of_unknown_ids_are_rate_limited() {
        let (backend, lookups) = counting(&[1], Duration::ZERO);
        let liveness = Arc::new(Liveness::default());
        assert_eq!(liveness.check(&backend, 1).await, Ok(()));
        for forged in 1000..11_000 {
            assert_eq!(
                liveness.check(&backend, forged).await,
                Err(ForwardError::UnknownNode(forged))
            );
        }
        let flood = lookups.load(Ordering::Relaxed);
        assert!(flood <= 1 + NEW_LOOKUPS_PER_SECOND as usize, "{flood}");
        tokio::time::sleep(TTL).await;
        assert_eq!(liveness.check(&backend, 1).await, Ok(()));
        assert_eq!(lookups.load(Ordering::Relaxed), flood + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_cannot_tell_refuses_only_nodes_never_seen() {
        let (backend, _) = counting(&[1, 2], Duration::from_secs(3600));
        let liveness = Arc::new(Liveness::default());
        liveness.seen(1);
        tokio::time::sleep(TTL).await;
        assert_eq!(liveness.check(&backend, 1).await, Ok(()));
        assert!(matches!(
            liveness.check(&backend, 2).await,
            Err(ForwardError::Backend(_))
        ));
    }
}
