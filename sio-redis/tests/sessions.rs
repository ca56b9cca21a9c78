//! The recovery session store on a real `redis-server`: what the `SessionStore` trait promises
//! (a session belongs to its namespace, a connected socket's session cannot be taken while its
//! node lives, a removal is final, a take succeeds once), with a node that is SIGKILLed and one
//! that is frozen, and what it costs (refreshes, a flood of takes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sio_core::{Backend as _, RecoverableSession, SessionStore};
use sio_redis::{RedisAdapter, RedisConfig};
use support::{Redis, calls, eventually};

const TTL: Duration = Duration::from_secs(60);

async fn node(config: RedisConfig) -> RedisAdapter {
    let adapter = RedisAdapter::new(config).unwrap();
    tokio::time::timeout(Duration::from_secs(10), adapter.ready())
        .await
        .unwrap();
    adapter
}

fn store(adapter: &RedisAdapter) -> &dyn SessionStore {
    adapter.session_store().expect("a session store")
}

fn session(pid: &str, data: serde_json::Value) -> RecoverableSession {
    RecoverableSession::new(format!("sid-{pid}"), pid.to_owned(), vec!["r".into()], data)
}

/// Something of session `pid` is in Redis: the store's first write for it landed.
async fn landed(redis: &Redis, pid: &str) {
    eventually(
        Duration::from_secs(5),
        "the session was not written",
        || !redis.cli(&["KEYS", &format!("*{pid}*")]).trim().is_empty(),
    )
    .await;
}

async fn take(adapter: &RedisAdapter, ns: &str, pid: &str) -> Option<RecoverableSession> {
    store(adapter).take(ns, pid).await.unwrap()
}

/// #3: a pid from `/` does not open `/admin`, and asking does not consume it.
async fn bound_to_its_namespace(config: impl Fn() -> RedisConfig, redis: &Redis) {
    let (a, b) = (node(config()).await, node(config()).await);
    let s = session("p1", json!({"user": 1}));
    store(&a).save("/", &s, TTL);
    store(&a).release("/", &s, TTL);
    landed(redis, "p1").await;
    assert_eq!(take(&b, "/admin", "p1").await, None);
    assert_eq!(take(&a, "/admin", "p1").await, None);
    assert_eq!(take(&b, "/", "p1").await, Some(s));
    assert_eq!(take(&b, "/", "p1").await, None, "taken twice");
}

#[tokio::test]
async fn a_session_is_taken_only_for_its_namespace() {
    let redis = Redis::start();
    bound_to_its_namespace(|| RedisConfig::new(redis.url()), &redis).await;
}

#[tokio::test]
async fn a_session_is_taken_only_for_its_namespace_in_nodes_format() {
    let redis = Redis::start();
    bound_to_its_namespace(|| RedisConfig::new(redis.url()).streams(), &redis).await;
}

/// With the streams protocol, Node's streams adapter shares the sessions: it finds a released
/// sio session where it looks, never a connected one, and sio takes the sessions Node wrote
/// (which carry no namespace).
#[tokio::test]
async fn nodes_streams_adapter_shares_released_sessions_only() {
    let redis = Redis::start();
    let a = node(RedisConfig::new(redis.url()).streams()).await;
    let live = session("live", json!(1));
    store(&a).save("/", &live, TTL);
    landed(&redis, "live").await;
    assert_eq!(redis.cli(&["EXISTS", "sio:session:live"]).trim(), "0");
    store(&a).release("/", &live, TTL);
    eventually(Duration::from_secs(5), "not released for Node", || {
        redis.cli(&["EXISTS", "sio:session:live"]).trim() == "1"
    })
    .await;
    // What Node's restoreSession does: GET and DEL in a transaction, no other check.
    let node_took = redis.cli(&["GETDEL", "sio:session:live"]);
    assert!(node_took.trim().len() > 20, "{node_took}");
    assert_eq!(
        take(&a, "/", "live").await,
        None,
        "taken by Node and by sio"
    );

    // A session written by a Node node: base64 of MessagePack {sid, pid, rooms, data}.
    let written_by_node = "hKNzaWSkc2lkTqNwaWSkbm9kZaVyb29tc5GhcqRkYXRhAQ==";
    redis.cli(&["SET", "sio:session:node", written_by_node]);
    let taken = take(&a, "/other", "node").await.unwrap();
    assert_eq!((taken.sid.as_str(), taken.pid.as_str()), ("sidN", "node"));
    assert_eq!(redis.cli(&["EXISTS", "sio:session:node"]).trim(), "0");
}

/// #4: the session of a connected socket stays where it is while its node lives; released,
/// it is taken once.
#[tokio::test]
async fn a_live_session_cannot_be_taken() {
    let redis = Redis::start();
    let config = || RedisConfig::new(redis.url());
    let (a, b) = (node(config()).await, node(config()).await);
    let s = session("p2", json!({"n": 1}));
    store(&a).save("/", &s, TTL);
    landed(&redis, "p2").await;
    assert_eq!(take(&b, "/", "p2").await, None);
    assert_eq!(take(&a, "/", "p2").await, None);
    store(&a).release("/", &s, TTL);
    // The owner's own take waits for its release to land.
    assert_eq!(take(&a, "/", "p2").await, Some(s));
    assert_eq!(take(&b, "/", "p2").await, None);
}

/// The owner of a session, in a process of its own: started by [`owner`] with
/// `SIO_REDIS_TEST_OWNER=<redis url>` (and `SIO_REDIS_TEST_STREAMS` for the streams protocol),
/// it saves the live session `p3`, says so, and waits to be frozen or killed. Does nothing
/// otherwise.
#[tokio::test]
#[ignore = "started by the tests that kill it"]
async fn owner_process() {
    let Ok(url) = std::env::var("SIO_REDIS_TEST_OWNER") else {
        return;
    };
    let mut config = RedisConfig::new(url);
    if std::env::var("SIO_REDIS_TEST_STREAMS").is_ok() {
        config = config.streams();
    }
    let adapter = node(config).await;
    store(&adapter).save("/", &session("p3", json!("owned")), TTL);
    println!("SAVED");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Starts [`owner_process`] and waits until its session is in Redis.
async fn owner(redis: &Redis, streams: bool) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["owner_process", "--exact", "--ignored", "--nocapture"])
        .env("SIO_REDIS_TEST_OWNER", redis.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if streams {
        command.env("SIO_REDIS_TEST_STREAMS", "1");
    }
    let mut owner = command.spawn().unwrap();
    let stdout = owner.stdout.take().unwrap();
    let saved = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("SAVED"));
    assert!(saved, "the owner process did not start");
    landed(redis, "p3").await;
    owner
}

fn signal(process: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([name, &process.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// #4: a frozen (SIGSTOP) node keeps its Redis connection, so its sessions stay; a SIGKILLed
/// node's connection is closed by its kernel, so its sessions are takeable at once, as they
/// last were.
#[tokio::test]
async fn sessions_of_a_killed_node_are_takeable() {
    let redis = Redis::start();
    let mut owner = owner(&redis, false).await;
    let b = node(RedisConfig::new(redis.url())).await;
    assert_eq!(take(&b, "/", "p3").await, None, "taken from a live node");
    signal(&owner, "-STOP");
    assert_eq!(take(&b, "/", "p3").await, None, "taken from a frozen node");
    signal(&owner, "-CONT");
    owner.kill().unwrap();
    owner.wait().unwrap();
    let mut taken = None;
    for _ in 0..100 {
        taken = take(&b, "/", "p3").await;
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(taken, Some(session("p3", json!("owned"))));
    assert_eq!(take(&b, "/", "p3").await, None);
}

/// With the streams protocol, the sessions of a killed sio node are written where Node's
/// streams adapter looks (by the sio nodes that survive it), never before.
#[tokio::test]
async fn sessions_of_a_killed_node_are_handed_over_to_node() {
    let redis = Redis::start();
    let _survivor = node(RedisConfig::new(redis.url()).streams()).await;
    let mut owner = owner(&redis, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis.cli(&["EXISTS", "sio:session:p3"]).trim(), "0");
    owner.kill().unwrap();
    owner.wait().unwrap();
    eventually(Duration::from_secs(5), "not handed over", || {
        redis.cli(&["EXISTS", "sio:session:p3"]).trim() == "1"
    })
    .await;
    let ttl: i64 = redis
        .cli(&["PTTL", "sio:session:p3"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 50_000, "{ttl}");
    // A Node node takes it (GET and DEL); then nobody else can.
    assert!(redis.cli(&["GETDEL", "sio:session:p3"]).trim().len() > 20);
    let b = node(RedisConfig::new(redis.url()).streams()).await;
    assert_eq!(take(&b, "/", "p3").await, None);
    assert_eq!(
        redis.cli(&["SCARD", "sio:rs-owners"]).trim(),
        "0",
        "the dead owner stayed"
    );
}

/// #5 and #11: a removal is never dropped, even behind a burst of writes, and lands after the
/// writes before it; one node's writes apply in order.
#[tokio::test]
async fn a_removal_is_final_and_writes_keep_their_order() {
    let redis = Redis::start();
    let config = || RedisConfig::new(redis.url());
    let (a, b) = (node(config()).await, node(config()).await);
    let kicked = session("kicked", json!("before"));
    store(&a).save("/", &kicked, TTL);
    landed(&redis, "kicked").await;
    // Far more writes than the old 10,000-write queue held, then the kick.
    for n in 0..20_000 {
        store(&a).save("/", &session(&format!("s{n}"), json!(n)), TTL);
    }
    store(&a).save("/", &session("kicked", json!("after")), TTL);
    store(&a).remove("/", "kicked");
    // One session changed many times, then released: its last state is what recovers.
    for n in 0..1_000 {
        store(&a).save("/", &session("busy", json!(n)), TTL);
    }
    let last = session("busy", json!("last"));
    store(&a).release("/", &last, TTL);
    assert_eq!(take(&a, "/", "kicked").await, None);
    assert_eq!(take(&b, "/", "busy").await, Some(last));
    // Once its node is gone a live session is takeable: the kicked one must be gone for real.
    eventually(Duration::from_secs(20), "the burst did not land", || {
        redis.cli(&["DBSIZE"]).trim() == "20000"
    })
    .await;
    a.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        take(&b, "/", "kicked").await,
        None,
        "a kicked session came back"
    );
    assert_eq!(take(&b, "/", "s7").await.map(|s| s.data), Some(json!(7)));
}

/// #11: the keep-alive tick rewrites nothing that did not change: one `PEXPIRE` per session,
/// pipelined, none dropped.
#[tokio::test]
async fn unchanged_sessions_are_only_refreshed() {
    let redis = Redis::start();
    let a = node(RedisConfig::new(redis.url())).await;
    let sessions: Vec<_> = (0..20_000)
        .map(|n| session(&format!("s{n}"), json!({"n": n})))
        .collect();
    for s in &sessions {
        store(&a).save("/", s, TTL);
    }
    eventually(Duration::from_secs(20), "not every session landed", || {
        redis.cli(&["DBSIZE"]).trim() == "20000"
    })
    .await;
    let (hsets, pexpires) = (calls(redis.port, "hset"), calls(redis.port, "pexpire"));
    for s in &sessions {
        store(&a).save("/", s, Duration::from_secs(600));
    }
    eventually(
        Duration::from_secs(20),
        "not every session was refreshed",
        || calls(redis.port, "pexpire") >= pexpires + 20_000,
    )
    .await;
    assert_eq!(
        calls(redis.port, "hset"),
        hsets,
        "unchanged sessions rewritten"
    );
    let ttl: u64 = redis
        .cli(&["PTTL", "sio:rs-session:{s19999}"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 60_000, "{ttl}");
    // A changed one is written again.
    store(&a).save("/", &session("s1", json!("changed")), TTL);
    store(&a).release("/", &session("s1", json!("changed")), TTL);
    assert_eq!(
        take(&a, "/", "s1").await.map(|s| s.data),
        Some(json!("changed"))
    );
}

/// #10: a flood of recoveries while Redis holds writes back (`CLIENT PAUSE ... WRITE`) waits on
/// the store's own connections: the adapter's pool still serves forwarding, and the flood's
/// excess finds no session at once instead of queueing without bound.
#[tokio::test]
async fn a_flood_of_takes_leaves_the_adapter_pool_alone() {
    let redis = Redis::start();
    let config = RedisConfig::new(redis.url()).timeout(Duration::from_millis(500));
    let a = node(config).await;
    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    let flood: Vec<_> = (0..2_000)
        .map(|n| store(&a).take("/", &format!("forged{n}")))
        .collect();
    let flood = tokio::spawn(futures_util::future::join_all(flood));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A read, which the pause lets through, on the adapter's pool: it must find a connection.
    let listens = a.node_listens(0x0bad_f00d).await;
    assert_eq!(listens.ok(), Some(false));
    let answers = flood.await.unwrap();
    assert!(answers.iter().all(|a| matches!(a, Ok(None) | Err(_))));
    assert!(
        answers.iter().filter(|a| matches!(a, Ok(None))).count() >= 2_000 - 8 - 1024,
        "the takes beyond the bound did not give up"
    );
}

/// Adoption of a dead owner's POST: a connection's sockets are listed by its engine sid for as
/// long as their sessions live, and one node at a time claims the connection; the claim is let
/// go once the adoption's releases landed.
#[tokio::test]
async fn a_connection_is_adopted_by_one_node_at_a_time() {
    let redis = Redis::start();
    let config = || RedisConfig::new(redis.url());
    let (a, b, c) = (
        node(config()).await,
        node(config()).await,
        node(config()).await,
    );
    let s = session("p7", json!({"n": 7}));
    store(&a).save_linked("conn7", "/a b", &s, TTL);
    landed(&redis, "p7").await;
    let adopt = |node: &RedisAdapter| store(node).adopt("conn7", Duration::from_secs(5));
    let listed = adopt(&b).await.unwrap();
    assert_eq!(listed, Some(vec![("/a b".to_owned(), "p7".to_owned())]));
    assert_eq!(adopt(&c).await.unwrap(), None, "two adoptions at once");
    // The claim says nothing of the owner: its live session stays where it is.
    assert_eq!(take(&b, "/a b", "p7").await, None);
    store(&b).adopted("conn7", vec![]);
    eventually(Duration::from_secs(5), "the claim stayed", || {
        redis.cli(&["EXISTS", "sio:rs-adopt:{conn7}"]).trim() == "0"
    })
    .await;
    assert!(adopt(&c).await.unwrap().is_some());
    // The list lasts as long as the session: an unchanged save refreshes both.
    redis.cli(&["PEXPIRE", "sio:rs-conn:{conn7}", "1000"]);
    store(&a).save_linked("conn7", "/a b", &s, TTL);
    eventually(Duration::from_secs(5), "the list was not refreshed", || {
        let ttl = redis.cli(&["PTTL", "sio:rs-conn:{conn7}"]);
        ttl.trim().parse::<i64>().unwrap() > 50_000
    })
    .await;
    // A connection nobody saved lists nothing.
    store(&b).adopted("conn7", vec![]);
    let unknown = store(&b)
        .adopt("conn8", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(unknown, Some(vec![]));
}
