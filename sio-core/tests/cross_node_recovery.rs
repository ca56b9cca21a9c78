//! Connection state recovery on another node of a cluster without a shared log (the in-process
//! [`MemoryCluster`], as the Redis classic and sharded adapters): every node logs the
//! cluster's broadcasts in its own arrival order, and broadcasts sent at the same time from two
//! nodes are logged in opposite orders. A client that leaves one node and comes back on the
//! other must get exactly what it missed: nothing lost, nothing twice.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use sio_core::{
    Backend, BackendFuture, ClusterRequest, ClusterResponse, MemoryCluster, MemoryNode, Namespace,
    RecoverableSession, RecoveryConfig, RequestHandler, SessionStore, SocketIo, SocketRef,
};

/// The cluster's recovery sessions, shared by its nodes (what Redis keeps for the Redis
/// adapter): a session can be taken once it was released, from its namespace only.
#[derive(Debug, Default)]
struct Sessions {
    /// pid -> (namespace, session, takeable)
    by_pid: Mutex<HashMap<String, (String, RecoverableSession, bool)>>,
}

impl SessionStore for Sessions {
    fn save(&self, ns: &str, session: &RecoverableSession, _ttl: Duration) {
        let entry = (ns.to_owned(), session.clone(), false);
        self.by_pid
            .lock()
            .unwrap()
            .insert(session.pid.clone(), entry);
    }

    fn release(&self, ns: &str, session: &RecoverableSession, _ttl: Duration) {
        let entry = (ns.to_owned(), session.clone(), true);
        self.by_pid
            .lock()
            .unwrap()
            .insert(session.pid.clone(), entry);
    }

    fn remove(&self, _ns: &str, pid: &str) {
        self.by_pid.lock().unwrap().remove(pid);
    }

    fn take(&self, ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>> {
        let mut sessions = self.by_pid.lock().unwrap();
        let taken = match sessions.get(pid) {
            Some((owner, _, true)) if owner == ns => sessions.remove(pid).map(|(_, s, _)| s),
            _ => None,
        };
        Box::pin(async move { Ok(taken) })
    }
}

/// A node of a [`MemoryCluster`] with the shared [`Sessions`], whose requests to the other
/// node can be held back and released later, in order (a slow link): so that each node
/// delivers its own broadcast before the other's.
#[derive(Debug, Clone)]
struct SlowLink {
    node: MemoryNode,
    sessions: Arc<Sessions>,
    held: Arc<Mutex<Option<Held>>>,
}

/// Requests held back, with their namespaces.
type Held = Vec<(String, ClusterRequest)>;

impl SlowLink {
    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    /// Hands what was held to the other node, in the order it was published.
    fn release(&self) {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for (ns, request) in held {
            self.node.publish(&ns, request);
        }
    }
}

impl Backend for SlowLink {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        self.node.register(ns, handler);
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        match &mut *self.held.lock().unwrap() {
            Some(held) => held.push((ns.to_owned(), request)),
            None => self.node.publish(ns, request),
        }
    }

    fn request(
        &self,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> BackendFuture<Vec<ClusterResponse>> {
        self.node.request(ns, request, timeout)
    }

    fn server_count(&self) -> BackendFuture<usize> {
        self.node.server_count()
    }

    fn session_store(&self) -> Option<&dyn SessionStore> {
        Some(&*self.sessions)
    }
}

/// A node with recovery on; its `/` answers `whoami`.
fn node(link: SlowLink) -> (SocketIo, String) {
    let io = SocketIo::builder()
        .engine(|e| {
            e.ping_interval(Duration::from_secs(2))
                .ping_timeout(Duration::from_secs(2))
        })
        .connection_state_recovery(RecoveryConfig::default())
        .adapter(link)
        .namespace(Namespace::new("/").on(
            "whoami",
            |socket: SocketRef, ack: sio_core::AckSender| async move {
                let _ = ack.send(&json!({"id": socket.id(), "recovered": socket.recovered()}));
            },
        ))
        .build();
    let served = io.clone();
    let addr = common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(served.service());
        }
    });
    (io, format!("http://{addr}/socket.io/"))
}

async fn get(url: &str) -> String {
    let mut res = awc::Client::default()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8_lossy(&res.body().await.unwrap()).into_owned()
}

async fn post(url: &str, body: impl Into<Bytes>) {
    let res = awc::Client::default()
        .post(url)
        .send_body(body.into())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// A polling client of the main namespace.
struct Client {
    url: String,
    /// Packets read but not yet looked at.
    pending: Vec<String>,
}

impl Client {
    /// Opens a session on the node at `base` and sends CONNECT with `auth`; returns the client
    /// and the CONNECT answer.
    async fn connect(base: &str, auth: Value) -> (Client, Value) {
        let open = get(&format!("{base}?EIO=4&transport=polling")).await;
        let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
        let sid = open["sid"].as_str().unwrap();
        let mut client = Client {
            url: format!("{base}?EIO=4&transport=polling&sid={sid}"),
            pending: Vec::new(),
        };
        post(&client.url, format!("40{auth}")).await;
        let answer = client.next().await;
        let answer: Value =
            serde_json::from_str(answer.strip_prefix("40").expect(&answer)).unwrap();
        (client, answer)
    }

    /// The next packet other than a ping (which is answered).
    async fn next(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no packet within 5 s");
            if self.pending.is_empty() {
                let body = get(&self.url).await;
                self.pending = body.split('\u{1e}').rev().map(str::to_owned).collect();
            }
            let Some(packet) = self.pending.pop() else {
                continue;
            };
            if packet == "2" {
                post(&self.url, "3").await;
                continue;
            }
            return packet;
        }
    }

    /// The next `msg` event: its payload and offset.
    async fn event(&mut self) -> (String, String) {
        let packet = self.next().await;
        let event: Value = serde_json::from_str(packet.strip_prefix("42").expect(&packet)).unwrap();
        assert_eq!(event[0], "msg", "{packet}");
        let offset = event.as_array().unwrap().last().unwrap();
        (
            event[1].as_str().unwrap().to_owned(),
            offset.as_str().unwrap().to_owned(),
        )
    }

    /// The payloads of the `msg` events up to and including `last`, and the offset of that
    /// last one.
    async fn events_until(&mut self, last: &str) -> (Vec<String>, String) {
        let mut got = Vec::new();
        loop {
            let (payload, offset) = self.event().await;
            got.push(payload);
            if got.last().map(String::as_str) == Some(last) {
                return (got, offset);
            }
        }
    }

    /// Closes the Engine.IO session as a client whose connection dropped would: the socket
    /// leaves its session behind for recovery.
    async fn drop_connection(self) {
        post(&self.url, "1").await;
    }
}

/// Waits (at most 5 s) until `io`'s main namespace has `n` sockets.
async fn until_sockets(io: &SocketIo, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while io.of("/").unwrap().sockets().len() != n {
        assert!(Instant::now() < deadline, "not {n} sockets within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn crossed_broadcasts_are_recovered_on_the_other_node_exactly() {
    let cluster = MemoryCluster::default();
    let sessions = Arc::new(Sessions::default());
    let link = |node| SlowLink {
        node,
        sessions: sessions.clone(),
        held: Arc::default(),
    };
    let (link_a, link_b) = (link(cluster.node()), link(cluster.node()));
    let (a, base_a) = node(link_a.clone());
    let (b, base_b) = node(link_b.clone());

    // Two clients on A. X (from A) and Y (from B) cross: A delivers X then Y, B Y then X.
    let (mut early, first_early) = Client::connect(&base_a, json!({})).await;
    let (mut late, first_late) = Client::connect(&base_a, json!({})).await;
    link_a.hold();
    link_b.hold();
    a.emit("msg", "X").unwrap();
    b.emit("msg", "Y").unwrap();
    // `early` leaves with X only; `late` gets Y too before it leaves.
    let (x, early_offset) = early.event().await;
    assert_eq!(x, "X");
    early.drop_connection().await;
    until_sockets(&a, 1).await;
    link_b.release();
    let (got, late_offset) = late.events_until("Y").await;
    assert_eq!(got, ["X", "Y"]);
    late.drop_connection().await;
    until_sockets(&a, 0).await;
    link_a.release();

    // Both come back on B, whose log has Y before X.
    let auth = |first: &Value, offset: &str| json!({"pid": first["pid"], "offset": offset});
    let (mut early, answer) = Client::connect(&base_b, auth(&first_early, &early_offset)).await;
    assert_eq!(answer["pid"], first_early["pid"], "early was not recovered");
    let (mut late, answer) = Client::connect(&base_b, auth(&first_late, &late_offset)).await;
    assert_eq!(answer["pid"], first_late["pid"], "late was not recovered");
    // What each missed, then what follows, live, once.
    b.emit("msg", "Z").unwrap();
    assert_eq!(early.events_until("Z").await.0, ["Y", "Z"]);
    assert_eq!(late.events_until("Z").await.0, ["Z"]);
    a.emit("msg", "W").unwrap();
    assert_eq!(early.events_until("W").await.0, ["W"]);
    assert_eq!(late.events_until("W").await.0, ["W"]);
    early.drop_connection().await;
    late.drop_connection().await;
}

#[actix_web::test]
async fn broadcasts_from_both_nodes_at_once_are_recovered_exactly() {
    let cluster = MemoryCluster::default();
    let sessions = Arc::new(Sessions::default());
    let link = |node| SlowLink {
        node,
        sessions: sessions.clone(),
        held: Arc::default(),
    };
    let (a, base_a) = node(link(cluster.node()));
    let (b, base_b) = node(link(cluster.node()));
    let (mut client, first) = Client::connect(&base_a, json!({})).await;
    // Both nodes broadcast from two threads each, at once: each node delivers its own and
    // the other's interleaved, each in its own order.
    const EACH: usize = 250;
    let senders: Vec<_> = [(&a, "A"), (&a, "a"), (&b, "B"), (&b, "b")]
        .into_iter()
        .map(|(io, name)| {
            let io = io.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    io.emit("msg", &format!("{name}{n}")).unwrap();
                }
            })
        })
        .collect();
    // The client leaves in the middle, with what it read; what was on its way is lost.
    let mut got = Vec::new();
    let mut offset = String::new();
    while got.len() < EACH {
        let (payload, at) = client.event().await;
        got.push(payload);
        offset = at;
    }
    client.drop_connection().await;
    for sender in senders {
        sender.join().unwrap();
    }
    until_sockets(&a, 0).await;

    let auth = json!({"pid": first["pid"], "offset": offset});
    let (mut client, answer) = Client::connect(&base_b, auth).await;
    assert_eq!(answer["pid"], first["pid"], "not recovered");
    b.emit("msg", "end").unwrap();
    got.extend(client.events_until("end").await.0);
    got.pop();
    let unique: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "delivered twice");
    assert_eq!(got.len(), 4 * EACH, "lost");
    client.drop_connection().await;
}
