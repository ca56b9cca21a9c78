//! Several nodes sharing a cluster backend ([`MemoryCluster`]): every cluster operation reaches
//! the sockets of the other node, checked with the official client on both (tests/js/cluster.mjs)
//! and from Rust.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use serde::Deserialize;
use sio_core::{AckSender, Data, MemoryCluster, Namespace, SocketIo, SocketRef, State};

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    msg: String,
}

fn node(cluster: &MemoryCluster) -> SocketIo {
    let ns = Namespace::new("/")
        .on(
            "broadcast",
            |socket: SocketRef, Data(msg): Data<String>| async move {
                let _ = socket.broadcast().emit("bcast", &msg);
            },
        )
        .on(
            "join",
            |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
                socket.join(room);
                let _ = ack.send(&());
            },
        )
        .on(
            "to-room",
            |socket: SocketRef, Data(m): Data<RoomMessage>| async move {
                let _ = socket.within(m.room).emit("room-msg", &m.msg);
            },
        )
        .on("count", |socket: SocketRef, ack: AckSender| async move {
            let sockets = socket.namespace().fetch_sockets().await.unwrap();
            let _ = ack.send(&sockets.len());
        })
        .on(
            "join-all",
            |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
                socket.namespace().join(room);
                let _ = ack.send(&());
            },
        )
        .on("my-rooms", |socket: SocketRef, ack: AckSender| async move {
            let _ = ack.send(&socket.rooms());
        })
        .on("ask-all", |socket: SocketRef, ack: AckSender| async move {
            let answers = socket
                .namespace()
                .timeout(std::time::Duration::from_secs(2))
                .emit_with_ack::<String, _>("ask", &())
                .await
                .unwrap();
            let mut names: Vec<String> = answers.into_iter().map(Result::unwrap).collect();
            names.sort();
            let _ = ack.send(&names);
        })
        .on(
            "kick",
            |socket: SocketRef, Data(room): Data<String>| async move {
                socket.within(room).disconnect();
            },
        );
    SocketIo::builder()
        .adapter(cluster.node())
        .namespace(ns)
        .build()
}

fn start(io: SocketIo) -> std::net::SocketAddr {
    common::start(move || {
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(io.service());
        }
    })
}

#[test]
fn cluster_operations_cross_nodes() {
    let js = common::js_dir("socket.io-client");
    let cluster = MemoryCluster::default();
    let a = start(node(&cluster));
    let b = start(node(&cluster));
    let b = format!("http://{b}");
    common::run_client(Path::new("node"), &js.join("cluster.mjs"), a, &[&b]);
}

#[actix_web::test]
async fn server_count_counts_every_node() {
    let cluster = MemoryCluster::default();
    let a = node(&cluster);
    let _b = node(&cluster);
    assert_eq!(a.server_count().await.unwrap(), 2);
    let alone = SocketIo::builder().build();
    assert_eq!(alone.server_count().await.unwrap(), 1);
}

#[actix_web::test]
async fn server_side_events_reach_the_other_nodes_handlers() {
    let cluster = MemoryCluster::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64)>();
    let receiving = |name: &'static str| {
        Namespace::new("/").on_server_event(
            "hello",
            move |Data((text, n)): Data<(String, i64)>, State(tx): State<Sender>| async move {
                let _ = tx.send((format!("{name}: {text}"), n));
            },
        )
    };
    let a = SocketIo::builder()
        .adapter(cluster.node())
        .with_state(tx.clone())
        .namespace(receiving("a"))
        .build();
    let _b = SocketIo::builder()
        .adapter(cluster.node())
        .with_state(tx)
        .namespace(receiving("b"))
        .build();
    a.server_side_emit("hello", &("world", 7)).unwrap();
    // Only the other node hears it, once.
    assert_eq!(rx.recv().await, Some(("b: world".to_string(), 7)));
    assert!(rx.try_recv().is_err());
}

type Sender = tokio::sync::mpsc::UnboundedSender<(String, i64)>;

#[actix_web::test]
async fn server_side_events_can_be_answered() {
    let cluster = MemoryCluster::default();
    let answering = |name: &'static str| {
        Namespace::new("/").on_server_event(
            "who",
            move |Data(question): Data<String>, ack: AckSender| async move {
                let _ = ack.send(&format!("{name} heard {question}"));
            },
        )
    };
    let a = SocketIo::builder()
        .adapter(cluster.node())
        .namespace(answering("a"))
        .build();
    let _b = SocketIo::builder()
        .adapter(cluster.node())
        .namespace(answering("b"))
        .build();
    let _c = SocketIo::builder()
        .adapter(cluster.node())
        .namespace(answering("c"))
        .build();
    let mut answers: Vec<String> = a
        .server_side_emit_with_ack::<String, _>("who", "ping")
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    answers.sort();
    assert_eq!(answers, ["b heard ping", "c heard ping"]);
}
