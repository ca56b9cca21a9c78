//! Sticky-free forwarding between two nodes of a `MemoryCluster`: a session opened on one node
//! is served by polling requests that reach the other, and upgraded by a WebSocket that reaches
//! the other (tunnelled to the owner).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use awc::ws::{Frame, Message};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::engine::{ForwardMessage, Sid};
use sio_core::{
    AckSender, Args, Backend, BackendFuture, ClusterRequest, ClusterResponse, ForwardLimits,
    ForwardStats, MemoryCluster, MemoryNode, Namespace, NodeReceiver, RequestHandler, SocketIo,
};

fn node(io: SocketIo) -> SocketAddr {
    common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(io.service());
        }
    })
}

async fn request(
    client: &awc::Client,
    method: &str,
    addr: SocketAddr,
    sid: Option<&str>,
    body: &'static str,
) -> (u16, String) {
    let mut url = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url).content_type("text/plain;charset=UTF-8"),
    };
    let mut res = tokio::time::timeout(std::time::Duration::from_secs(10), req.send_body(body))
        .await
        .expect("answer in time")
        .expect("request");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn sid_of(open: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet");
    json["sid"].as_str().expect("sid").to_owned()
}

#[actix_web::test]
async fn polling_requests_for_a_session_of_another_node_are_served_by_its_owner() {
    let cluster = MemoryCluster::default();
    let io_a = SocketIo::builder().adapter(cluster.node()).build();
    let io_b = SocketIo::builder().adapter(cluster.node()).build();
    let (a, b) = (node(io_a.clone()), node(io_b.clone()));
    let client = awc::Client::default();

    let (status, open) = request(&client, "GET", a, None, "").await;
    assert_eq!(status, 200, "{open}");
    let sid = sid_of(&open);
    // CONNECT to "/" through B, then read the answer through B: both run on A's session.
    assert_eq!(
        request(&client, "POST", b, Some(&sid), "40").await,
        (200, "ok".to_owned())
    );
    let (status, connect) = request(&client, "GET", b, Some(&sid), "").await;
    assert_eq!(status, 200);
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    assert_eq!(io_a.metrics().sockets, vec![("/".to_owned(), 1)]);
    assert_eq!(io_b.metrics().sockets, vec![("/".to_owned(), 0)]);
    let (fa, fb) = (
        io_a.metrics().forwarding.expect("on"),
        io_b.metrics().forwarding.expect("on"),
    );
    // The POST's body went only once the owner confirmed the session (a probe), the GET's
    // answer confirmed it again.
    assert_eq!((fb.forwarded, fa.served, fb.failures), (3, 3, 0));

    // A sid of a node nobody runs gets Engine.IO's "Session ID unknown".
    let ghost = Sid::new(unused_node_id()).to_string();
    let (status, body) = request(&client, "GET", b, Some(&ghost), "").await;
    assert_eq!(status, 400);
    assert!(body.contains("Session ID unknown"), "{body}");
}

/// The limits given to the builder are the forwarder's: with room for one forwarded request,
/// a second one, while a poll waits on the owner, gets a 503 (which clients retry).
#[actix_web::test]
async fn forward_limits_set_on_the_builder_take_effect() {
    let cluster = MemoryCluster::default();
    let io_a = SocketIo::builder().adapter(cluster.node()).build();
    let io_b = SocketIo::builder()
        .adapter(cluster.node())
        .forward_limits(ForwardLimits {
            max_in_flight: 1,
            ..ForwardLimits::default()
        })
        .build();
    let (a, b) = (node(io_a), node(io_b.clone()));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;
    // A poll through B waits on A (nothing is queued): it takes the one slot.
    let poll = actix_web::rt::spawn({
        let (client, sid) = (client.clone(), sid.clone());
        async move { request(&client, "GET", b, Some(&sid), "").await }
    });
    until("the poll to be forwarded", || {
        forwarding(&io_b).forwarded == 1
    })
    .await;
    let (status, body) = request(&client, "POST", b, Some(&sid), "3").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(forwarding(&io_b).failures, 1);
    poll.abort();
}

/// A node id neither node of the test has (both are random; this one is fixed).
fn unused_node_id() -> u32 {
    0x0bad_f00d
}

#[actix_web::test]
async fn without_forwarding_a_foreign_sid_is_unknown_to_polls_and_upgrades() {
    let cluster = MemoryCluster::default();
    let io_a = SocketIo::builder().adapter(cluster.node()).build();
    let io_b = SocketIo::builder()
        .adapter(cluster.node())
        .forwarding(false)
        .build();
    let (a, b) = (node(io_a), node(io_b));
    let client = awc::Client::default();
    let (_, open) = request(&client, "GET", a, None, "").await;
    let (status, body) = request(&client, "POST", b, Some(&sid_of(&open)), "40").await;
    assert_eq!(status, 400);
    assert!(body.contains("Session ID unknown"), "{body}");
    assert_refused(ws_connect(b, &sid_of(&open)).await);
}

/// A node whose main namespace acks `echo` with its arguments.
fn echo_node(cluster: &MemoryCluster) -> SocketIo {
    let ns = Namespace::new("/").on("echo", |args: Args, ack: AckSender| async move {
        let _ = ack.send(&args);
    });
    SocketIo::builder()
        .adapter(cluster.node())
        .namespace(ns)
        .engine(|e| e.upgrade_timeout(Duration::from_millis(500)))
        .build()
}

/// Two echo nodes of one cluster, serving on the two addresses, and an HTTP client.
fn two_nodes() -> (SocketIo, SocketIo, SocketAddr, SocketAddr, awc::Client) {
    let cluster = MemoryCluster::default();
    let (io_a, io_b) = (echo_node(&cluster), echo_node(&cluster));
    let (a, b) = (node(io_a.clone()), node(io_b.clone()));
    (io_a, io_b, a, b, awc::Client::default())
}

/// A session opened on `owner` and a WebSocket through `edge` that has probed it.
async fn probing(
    client: &awc::Client,
    owner: SocketAddr,
    edge: SocketAddr,
) -> (String, common::Ws) {
    let sid = connected_session(client, owner).await;
    let mut ws = ws_connect(edge, &sid).await.expect("upgrade accepted");
    probe(&mut ws).await;
    (sid, ws)
}

/// Sends the probe and checks its answer.
async fn probe(ws: &mut common::Ws) {
    send(ws, "2probe").await;
    assert_eq!(common::next_text(ws).await, "3probe");
}

/// Waits until neither node has a tunnel end left.
async fn no_tunnels_left(io_a: &SocketIo, io_b: &SocketIo) {
    until("both tunnel ends to go", || {
        forwarding(io_a).tunnels == 0 && forwarding(io_b).tunnels == 0
    })
    .await;
}

fn forwarding(io: &SocketIo) -> ForwardStats {
    io.metrics().forwarding.expect("forwarding on")
}

/// Waits (at most 10 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A polling session opened on `owner`, connected to the main namespace; its sid.
async fn connected_session(client: &awc::Client, owner: SocketAddr) -> String {
    let (_, open) = request(client, "GET", owner, None, "").await;
    let sid = sid_of(&open);
    assert_eq!(
        request(client, "POST", owner, Some(&sid), "40").await.0,
        200
    );
    let (_, connect) = request(client, "GET", owner, Some(&sid), "").await;
    assert!(connect.starts_with("40{"), "{connect}");
    sid
}

async fn ws_connect(addr: SocketAddr, sid: &str) -> Result<common::Ws, awc::error::WsClientError> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (_, ws) = awc::Client::new().ws(url).connect().await?;
    Ok(ws)
}

/// The handshake was answered with Engine.IO's 400, not switched to a WebSocket.
fn assert_refused(connect: Result<common::Ws, awc::error::WsClientError>) {
    match connect {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 400);
        }
        Err(err) => panic!("{err}"),
        Ok(_) => panic!("upgraded"),
    }
}

async fn send(ws: &mut common::Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

/// The close frame's code, after any text frames (which are returned with it).
async fn until_closed(ws: &mut common::Ws) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close within 5 s");
        match frame {
            Some(Ok(Frame::Text(text))) => texts.push(String::from_utf8(text.to_vec()).unwrap()),
            Some(Ok(Frame::Close(reason))) => return (texts, reason.map(|r| r.code.into())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (texts, None),
        }
    }
}

#[actix_web::test]
async fn a_websocket_upgrade_on_another_node_is_tunnelled_to_the_owner() {
    let (io_a, io_b, a, b, client) = two_nodes();
    let sid = connected_session(&client, a).await;

    // The upgrade reaches B; the probe, the upgrade and the events run on A's session.
    let mut ws = ws_connect(b, &sid).await.expect("upgrade accepted");
    probe(&mut ws).await;
    send(&mut ws, "5").await;
    send(&mut ws, r#"420["echo","over the tunnel",{"n":1}]"#).await;
    assert_eq!(
        common::next_text(&mut ws).await,
        r#"430["over the tunnel",{"n":1}]"#
    );
    // From the owner to the client: a broadcast of A's.
    io_a.emit("news", "from A").unwrap();
    assert_eq!(common::next_text(&mut ws).await, r#"42["news","from A"]"#);
    assert_eq!(io_a.metrics().sockets, vec![("/".to_owned(), 1)]);
    assert_eq!(io_b.metrics().traffic.sessions, 0);
    let (fa, fb) = (forwarding(&io_a), forwarding(&io_b));
    assert_eq!((fa.tunnels, fb.tunnels), (1, 1));
    // B relayed `2probe`, `5` and the event; A `3probe`, the ack and the broadcast.
    assert_eq!((fa.tunnel_messages, fb.tunnel_messages), (3, 3));
    // The session is on WebSocket now: polling for it is refused, wherever it lands.
    assert_eq!(request(&client, "GET", b, Some(&sid), "").await.0, 400);

    // The client closes: the owner's session ends and both tunnel ends go.
    ws.send(Message::Close(None)).await.unwrap();
    until("the session to close", || {
        io_a.metrics().traffic.sessions == 0
    })
    .await;
    no_tunnels_left(&io_a, &io_b).await;
}

#[actix_web::test]
async fn the_owner_closing_closes_the_tunnelled_websocket() {
    let (io_a, io_b, a, b, client) = two_nodes();
    let (_, mut ws) = probing(&client, a, b).await;
    send(&mut ws, "5").await;
    // Wait for the upgrade to complete on A before closing A's sessions.
    send(&mut ws, r#"421["echo"]"#).await;
    assert_eq!(common::next_text(&mut ws).await, "431[]");

    io_a.close();
    let (texts, code) = until_closed(&mut ws).await;
    assert_eq!(texts.last().map(String::as_str), Some("1"), "{texts:?}");
    assert_eq!(code, Some(1000));
    no_tunnels_left(&io_a, &io_b).await;
}

#[actix_web::test]
async fn a_probe_that_never_upgrades_leaves_nothing_behind() {
    let (io_a, io_b, a, b, client) = two_nodes();
    let (sid, mut ws) = probing(&client, a, b).await;
    // No `5`: the owner gives up after its upgrade timeout and the edge closes the WebSocket.
    let (_, code) = until_closed(&mut ws).await;
    assert_eq!(code, None);
    no_tunnels_left(&io_a, &io_b).await;
    // The session goes on over polling, through either node.
    assert_eq!(
        request(
            &client,
            "POST",
            b,
            Some(&sid),
            r#"420["echo","still here"]"#
        )
        .await,
        (200, "ok".to_owned())
    );
    assert_eq!(
        request(&client, "GET", a, Some(&sid), "").await,
        (200, r#"430["still here"]"#.to_owned())
    );
    // A second upgrade may try again.
    let mut ws = ws_connect(b, &sid).await.expect("upgrade accepted");
    probe(&mut ws).await;
}

#[actix_web::test]
async fn only_upgrades_of_another_node_s_session_are_tunnelled() {
    let (io_a, io_b, a, b, client) = two_nodes();

    // A WebSocket-only client (no sid) is B's own session.
    let url = format!("ws://{b}/socket.io/?EIO=4&transport=websocket");
    let (_, mut ws) = awc::Client::new().ws(url).connect().await.unwrap();
    assert!(common::next_text(&mut ws).await.starts_with("0{"));
    assert_eq!(io_b.metrics().traffic.sessions, 1);
    assert_eq!(io_a.metrics().traffic.sessions, 0);
    assert_eq!(
        (forwarding(&io_a).tunnels, forwarding(&io_b).tunnels),
        (0, 0)
    );
    drop(ws);

    // A second WebSocket for a session another one is probing is closed at once (policy).
    let sid = connected_session(&client, a).await;
    let mut first = ws_connect(b, &sid).await.expect("upgrade accepted");
    probe(&mut first).await;
    let mut second = ws_connect(b, &sid).await.expect("accepted, then closed");
    assert_eq!(until_closed(&mut second).await.1, Some(1008));

    // An unknown session, or a node that is gone, gets the protocol's 400 before any upgrade.
    let ghost = Sid::new(unused_node_id()).to_string();
    assert_refused(ws_connect(b, &ghost).await);
}

/// What a test sees of, and changes in, an [`Instrumented`] node's backend.
#[derive(Debug, Clone, Default)]
struct Tap {
    /// Bytes of the forwarding messages the node sent, and the largest one.
    sent: Arc<AtomicUsize>,
    largest: Arc<AtomicUsize>,
    /// Liveness lookups the node asked.
    lookups: Arc<AtomicUsize>,
    /// While set, the node's answers to forwarded requests are lost (as when the edge that
    /// asked is gone, or its subscriber is reconnecting).
    lose_answers: Arc<AtomicBool>,
}

/// A node of a [`MemoryCluster`] with a [`Tap`], and a `close` that leaves the cluster as a
/// Redis backend's does (it unsubscribes: nothing reaches the node any more). With
/// `takes_all`, a message for a node nobody runs is taken anyway, as Redis Cluster's PUBLISH
/// does (it counts the subscribers of one shard node only).
struct Instrumented {
    node: MemoryNode,
    tap: Tap,
    takes_all: bool,
    /// What the cluster hands this node's messages to, until `close` drops it.
    listener: Mutex<Option<Arc<common::Listener>>>,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("tap", &self.tap)
            .finish()
    }
}

impl Instrumented {
    fn new(cluster: &MemoryCluster, takes_all: bool) -> (Self, Tap) {
        let tap = Tap::default();
        let node = Instrumented {
            node: cluster.node(),
            tap: tap.clone(),
            takes_all,
            listener: Mutex::new(None),
        };
        (node, tap)
    }
}

impl Backend for Instrumented {
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
        self.tap.sent.fetch_add(message.len(), Ordering::Relaxed);
        self.tap.largest.fetch_max(message.len(), Ordering::Relaxed);
        let answer = matches!(
            ForwardMessage::decode(message.clone()),
            Ok(ForwardMessage::Response(_))
        );
        if answer && self.tap.lose_answers.load(Ordering::Relaxed) {
            return Box::pin(async { Ok(false) });
        }
        let sent = self.node.send_to_node(node_id, message);
        let takes_all = self.takes_all;
        Box::pin(async move { Ok(sent.await? || takes_all) })
    }

    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        self.tap.lookups.fetch_add(1, Ordering::Relaxed);
        self.node.node_listens(node_id)
    }

    fn close(&self) {
        self.listener.lock().unwrap().take();
    }
}

/// The node id in a session id.
fn node_of(sid: &str) -> u32 {
    sid.parse::<Sid>().expect("a sid").node_id()
}

/// Forged sids name nodes nobody runs. On a backend that takes every message (Redis Cluster),
/// each used to hold one of the `max_in_flight` places until the owner was found gone: a few
/// of them kept every real session from polling through the node. Now they are refused at
/// once, and a real session's requests still go through.
#[actix_web::test]
async fn forged_sids_of_unknown_nodes_take_no_place_from_real_sessions() {
    let cluster = MemoryCluster::default();
    let io_a = echo_node(&cluster);
    let (backend, tap) = Instrumented::new(&cluster, true);
    let io_b = SocketIo::builder()
        .adapter(backend)
        .forward_limits(ForwardLimits {
            max_in_flight: 4,
            ..ForwardLimits::default()
        })
        .build();
    let (a, b) = (node(io_a), node(io_b.clone()));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let forged: Vec<_> = (0..4)
        .map(|n| {
            let (client, answered) = (client.clone(), answered.clone());
            let ghost = Sid::new(unused_node_id() + n).to_string();
            actix_web::rt::spawn(async move {
                let answer = request(&client, "GET", b, Some(&ghost), "").await;
                answered.fetch_add(1, Ordering::Relaxed);
                answer
            })
        })
        .collect();
    until("the forged requests to be answered or forwarded", || {
        answered.load(Ordering::Relaxed) == 4 || forwarding(&io_b).forwarded >= 4
    })
    .await;
    // Each forged node id was looked up once; none was sent anything.
    assert_eq!(tap.lookups.load(Ordering::Relaxed), 4);
    assert_eq!(forwarding(&io_b).forwarded, 0);
    assert_eq!(
        request(&client, "POST", b, Some(&sid), r#"421["echo","real"]"#).await,
        (200, "ok".to_owned())
    );
    assert_eq!(
        request(&client, "GET", b, Some(&sid), "").await,
        (200, r#"431["real"]"#.to_owned())
    );
    for answer in forged {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("Session ID unknown"), "{body}");
    }
    assert_eq!(forwarding(&io_b).failures, 0);
}

/// Forged sids with a real node's id: their POST bodies (up to `max_payload` each) are not
/// read, let alone published to the owner; only a small probe crosses the cluster.
#[actix_web::test]
async fn forged_posts_for_a_real_node_send_no_body_across_the_cluster() {
    let cluster = MemoryCluster::default();
    let io_a = echo_node(&cluster);
    let (backend, tap) = Instrumented::new(&cluster, false);
    let io_b = SocketIo::builder().adapter(backend).build();
    let (a, b) = (node(io_a), node(io_b.clone()));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;
    let body: &'static str = Box::leak(format!("4{}", "x".repeat(100_000)).into_boxed_str());
    for _ in 0..20 {
        let forged = Sid::new(node_of(&sid)).to_string();
        let (status, answer) = request(&client, "POST", b, Some(&forged), body).await;
        assert_eq!(status, 400);
        assert!(answer.contains("Session ID unknown"), "{answer}");
    }
    assert!(tap.largest.load(Ordering::Relaxed) < 100, "{tap:?}");
    assert!(tap.sent.load(Ordering::Relaxed) < 20 * 100, "{tap:?}");
    // A real session's POST still carries its body.
    assert_eq!(
        request(&client, "POST", b, Some(&sid), body).await,
        (200, "ok".to_owned())
    );
    assert!(tap.largest.load(Ordering::Relaxed) > 100_000, "{tap:?}");
}

/// The owner drained a frame into the answer of a forwarded poll, and the answer was lost on
/// its way to the edge: the frame goes back to the session's queue, and the client's next
/// poll gets it.
#[actix_web::test]
async fn an_undelivered_poll_answer_leaves_its_frames_for_the_next_poll() {
    let cluster = MemoryCluster::default();
    let (backend, tap) = Instrumented::new(&cluster, false);
    let io_a = SocketIo::builder().adapter(backend).build();
    // The edge gives up soon on the lost answer (its heartbeat allows that timeout).
    let io_b = SocketIo::builder()
        .adapter(cluster.node())
        .engine(|e| {
            e.ping_interval(Duration::from_millis(300))
                .ping_timeout(Duration::from_millis(200))
        })
        .forward_limits(ForwardLimits {
            timeout: Duration::from_millis(500),
            ..ForwardLimits::default()
        })
        .build();
    let (a, b) = (node(io_a.clone()), node(io_b));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;

    tap.lose_answers.store(true, Ordering::Relaxed);
    let poll = actix_web::rt::spawn({
        let (client, sid) = (client.clone(), sid.clone());
        async move { request(&client, "GET", b, Some(&sid), "").await }
    });
    until("the poll to reach the owner", || {
        forwarding(&io_a).served == 1
    })
    .await;
    io_a.emit("news", "kept").unwrap();
    assert_eq!(poll.await.unwrap().0, 502);
    tap.lose_answers.store(false, Ordering::Relaxed);
    assert_eq!(
        request(&client, "GET", a, Some(&sid), "").await,
        (200, r#"42["news","kept"]"#.to_owned())
    );
}

/// A forward timeout shorter than the ping interval would fail every idle forwarded poll (it
/// waits on its owner until the next ping): it is raised when the server is built.
#[actix_web::test]
async fn a_forward_timeout_shorter_than_the_heartbeat_is_raised() {
    let cluster = MemoryCluster::default();
    let heartbeat = |e: sio_core::engine::EngineConfigBuilder| {
        e.ping_interval(Duration::from_millis(600))
            .ping_timeout(Duration::from_millis(400))
    };
    let io_a = SocketIo::builder()
        .adapter(cluster.node())
        .engine(heartbeat)
        .build();
    let io_b = SocketIo::builder()
        .adapter(cluster.node())
        .engine(heartbeat)
        .forward_limits(ForwardLimits {
            timeout: Duration::from_millis(100),
            ..ForwardLimits::default()
        })
        .build();
    let (a, b) = (node(io_a), node(io_b));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;
    // Nothing is queued: the poll waits on A for its ping.
    assert_eq!(
        request(&client, "GET", b, Some(&sid), "").await,
        (200, "2".to_owned())
    );
}

/// At shutdown, the WebSockets a node relays for other nodes' sessions are closed with 1001
/// (going away), so that their clients reconnect at once instead of waiting for a dead relay.
#[actix_web::test]
async fn shutdown_closes_the_relayed_websockets_as_going_away() {
    let (io_a, io_b, a, b, client) = two_nodes();
    let (_, mut ws) = probing(&client, a, b).await;
    send(&mut ws, "5").await;
    send(&mut ws, r#"421["echo"]"#).await;
    assert_eq!(common::next_text(&mut ws).await, "431[]");

    let shutdown = actix_web::rt::spawn({
        let io_b = io_b.clone();
        async move { io_b.shutdown(Duration::from_secs(5)).await }
    });
    assert_eq!(until_closed(&mut ws).await.1, Some(1001));
    shutdown.await.unwrap();
    // The owner heard the close: its session is over.
    until("the owner's session to close", || {
        io_a.metrics().traffic.sessions == 0
    })
    .await;
    no_tunnels_left(&io_a, &io_b).await;
}

/// A node shutting down keeps listening to the cluster until its sessions' closes are
/// delivered: a client that polls through another node between two polls gets its close
/// packet instead of "Session ID unknown".
#[actix_web::test]
async fn shutdown_waits_for_the_close_of_a_session_polled_through_another_node() {
    let cluster = MemoryCluster::default();
    let (backend, _) = Instrumented::new(&cluster, false);
    let io_a = SocketIo::builder().adapter(backend).build();
    let io_b = SocketIo::builder().adapter(cluster.node()).build();
    let (a, b) = (node(io_a.clone()), node(io_b));
    let client = awc::Client::default();
    let sid = connected_session(&client, a).await;

    let shutdown = actix_web::rt::spawn({
        let io_a = io_a.clone();
        async move { io_a.shutdown(Duration::from_secs(5)).await }
    });
    until("the socket to close", || {
        io_a.metrics().sockets == vec![("/".to_owned(), 0)]
    })
    .await;
    let (status, body) = request(&client, "GET", b, Some(&sid), "").await;
    assert_eq!((status, body.as_str()), (200, "1"));
    shutdown.await.unwrap();
    assert_eq!(io_a.metrics().traffic.sessions, 0);
}
