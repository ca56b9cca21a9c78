//! Attacks on the server's state rather than its parser (../reviews/security-2026-12.md,
//! findings 1, 2, 5 and 19): each must cost the attacker its own connection and leave nothing
//! behind once it is gone.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::ServiceConfig;
use bytes::Bytes;
use serde_json::Value;
use sio_core::{ConnectError, DisconnectReason, Namespace, RecoveryConfig, SocketIo, SocketRef};

/// A server whose `/` has an asynchronous middleware (as a token lookup would) and whose
/// `/kick` disconnects a socket on demand and then, in its disconnect handler, leaves a room
/// (a write after the disconnection). Recovery is on. Returns its base URL and its handle.
fn server() -> (String, SocketIo) {
    let (tx, rx) = mpsc::channel();
    let addr = common::start(move || {
        let io = SocketIo::builder()
            .engine(|e| {
                e.ping_interval(Duration::from_millis(300))
                    .ping_timeout(Duration::from_millis(300))
            })
            .connection_state_recovery(RecoveryConfig::default())
            .namespace(Namespace::new("/").middleware(|| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<(), ConnectError>(())
            }))
            .namespace(Namespace::new("/slow").middleware(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<(), ConnectError>(())
            }))
            .namespace(
                Namespace::new("/late").on_connect(|socket: SocketRef| async move {
                    // A handler still running when its client leaves.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    socket.join("late");
                    let _ = socket.emit_with_ack::<Value, _>("question", &1).await;
                }),
            )
            .namespace(
                Namespace::new("/kick")
                    .on_connect(|socket: SocketRef| async move {
                        socket.join("x");
                    })
                    .on("kickme", |socket: SocketRef| async move {
                        socket.disconnect();
                    })
                    .on_disconnect(|socket: SocketRef, _: DisconnectReason| async move {
                        socket.leave("x");
                    }),
            )
            .build();
        tx.send(io.clone()).unwrap();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    let io = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (format!("http://{addr}/socket.io/"), io)
}

async fn get(url: &str) -> (StatusCode, String) {
    let mut res = awc::Client::default()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    (res.status(), String::from_utf8_lossy(&body).into_owned())
}

async fn post(url: &str, body: impl Into<Bytes>) -> (StatusCode, String) {
    let mut res = awc::Client::default()
        .post(url)
        .send_body(body.into())
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    (res.status(), String::from_utf8_lossy(&body).into_owned())
}

/// Opens a polling session; returns its URL (with `sid`).
async fn open(base: &str) -> String {
    let (status, body) = get(&format!("{base}?EIO=4&transport=polling")).await;
    assert_eq!(status, StatusCode::OK);
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    format!("{base}?EIO=4&transport=polling&sid={sid}")
}

/// The packets of a polling answer.
fn packets(body: &str) -> Vec<&str> {
    body.split('\u{1e}').collect()
}

/// Sockets connected in every namespace of `io`.
fn sockets(io: &SocketIo) -> usize {
    io.metrics().sockets.iter().map(|(_, n)| n).sum()
}

/// Waits (at most 5 s) until `io` has no socket, session, room or pending ack left.
async fn until_empty(io: &SocketIo) {
    let empty = |io: &SocketIo| {
        let m = io.metrics();
        m.sockets.iter().chain(&m.rooms).all(|(_, n)| *n == 0)
            && m.traffic.sessions == 0
            && m.pending_acks == 0
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !empty(io) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = io.metrics();
    assert!(empty(io), "left behind: {metrics:?}");
}

#[actix_web::test]
async fn duplicate_connects_leave_no_socket_behind() {
    let (base, io) = server();
    for _ in 0..3 {
        let url = open(&base).await;
        let body = vec![r#"40{"name":"x"}"#; 200].join("\u{1e}");
        assert_eq!(post(&url, body).await.0, StatusCode::OK);
        // Every CONNECT of the batch ran, but only the first made a socket.
        let mut answers = Vec::new();
        while answers.is_empty() {
            let (_, body) = get(&url).await;
            answers.extend(
                packets(&body)
                    .into_iter()
                    .filter(|p| p.starts_with("40"))
                    .map(str::to_owned),
            );
        }
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(sockets(&io), 1);
        assert_eq!(post(&url, "1").await.0, StatusCode::OK);
        until_empty(&io).await;
    }
}

#[actix_web::test]
async fn duplicate_recovery_connects_leave_no_socket_behind() {
    let (base, io) = server();
    let url = open(&base).await;
    let connect = r#"40{"pid":"AAAAAAAAAAAAAAAAAAAAAA","offset":"0-0"}"#;
    let body = vec![connect; 100].join("\u{1e}");
    assert_eq!(post(&url, body).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sockets(&io), 1);
    assert_eq!(post(&url, "1").await.0, StatusCode::OK);
    until_empty(&io).await;
}

#[actix_web::test]
async fn a_socket_whose_connection_closed_during_its_middleware_is_not_kept() {
    let (base, io) = server();
    for _ in 0..5 {
        let url = open(&base).await;
        // The middleware of /slow runs 300 ms: the connection closes in the meantime.
        assert_eq!(post(&url, "40/slow,").await.0, StatusCode::OK);
        assert_eq!(post(&url, "1").await.0, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    until_empty(&io).await;
}

#[actix_web::test]
async fn a_client_ping_closes_a_v4_session() {
    let (base, io) = server();
    let url = open(&base).await;
    assert_eq!(post(&url, "40").await.0, StatusCode::OK);
    // A thousand pings, never a poll: the session must not answer them nor live on them.
    let pings = vec!["2"; 1000].join("\u{1e}");
    post(&url, pings).await;
    let (status, body) = get(&url).await;
    assert!(
        status == StatusCode::BAD_REQUEST || packets(&body).contains(&"1"),
        "{status} {body}"
    );
    assert!(!body.contains('3'), "a pong was sent: {body}");
    until_empty(&io).await;
}

#[actix_web::test]
async fn a_kicked_socket_cannot_recover() {
    let (base, io) = server();
    let url = open(&base).await;
    assert_eq!(post(&url, "40/kick,").await.0, StatusCode::OK);
    let (_, body) = get(&url).await;
    let answer: Value = serde_json::from_str(body.strip_prefix("40/kick,").expect(&body)).unwrap();
    let pid = answer["pid"].as_str().unwrap().to_owned();
    // A broadcast gives the client an offset.
    io.of("/kick").unwrap().emit("news", &1).unwrap();
    let (_, body) = get(&url).await;
    let event: Value = serde_json::from_str(body.strip_prefix("42/kick,").expect(&body)).unwrap();
    let offset = event[2].as_str().unwrap().to_owned();
    assert_eq!(post(&url, r#"42/kick,["kickme"]"#).await.0, StatusCode::OK);
    let (_, body) = get(&url).await;
    assert!(packets(&body).contains(&"41/kick,"), "{body}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recover = format!(r#"40/kick,{{"pid":"{pid}","offset":"{offset}"}}"#);
    assert_eq!(post(&url, recover).await.0, StatusCode::OK);
    let (_, body) = get(&url).await;
    let answer: Value = serde_json::from_str(body.strip_prefix("40/kick,").expect(&body)).unwrap();
    assert_ne!(answer["pid"].as_str(), Some(pid.as_str()), "{body}");
    assert_eq!(io.of("/kick").unwrap().sockets().len(), 1);
    assert!(
        !io.of("/kick").unwrap().sockets()[0].recovered(),
        "the kicked socket came back"
    );
    assert_eq!(post(&url, "1").await.0, StatusCode::OK);
    until_empty(&io).await;
}

#[actix_web::test]
async fn a_handler_that_outlives_its_socket_joins_nothing_and_waits_for_no_ack() {
    let (base, io) = server();
    let url = open(&base).await;
    assert_eq!(post(&url, "40/late,").await.0, StatusCode::OK);
    let (_, body) = get(&url).await;
    assert!(body.starts_with("40/late,"), "{body}");
    assert_eq!(post(&url, "1").await.0, StatusCode::OK);
    // The handler joins and asks after the socket is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    until_empty(&io).await;
}

#[actix_web::test]
async fn dynamic_namespaces_are_bounded_in_number_and_name() {
    let (tx, rx) = mpsc::channel();
    let addr = common::start(move || {
        let io = SocketIo::builder()
            .max_dynamic_namespaces(3)
            .dynamic_namespace(|path| path.starts_with("/room-"), Namespace::new("/room-*"))
            .build();
        tx.send(io.clone()).unwrap();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    let io = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = open(&format!("http://{addr}/socket.io/")).await;
    let connects = [
        "/room-#x", "/room-a", "/room-b", "/room-c", "/room-d", "/room-a",
    ]
    .map(|ns| format!("40{ns},"))
    .join("\u{1e}");
    assert_eq!(post(&url, connects).await.0, StatusCode::OK);
    let mut answers = Vec::new();
    while answers.len() < 5 {
        let (_, body) = get(&url).await;
        answers.extend(packets(&body).into_iter().map(str::to_owned));
    }
    answers.sort();
    let invalid = r#"{"message":"Invalid namespace"}"#;
    assert_eq!(answers[3], format!("44/room-#x,{invalid}"));
    assert_eq!(answers[4], format!("44/room-d,{invalid}"));
    assert!(
        answers[..3].iter().all(|a| a.starts_with("40/room-")),
        "{answers:?}"
    );
    let namespaces: Vec<String> = io.metrics().sockets.into_iter().map(|(ns, _)| ns).collect();
    assert_eq!(namespaces, ["/", "/room-a", "/room-b", "/room-c"]);
}

/// What a recovery session store was told, in order.
#[derive(Debug, Clone, PartialEq)]
enum StoreOp {
    Save(String),
    Release(String),
    Remove(String),
}

/// A [`SessionStore`] that keeps its promises in memory (a live session is not for taking, a
/// session belongs to its namespace) and records what it is told.
#[derive(Debug, Default)]
struct RecordingStore {
    ops: std::sync::Mutex<Vec<(String, StoreOp)>>,
    /// pid -> (namespace, session, takeable)
    sessions: std::sync::Mutex<
        std::collections::HashMap<String, (String, sio_core::RecoverableSession, bool)>,
    >,
}

impl sio_core::SessionStore for RecordingStore {
    fn save(&self, ns: &str, session: &sio_core::RecoverableSession, _ttl: Duration) {
        let mut ops = self.ops.lock().unwrap();
        ops.push((ns.to_owned(), StoreOp::Save(session.pid.clone())));
        let mut sessions = self.sessions.lock().unwrap();
        sessions.insert(session.pid.clone(), (ns.to_owned(), session.clone(), false));
    }

    fn release(&self, ns: &str, session: &sio_core::RecoverableSession, _ttl: Duration) {
        let mut ops = self.ops.lock().unwrap();
        ops.push((ns.to_owned(), StoreOp::Release(session.pid.clone())));
        let mut sessions = self.sessions.lock().unwrap();
        sessions.insert(session.pid.clone(), (ns.to_owned(), session.clone(), true));
    }

    fn remove(&self, ns: &str, pid: &str) {
        let mut ops = self.ops.lock().unwrap();
        ops.push((ns.to_owned(), StoreOp::Remove(pid.to_owned())));
        self.sessions.lock().unwrap().remove(pid);
    }

    fn take(
        &self,
        ns: &str,
        pid: &str,
    ) -> sio_core::BackendFuture<Option<sio_core::RecoverableSession>> {
        let mut sessions = self.sessions.lock().unwrap();
        let taken = match sessions.get(pid) {
            Some((owner, _, true)) if owner == ns => sessions.remove(pid).map(|(_, s, _)| s),
            _ => None,
        };
        Box::pin(async move { Ok(taken) })
    }
}

/// One node of an in-process cluster, with [`RecordingStore`] as its session store.
#[derive(Debug)]
struct WithStore {
    node: sio_core::MemoryNode,
    store: std::sync::Arc<RecordingStore>,
}

impl sio_core::Backend for WithStore {
    fn register(&self, ns: &str, handler: std::sync::Weak<dyn sio_core::RequestHandler>) {
        self.node.register(ns, handler);
    }
    fn publish(&self, ns: &str, request: sio_core::ClusterRequest) {
        self.node.publish(ns, request);
    }
    fn request(
        &self,
        ns: &str,
        request: sio_core::ClusterRequest,
        timeout: Duration,
    ) -> sio_core::BackendFuture<Vec<sio_core::ClusterResponse>> {
        self.node.request(ns, request, timeout)
    }
    fn server_count(&self) -> sio_core::BackendFuture<usize> {
        self.node.server_count()
    }
    fn session_store(&self) -> Option<&dyn sio_core::SessionStore> {
        Some(&*self.store)
    }
}

#[actix_web::test]
async fn with_a_store_a_live_or_kicked_session_is_never_taken() {
    let store = std::sync::Arc::new(RecordingStore::default());
    let (tx, rx) = mpsc::channel();
    let backend_store = store.clone();
    let addr = common::start(move || {
        let io = SocketIo::builder()
            .engine(|e| {
                e.ping_interval(Duration::from_millis(300))
                    .ping_timeout(Duration::from_millis(300))
            })
            .connection_state_recovery(RecoveryConfig::default())
            .adapter(WithStore {
                node: sio_core::MemoryCluster::default().node(),
                store: backend_store,
            })
            .namespace(
                Namespace::new("/")
                    .on("kickme", |socket: SocketRef| async move {
                        socket.disconnect();
                    })
                    .on_disconnect(|socket: SocketRef| async move {
                        // Writes after the disconnection must not reach the store.
                        socket.join("late");
                        let _ = socket.set_data(&"late");
                    }),
            )
            .namespace(Namespace::new("/other"))
            .build();
        tx.send(io.clone()).unwrap();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    let io = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let base = format!("http://{addr}/socket.io/");
    let connect = |url: String, packet: String| async move {
        assert_eq!(post(&url, packet).await.0, StatusCode::OK);
        let (_, body) = get(&url).await;
        let packet = body.strip_prefix("40").expect(&body);
        // `40/other,{...}` or `40{...}`.
        let json = match packet.strip_prefix('/') {
            Some(_) => packet.split_once(',').expect(&body).1,
            None => packet,
        };
        let answer: Value = serde_json::from_str(json).expect(&body);
        answer
    };
    let victim = open(&base).await;
    let first = connect(victim.clone(), "40".into()).await;
    let pid = first["pid"].as_str().unwrap().to_owned();
    io.emit("news", &1).unwrap();
    let (_, body) = get(&victim).await;
    let event: Value = serde_json::from_str(body.strip_prefix("42").expect(&body)).unwrap();
    let offset = event[2].as_str().unwrap().to_owned();
    let recover = |ns: &str| format!(r#"40{ns}{{"pid":"{pid}","offset":"{offset}"}}"#);

    // The victim is connected: its session is not for taking, nor from another namespace.
    let thief = open(&base).await;
    let stolen = connect(thief.clone(), recover("")).await;
    assert_ne!(stolen["sid"], first["sid"], "a live session was taken");
    let other = connect(thief.clone(), recover("/other,")).await;
    assert_ne!(other["sid"], first["sid"], "a session crossed namespaces");
    assert_eq!(post(&thief, "1").await.0, StatusCode::OK);

    // Kicked: the store forgets it, and nothing written after brings it back.
    assert_eq!(post(&victim, r#"42["kickme"]"#).await.0, StatusCode::OK);
    assert_eq!(get(&victim).await.1, "41");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ops: Vec<StoreOp> = store
        .ops
        .lock()
        .unwrap()
        .iter()
        .filter(|(ns, op)| ns == "/" && matches!(op, StoreOp::Save(p) | StoreOp::Release(p) | StoreOp::Remove(p) if *p == pid))
        .map(|(_, op)| op.clone())
        .collect();
    assert_eq!(ops.last(), Some(&StoreOp::Remove(pid.clone())), "{ops:?}");
    assert!(!ops.contains(&StoreOp::Release(pid.clone())), "{ops:?}");
    let again = connect(victim.clone(), recover("")).await;
    assert_ne!(again["sid"], first["sid"], "a kicked session came back");
    assert_eq!(post(&victim, "1").await.0, StatusCode::OK);
    until_empty(&io).await;
}

/// Handlers of `/slow-events` running now, and the most seen at once.
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static MOST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[actix_web::test]
async fn a_client_cannot_make_the_server_hold_its_handlers_without_bound() {
    use futures_util::SinkExt as _;
    use std::sync::atomic::Ordering::SeqCst;
    let addr = common::start(|| {
        let io = SocketIo::builder()
            .namespace(Namespace::new("/").on("slow", || async {
                let now = RUNNING.fetch_add(1, SeqCst) + 1;
                MOST.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                RUNNING.fetch_sub(1, SeqCst);
                DONE.fetch_add(1, SeqCst);
            }))
            .build();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    let mut ws = common::ws_open(&addr.to_string()).await;
    ws.send(awc::ws::Message::Text("40".into())).await.unwrap();
    common::next_text(&mut ws).await;
    for _ in 0..2_000 {
        ws.send(awc::ws::Message::Text(r#"42["slow"]"#.into()))
            .await
            .unwrap();
    }
    // Every event is handled (nothing is dropped), never more than 256 at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while DONE.load(SeqCst) < 2_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(DONE.load(SeqCst), 2_000);
    assert!(MOST.load(SeqCst) <= 256, "{} at once", MOST.load(SeqCst));
}
