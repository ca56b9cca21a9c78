//! Connection state recovery sessions in Redis, so that a client whose node died (SIGKILL
//! included) recovers on any other node of the cluster, and only then.
//!
//! Each session has a record, the hash `sio:rs-session:{<pid>}`:
//! * `ns`: the namespace it belongs to. A take for another namespace finds nothing and leaves
//!   it, so a pid from `/` cannot open `/admin` (whose middlewares a recovery skips);
//! * `owner`, while its socket is connected: a channel this node's subscriber connection
//!   listens on (`<key>-owner#<random id>#`). A take refuses the session while that channel
//!   has a subscriber (`PUBSUB NUMSUB`, checked in the Lua script that takes it). Redis drops
//!   a killed process's connection at once, so the sessions of a SIGKILLed node are takeable
//!   at once; a frozen node keeps its connection, and its sessions stay where they are (the
//!   safe side). While this node's subscriber connects again (Redis dropped it, or Sentinel
//!   named another master), its sessions look orphaned and can be taken;
//! * `session`: the session, JSON (classic and sharded protocols) or Node's encoding (streams).
//!
//! Written through while the socket lives (`HSET` with `owner`, then only `PEXPIRE` while it
//! does not change), released at disconnection (the record without `owner`), deleted when the
//! socket will not come back. The writes go through [`session_queue`](crate::session_queue):
//! in order per session, never dropped, and a take on this node first waits for this node's
//! writes to the same session.
//!
//! A connected socket's session also names its Engine.IO connection: its `pid` and namespace
//! are members (`<pid> <ns>`) of the set `sio:rs-conn:{<engine sid>}`, written and refreshed
//! with the record and kept as long. When a polling client's owner node dies, a node that gets
//! the connection's next POST adopts it (`SessionStore::adopt`): the `ADOPT` script claims
//! `sio:rs-adopt:{<engine sid>}` (`SET NX PX`, so one node adopts at a time) and reads the set;
//! the node takes each session as a recovery does (so a live owner's sessions stay where they
//! are), runs the POST and releases them; the claim is deleted once those releases landed.
//!
//! The record's hash tag names its slot (a script's keys must share one on Redis Cluster), but
//! the store is not offered on Redis Cluster: the liveness check (`PUBSUB NUMSUB`) would count
//! only the subscribers of the cluster node that runs the script.
//!
//! With the streams protocol, Node's `@socket.io/redis-streams-adapter` shares the sessions
//! ([`Format::Node`]): a released session is also written where Node looks,
//! `sio:session:<pid>` (base64 of MessagePack `{sid, pid, rooms, data, nsp}`; Node ignores
//! `nsp`), so a Node node recovers a sio session that its socket left. A connected socket's
//! session is never written there: Node takes that key without any check, and would take the
//! session of a live socket. The sessions of a sio node that died are written there by the
//! sio nodes that survive it ([`handover`](crate::handover)), within a tenth of a second.
//! Sessions that Node writes carry no namespace; sio takes them for the namespace that asks,
//! as Node does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sio_core::{BackendFuture, RecoverableSession, SessionStore};
use tokio::sync::Semaphore;

use crate::adapter::unavailable;
use crate::handover;
use crate::session_queue::{Layout, Link, Queue, Write};
use crate::streams;
use crate::target::Connections;

type Pool = bb8_redis::bb8::Pool<Connections>;

/// Takes that may run at once. A flood of recovering CONNECTs (forged pids cost nothing)
/// waits here, on the store's own connections, instead of on the adapter's, which forwarding
/// and publishing need.
const TAKES: usize = 8;

/// Takes that may wait for one of the [`TAKES`]; more find no session at once.
const WAITING_TAKES: usize = 1024;

/// Connections of the store's own pool (takes, session writes, and reading missed broadcasts
/// from the stream).
pub(crate) const POOL_SIZE: u32 = 4;

/// Takes a session: refused when it belongs to another namespace, or when its socket is
/// connected to a node that is alive (its owner channel has a subscriber).
///
/// `KEYS[1]`: the record; `KEYS[2]`, Node's format only: Node's key. `ARGV[1]`: the namespace.
const TAKE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local ns, owner, session = unpack(redis.call('HMGET', KEYS[1], 'ns', 'owner', 'session'))
local function take_nodes()
  local node = redis.call('GET', KEYS[2])
  if node then redis.call('DEL', KEYS[2]) end
  return node
end
if not ns then
  -- Written by a Node node, which records no namespace: taken as Node takes it.
  if KEYS[2] then return take_nodes() end
  return false
end
if ns ~= ARGV[1] then return false end
if owner and redis.call('PUBSUB', 'NUMSUB', owner)[2] > 0 then return false end
redis.call('DEL', KEYS[1])
-- Released in Node's format: Node's key holds it, unless a Node node took it first.
if KEYS[2] and not owner then return take_nodes() end
return session
";

/// Claims a connection for an adoption and lists its sockets; nil when another adoption
/// holds the claim. A connection without sockets (a forged sid) is listed empty and not
/// claimed, so a flood of them leaves no keys behind.
///
/// `KEYS[1]`: the claim; `KEYS[2]`: the connection's set. `ARGV[1]`: this node's owner
/// channel (whose claim it is); `ARGV[2]`: how long it holds, in milliseconds.
const ADOPT: &str = r"
local members = redis.call('SMEMBERS', KEYS[2])
if #members == 0 then return members end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return members
";

/// Deletes a claim if it is still this node's (it may have expired and been claimed again).
///
/// `KEYS[1]`: the claim; `ARGV[1]`: this node's owner channel.
const ADOPTED: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// How sessions are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// JSON of the session.
    Json,
    /// As Node's streams adapter, and also at Node's `sio:session:<pid>` once released.
    Node,
}

impl Format {
    fn encode(self, ns: &str, session: &RecoverableSession) -> Option<String> {
        match self {
            Format::Json => serde_json::to_string(session)
                .map_err(|err| tracing::warn!(target: "sio::redis", %err, "session not saved"))
                .ok(),
            Format::Node => Some(streams::encode_session(session, ns)),
        }
    }

    /// The session in `stored`, if it belongs to `ns` (or says nothing of its namespace).
    fn decode(self, ns: &str, stored: &[u8]) -> Option<RecoverableSession> {
        match self {
            Format::Json => serde_json::from_slice(stored).ok(),
            Format::Node => match streams::decode_session(stored)? {
                // A pid is a bearer token: not logged.
                (_, Some(nsp)) if nsp != ns => {
                    tracing::debug!(target: "sio::redis", %ns, %nsp, "session of another namespace refused");
                    None
                }
                (session, _) => Some(session),
            },
        }
    }
}

/// The key layout of one format, for the write queue.
struct Keys {
    format: Format,
    owner: String,
}

fn record(pid: &str) -> String {
    format!("sio:rs-session:{{{pid}}}")
}

/// The set of a connection's sockets, as `<pid> <ns>` (a pid has no space).
fn connection(conn: &str) -> String {
    format!("sio:rs-conn:{{{conn}}}")
}

/// The claim of an adoption of a connection (the same slot as its set).
fn claim(conn: &str) -> String {
    format!("sio:rs-adopt:{{{conn}}}")
}

fn node_key(pid: &str) -> String {
    format!("{}{pid}", streams::SESSION_PREFIX)
}

impl Layout for Keys {
    fn commands(&self, pipe: &mut redis::Pipeline, pid: &str, write: &Write) {
        let key = record(pid);
        match write {
            Write::Live {
                ns,
                value,
                ttl_ms,
                link,
                ..
            } => {
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg("ns")
                    .arg(ns)
                    .arg("owner")
                    .arg(&self.owner)
                    .arg("session")
                    .arg(value)
                    .ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(*ttl_ms).ignore();
                if self.format == Format::Node {
                    handover::track(pipe, &self.owner, pid, true);
                }
                link_commands(pipe, pid, link.as_ref(), *ttl_ms);
            }
            Write::Refresh { ttl_ms, link } => {
                pipe.cmd("PEXPIRE").arg(&key).arg(*ttl_ms);
                link_commands(pipe, pid, link.as_ref(), *ttl_ms);
            }
            Write::Released { ns, value, ttl_ms } => {
                pipe.cmd("DEL").arg(&key).ignore();
                let set = pipe.cmd("HSET").arg(&key).arg("ns").arg(ns);
                match self.format {
                    Format::Json => {
                        set.arg("session").arg(value).ignore();
                    }
                    // Node's key holds it; the record only says whose it is.
                    Format::Node => {
                        set.ignore();
                        handover::track(pipe, &self.owner, pid, false);
                        pipe.cmd("SET")
                            .arg(node_key(pid))
                            .arg(value)
                            .arg("PX")
                            .arg(*ttl_ms)
                            .ignore();
                    }
                }
                pipe.cmd("PEXPIRE").arg(&key).arg(*ttl_ms).ignore();
            }
            Write::Removed => {
                pipe.cmd("DEL").arg(&key).ignore();
                if self.format == Format::Node {
                    pipe.cmd("DEL").arg(node_key(pid)).ignore();
                    handover::track(pipe, &self.owner, pid, false);
                }
            }
        }
    }
}

/// Puts the session `pid` in its connection's set, which lasts as long as the session: the
/// answers are ignored (a refresh's one counted answer is its record's).
fn link_commands(pipe: &mut redis::Pipeline, pid: &str, link: Option<&Link>, ttl_ms: u64) {
    let Some(link) = link else {
        return;
    };
    let set = connection(&link.conn);
    pipe.cmd("SADD")
        .arg(&set)
        .arg(format!("{pid} {}", link.ns))
        .ignore();
    pipe.cmd("PEXPIRE").arg(&set).arg(ttl_ms).ignore();
}

/// The [`SessionStore`] of a [`RedisAdapter`](crate::RedisAdapter) on a standalone or Sentinel
/// Redis.
pub(crate) struct Sessions {
    pool: Pool,
    format: Format,
    owner: String,
    queue: Arc<Queue>,
    takes: Arc<Takes>,
    timeout: Duration,
    /// Ends the [`handover`] look-out.
    closed: Arc<AtomicBool>,
}

/// The bound on concurrent takes.
struct Takes {
    running: Semaphore,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("format", &self.format)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Must be called inside a Tokio runtime: it starts the writer task. `pool` should be the
    /// store's own (see [`POOL_SIZE`]); the caller subscribes to [`owner`](Self::owner), a
    /// channel under the adapter's `key` (so that an ACL limited to the key's channels allows
    /// it).
    pub(crate) fn start(pool: Pool, format: Format, timeout: Duration, key: &str) -> Self {
        let id: u64 = rand::random();
        let owner = format!("{key}-owner#{id:016x}#");
        let keys = Keys {
            format,
            owner: owner.clone(),
        };
        let closed = Arc::new(AtomicBool::new(false));
        if format == Format::Node {
            handover::start(pool.clone(), closed.clone());
        }
        Sessions {
            closed,
            queue: Queue::start(pool.clone(), keys),
            pool,
            format,
            owner,
            takes: Arc::new(Takes {
                running: Semaphore::new(TAKES),
                waiting: AtomicUsize::new(0),
            }),
            timeout,
        }
    }

    /// The channel whose subscriber says that this node is alive: the adapter's subscriber
    /// connection must listen on it, or this node's live sessions can be taken.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// The pool the store uses.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.queue.close();
        self.closed.store(true, Ordering::Relaxed);
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Sessions {
    fn save_with(&self, ns: &str, session: &RecoverableSession, ttl: Duration, link: Option<Link>) {
        if let Some(value) = self.format.encode(ns, session) {
            self.queue.live(&session.pid, ns, value, ttl_ms(ttl), link);
        }
    }
}

impl SessionStore for Sessions {
    fn save(&self, ns: &str, session: &RecoverableSession, ttl: Duration) {
        self.save_with(ns, session, ttl, None);
    }

    fn save_linked(&self, conn: &str, ns: &str, session: &RecoverableSession, ttl: Duration) {
        let link = Link {
            conn: conn.to_owned(),
            ns: ns.to_owned(),
        };
        self.save_with(ns, session, ttl, Some(link));
    }

    fn adopt(&self, conn: &str, ttl: Duration) -> BackendFuture<Option<Vec<(String, String)>>> {
        let (pool, owner, takes) = (self.pool.clone(), self.owner.clone(), self.takes.clone());
        let (claim, set, timeout) = (claim(conn), connection(conn), self.timeout);
        Box::pin(async move {
            // A sid is the client's word: adoptions wait with the takes, on their bound.
            let Some(_running) = takes.enter(timeout).await else {
                return Ok(None);
            };
            let mut conn = pool.get().await.map_err(unavailable)?;
            let members: Option<Vec<String>> = redis::cmd("EVAL")
                .arg(ADOPT)
                .arg(2)
                .arg(claim)
                .arg(set)
                .arg(owner)
                .arg(ttl_ms(ttl))
                .query_async(&mut conn.inner)
                .await
                .map_err(unavailable)?;
            Ok(members.map(|members| {
                members
                    .iter()
                    .filter_map(|member| member.split_once(' '))
                    .map(|(pid, ns)| (ns.to_owned(), pid.to_owned()))
                    .collect()
            }))
        })
    }

    fn adopted(&self, conn: &str, pids: Vec<String>) {
        let (pool, queue, owner) = (self.pool.clone(), self.queue.clone(), self.owner.clone());
        let (claim, timeout) = (claim(conn), self.timeout);
        tokio::spawn(async move {
            // The next adoption takes the sessions this one released: its releases first.
            for pid in &pids {
                if !queue.settled(pid, timeout).await {
                    // The claim expires by itself.
                    return;
                }
            }
            let Ok(mut conn) = pool.get().await else {
                return;
            };
            let deleted: redis::RedisResult<i64> = redis::cmd("EVAL")
                .arg(ADOPTED)
                .arg(1)
                .arg(claim)
                .arg(owner)
                .query_async(&mut conn.inner)
                .await;
            if let Err(err) = deleted {
                tracing::debug!(target: "sio::redis", %err, "adoption claim left to expire");
            }
        });
    }

    fn release(&self, ns: &str, session: &RecoverableSession, ttl: Duration) {
        let write = match self.format.encode(ns, session) {
            Some(value) => Write::Released {
                ns: ns.to_owned(),
                value,
                ttl_ms: ttl_ms(ttl),
            },
            // Unwritable: the session would not recover anyway.
            None => Write::Removed,
        };
        self.queue.end(&session.pid, write);
    }

    fn remove(&self, _ns: &str, pid: &str) {
        self.queue.end(pid, Write::Removed);
    }

    fn take(&self, ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>> {
        let (pool, queue, takes) = (self.pool.clone(), self.queue.clone(), self.takes.clone());
        let (format, timeout) = (self.format, self.timeout);
        let (ns, pid) = (ns.to_owned(), pid.to_owned());
        Box::pin(async move {
            let Some(_running) = takes.enter(timeout).await else {
                tracing::debug!(target: "sio::redis", "too many recoveries at once; new session");
                return Ok(None);
            };
            // A release (or removal) this node made must land first, or the session would
            // look connected (or still be there).
            if !queue.settled(&pid, timeout).await {
                tracing::debug!(target: "sio::redis", "session writes pending; new session");
                return Ok(None);
            }
            // EVAL (Redis keeps the compiled script): EVALSHA would need redis-rs's `script`
            // feature for a 600-byte saving.
            let mut eval = redis::cmd("EVAL");
            eval.arg(TAKE);
            match format {
                Format::Json => eval.arg(1).arg(record(&pid)),
                Format::Node => eval.arg(2).arg(record(&pid)).arg(node_key(&pid)),
            };
            let mut conn = pool.get().await.map_err(unavailable)?;
            let stored: Option<Vec<u8>> = eval
                .arg(&ns)
                .query_async(&mut conn.inner)
                .await
                .map_err(unavailable)?;
            // A value this store did not write is no session: the client starts anew.
            Ok(stored.and_then(|s| format.decode(&ns, &s)))
        })
    }
}

impl Takes {
    /// A place among the running takes, waiting at most `limit` (and not at all when too
    /// many already wait).
    async fn enter(&self, limit: Duration) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if let Ok(permit) = self.running.try_acquire() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= WAITING_TAKES {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // Counted out however the wait ends, a dropped take included.
        let _waiting = Waiting(&self.waiting);
        tokio::time::timeout(limit, self.running.acquire())
            .await
            .ok()?
            .ok()
    }
}

/// One take among the waiting ones.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
