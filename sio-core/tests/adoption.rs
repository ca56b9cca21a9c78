//! Adoption of a dead owner's POST: a polling client whose owner node died POSTs through
//! another node; that node runs the POST's events through the client's sockets, restored from
//! the session store, and lets them go, so that nothing the client sent is lost and its
//! reconnection recovers its socket with what it missed. A frozen owner (alive for the store)
//! is never adopted.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sio_core::extract::Data;
use sio_core::{
    Backend, BackendFuture, ClusterRequest, ClusterResponse, MemoryCluster, MemoryNode, Namespace,
    NodeReceiver, RecoverableSession, RecoveryConfig, RequestHandler, SessionStore, SocketIo,
    SocketRef,
};

/// The cluster's session store (what Redis keeps): a session saved by a node is takeable
/// once released, or once its node is dead for the store (its Redis connection gone); a
/// connection's sockets are indexed by its engine sid, and one adoption of a connection
/// holds a claim at a time.
#[derive(Debug, Default)]
struct Store {
    by_pid: Mutex<HashMap<String, Stored>>,
    /// engine sid -> (namespace, pid)
    links: Mutex<HashMap<String, HashSet<(String, String)>>>,
    claims: Mutex<HashSet<String>>,
    /// Nodes whose connection to the store is gone.
    dead: Mutex<HashSet<usize>>,
}

/// A session as stored: its namespace, the session, and the node that holds it live (none
/// once released).
type Stored = (String, RecoverableSession, Option<usize>);

/// One node's view of the [`Store`] (a node's writes carry its identity, as Redis's owner
/// channel does).
#[derive(Debug)]
struct StoreView {
    store: Arc<Store>,
    node: usize,
}

impl SessionStore for StoreView {
    fn save(&self, ns: &str, session: &RecoverableSession, _ttl: Duration) {
        let entry = (ns.to_owned(), session.clone(), Some(self.node));
        let mut sessions = self.store.by_pid.lock().unwrap();
        sessions.insert(session.pid.clone(), entry);
    }

    fn save_linked(&self, conn: &str, ns: &str, session: &RecoverableSession, ttl: Duration) {
        self.save(ns, session, ttl);
        let mut links = self.store.links.lock().unwrap();
        let link = (ns.to_owned(), session.pid.clone());
        links.entry(conn.to_owned()).or_default().insert(link);
    }

    fn release(&self, ns: &str, session: &RecoverableSession, _ttl: Duration) {
        let entry = (ns.to_owned(), session.clone(), None);
        let mut sessions = self.store.by_pid.lock().unwrap();
        sessions.insert(session.pid.clone(), entry);
    }

    fn remove(&self, _ns: &str, pid: &str) {
        self.store.by_pid.lock().unwrap().remove(pid);
    }

    fn take(&self, ns: &str, pid: &str) -> BackendFuture<Option<RecoverableSession>> {
        let dead = self.store.dead.lock().unwrap().clone();
        let mut sessions = self.store.by_pid.lock().unwrap();
        let takeable = match sessions.get(pid) {
            Some((owner_ns, _, owner)) if owner_ns == ns => owner.is_none_or(|o| dead.contains(&o)),
            _ => false,
        };
        let taken = takeable
            .then(|| sessions.remove(pid).map(|(_, s, _)| s))
            .flatten();
        Box::pin(async move { Ok(taken) })
    }

    fn adopt(&self, conn: &str, _ttl: Duration) -> BackendFuture<Option<Vec<(String, String)>>> {
        let claimed = self.store.claims.lock().unwrap().insert(conn.to_owned());
        let links = self.store.links.lock().unwrap().get(conn).cloned();
        let answer = claimed.then(|| links.unwrap_or_default().into_iter().collect());
        Box::pin(async move { Ok(answer) })
    }

    fn adopted(&self, conn: &str, _pids: Vec<String>) {
        self.store.claims.lock().unwrap().remove(conn);
    }
}

/// A node of a [`MemoryCluster`] with its view of the store, which can be stopped as a
/// SIGKILL stops one: nothing reaches it any more (its node channel has no listener).
#[derive(Debug)]
struct Node {
    node: MemoryNode,
    sessions: StoreView,
    listener: Mutex<Option<Arc<common::Listener>>>,
}

/// What the node's `SocketIo` owns; the test keeps the [`Node`] to stop it.
#[derive(Debug, Clone)]
struct Shared(Arc<Node>);

impl std::ops::Deref for Shared {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.0
    }
}

impl Backend for Shared {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        self.node.register(ns, handler);
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        self.node.publish(ns, request);
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

    fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
        common::listen_through(&self.node, node_id, receiver, &self.listener)
    }

    fn send_to_node(&self, node_id: u32, message: Bytes) -> BackendFuture<bool> {
        self.node.send_to_node(node_id, message)
    }

    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        self.node.node_listens(node_id)
    }

    fn session_store(&self) -> Option<&dyn SessionStore> {
        Some(&self.sessions)
    }
}

impl Node {
    /// Nothing reaches the node any more; with `dead`, its store connection is gone too
    /// (SIGKILL), else it stays (a frozen process, SIGSTOP).
    fn stop(&self, dead: bool) {
        self.listener.lock().unwrap().take();
        if dead {
            self.sessions
                .store
                .dead
                .lock()
                .unwrap()
                .insert(self.sessions.node);
        }
    }
}

/// What the nodes' `msg` handlers got: (node, socket id, payload).
type Got = Arc<Mutex<Vec<(usize, String, String)>>>;

fn node(
    cluster: &MemoryCluster,
    store: &Arc<Store>,
    n: usize,
    got: &Got,
) -> (SocketIo, Arc<Node>, String) {
    let backend = Arc::new(Node {
        node: cluster.node(),
        sessions: StoreView {
            store: store.clone(),
            node: n,
        },
        listener: Mutex::new(None),
    });
    let got = got.clone();
    let io = SocketIo::builder()
        // No heartbeat during the test: a stopped node must not close its sessions itself.
        .engine(|e| {
            e.ping_interval(Duration::from_secs(30))
                .ping_timeout(Duration::from_secs(30))
        })
        .connection_state_recovery(RecoveryConfig::default())
        .adapter(Shared(backend.clone()))
        .namespace(Namespace::new("/").on(
            "msg",
            move |socket: SocketRef, Data(text): Data<String>| {
                let got = got.clone();
                async move {
                    let id = socket.id().to_string();
                    got.lock().unwrap().push((n, id, text));
                }
            },
        ))
        .build();
    let served = io.clone();
    let addr = common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(served.service());
        }
    });
    (io, backend, format!("http://{addr}/socket.io/"))
}

async fn request(method: &str, url: &str, body: &str) -> (u16, String) {
    let client = awc::Client::default();
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url).content_type("text/plain;charset=UTF-8"),
    };
    let mut res = req
        .timeout(Duration::from_secs(10))
        .send_body(body.to_owned())
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A polling client of `/` that sends its requests to whichever node it is told.
struct Client {
    query: String,
    pending: Vec<String>,
}

impl Client {
    /// Opens a session through `base` and connects to `/` with `auth`; the CONNECT answer.
    async fn connect(base: &str, auth: Value) -> (Client, Value) {
        let (_, open) = request("GET", &format!("{base}?EIO=4&transport=polling"), "").await;
        let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
        let mut client = Client {
            query: format!(
                "?EIO=4&transport=polling&sid={}",
                open["sid"].as_str().unwrap()
            ),
            pending: Vec::new(),
        };
        assert_eq!(
            client.post(base, &format!("40{auth}")).await,
            (200, "ok".into())
        );
        let answer = client.next(base).await;
        let answer = serde_json::from_str(answer.strip_prefix("40").expect(&answer)).unwrap();
        (client, answer)
    }

    async fn post(&self, base: &str, body: &str) -> (u16, String) {
        request("POST", &format!("{base}{}", self.query), body).await
    }

    async fn poll(&self, base: &str) -> (u16, String) {
        request("GET", &format!("{base}{}", self.query), "").await
    }

    /// The next packet, polled through `base`.
    async fn next(&mut self, base: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pending.is_empty() {
            assert!(Instant::now() < deadline, "no packet within 5 s");
            let (status, body) = self.poll(base).await;
            assert_eq!(status, 200, "{body}");
            self.pending = body.split('\u{1e}').rev().map(str::to_owned).collect();
        }
        self.pending.pop().unwrap()
    }

    /// The next `tick` broadcast: its payload and offset.
    async fn tick(&mut self, base: &str) -> (i64, String) {
        let packet = self.next(base).await;
        let event: Value = serde_json::from_str(packet.strip_prefix("42").expect(&packet)).unwrap();
        assert_eq!(event[0], "tick", "{packet}");
        (
            event[1].as_i64().unwrap(),
            event[2].as_str().unwrap().to_owned(),
        )
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn a_dead_owner_s_post_reaches_its_handler_once_and_the_client_recovers() {
    let (cluster, store, got) = (MemoryCluster::default(), Arc::default(), Got::default());
    let (a, node_a, base_a) = node(&cluster, &store, 0, &got);
    let (b, _node_b, base_b) = node(&cluster, &store, 1, &got);
    let (mut client, first) = Client::connect(&base_a, json!({})).await;
    a.of("/").unwrap().sockets()[0].join("lobby");
    b.emit("tick", &1).unwrap();
    // Polled through B: B knows A alive and the session confirmed when A dies.
    let (one, offset) = client.tick(&base_b).await;
    assert_eq!(one, 1);

    // A is killed; the client's POST comes to B (round robin), after a broadcast it missed.
    node_a.stop(true);
    b.to("lobby").emit("tick", &2).unwrap();
    assert_eq!(
        client.post(&base_b, r#"42["msg","sent as A died"]"#).await,
        (200, "ok".into())
    );
    // B's handler got it, as the socket A had.
    until("the event handled", || !got.lock().unwrap().is_empty()).await;
    let sid = first["sid"].as_str().unwrap();
    assert_eq!(
        *got.lock().unwrap(),
        [(1, sid.to_owned(), "sent as A died".to_owned())]
    );
    assert!(
        b.of("/").unwrap().sockets().is_empty(),
        "the adopted socket stayed"
    );

    // The next poll finds the session gone; the client reconnects and recovers on B, with
    // its room and the broadcast it missed.
    let (status, body) = client.poll(&base_b).await;
    assert_eq!(status, 400, "{body}");
    let auth = json!({"pid": first["pid"], "offset": offset});
    let (mut client, answer) = Client::connect(&base_b, auth).await;
    assert_eq!(answer["sid"], first["sid"], "not recovered");
    assert_eq!(client.tick(&base_b).await.0, 2);
    b.to("lobby").emit("tick", &3).unwrap();
    assert_eq!(client.tick(&base_b).await.0, 3);
    assert_eq!(got.lock().unwrap().len(), 1, "handled twice");
}

#[actix_web::test]
async fn a_frozen_owner_s_session_is_never_adopted() {
    let (cluster, store, got) = (MemoryCluster::default(), Arc::default(), Got::default());
    let (_a, node_a, base_a) = node(&cluster, &store, 0, &got);
    let (b, _node_b, base_b) = node(&cluster, &store, 1, &got);
    let (client, _) = Client::connect(&base_a, json!({})).await;

    // Unreachable, but still connected to the store: its sessions are its own.
    node_a.stop(false);
    let (status, body) = client.post(&base_b, r#"42["msg","lost"]"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(got.lock().unwrap().is_empty());
    assert!(b.of("/").unwrap().sockets().is_empty());
    // Nothing was taken from the store, and the claim was let go.
    assert_eq!(store.by_pid.lock().unwrap().len(), 1);
    assert!(store.claims.lock().unwrap().is_empty());

    // Another node's adoption in progress keeps this one out.
    store.dead.lock().unwrap().insert(0);
    let sid = client.query.rsplit('=').next().unwrap().to_owned();
    store.claims.lock().unwrap().insert(sid);
    let (status, _) = client.post(&base_b, r#"42["msg","lost"]"#).await;
    assert_eq!(status, 400);
    assert!(got.lock().unwrap().is_empty());
}
