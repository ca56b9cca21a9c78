//! The classic protocol's subscriptions on a real `redis-server`: namespace names that are
//! glob patterns or contain `#`, and a subscriber connection that Redis drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sio_core::{Backend as _, Namespace, NodeReceiver, SocketIo};
use sio_redis::{RedisAdapter, RedisConfig};
use support::{Redis, connect, eventually, poll, sio_node};

/// A classic node whose dynamic namespaces are every `/room-...` (sio-core refuses `#` in a
/// dynamic name; the application may still name one of its namespaces so).
fn rooms_node(redis: &Redis) -> (std::net::SocketAddr, SocketIo, RedisAdapter) {
    let url = redis.url();
    let (addr, io, adapter) = sio_node(move || {
        let adapter = RedisAdapter::new(RedisConfig::new(url)).unwrap();
        let io = SocketIo::builder()
            .adapter(adapter.clone())
            .forwarding(false)
            .dynamic_namespace(|path| path.starts_with("/room-"), Namespace::new("/room-*"))
            .namespace(Namespace::new("/room-1#x"))
            .build();
        (io, adapter)
    });
    (addr, io, adapter)
}

/// #9: a client that asks for `/room-*` makes its node subscribe for that namespace; the
/// pattern must not match `/room-1`'s channels too, or that node's `/room-1` clients get every
/// broadcast twice. Also `/room-1#x`, whose channels `/room-1`'s pattern matches.
#[test]
fn a_broadcast_in_a_dynamic_namespace_arrives_once() {
    let redis = Redis::start();
    let (a, _io_a, adapter_a) = rooms_node(&redis);
    let (b, io_b, adapter_b) = rooms_node(&redis);
    let client = connect(a, "/room-1");
    let hashed = connect(a, "/room-1#x");
    let _attacker = connect(a, "/room-*");
    let _sender = connect(b, "/room-1");
    let _hashed_sender = connect(b, "/room-1#x");
    actix_web::rt::System::new().block_on(async {
        for adapter in [&adapter_a, &adapter_b] {
            tokio::time::timeout(Duration::from_secs(10), adapter.ready())
                .await
                .unwrap();
        }
    });
    let emit = |ns: &str, event: &str, arg: &str| io_b.of(ns).unwrap().emit(event, arg).unwrap();
    emit("/room-1", "hello", "once");
    // Pub/sub keeps a connection's order: a duplicate of `hello` would come before `end`.
    emit("/room-1", "end", "");
    emit("/room-1#x", "hello", "hashed");
    emit("/room-1#x", "end", "");
    let received = |sid: &str, ns: &str| {
        let mut packets = Vec::new();
        for _ in 0..20 {
            let (status, body) = poll(a, "GET", Some(sid), "");
            assert_eq!(status, 200);
            packets.extend(body.split('\x1e').map(str::to_owned));
            if packets.iter().any(|p| p.contains("\"end\"")) {
                return packets;
            }
        }
        panic!("{ns}: no end in {packets:?}");
    };
    assert_eq!(
        received(&client, "/room-1"),
        [r#"42/room-1,["hello","once"]"#, r#"42/room-1,["end",""]"#]
    );
    assert_eq!(
        received(&hashed, "/room-1#x"),
        [
            r##"42/room-1#x,["hello","hashed"]"##,
            r##"42/room-1#x,["end",""]"##
        ]
    );
}

/// Collects what a node channel receives.
#[derive(Default)]
struct Inbox(Mutex<Vec<Bytes>>);

impl NodeReceiver for Inbox {
    fn receive(&self, message: Bytes) {
        self.0.lock().unwrap().push(message);
    }
}

/// #7: Redis drops a subscriber whose output buffer passes `client-output-buffer-limit pubsub`
/// (one big message is enough with a small limit): the adapter sees its connection close,
/// connects again and subscribes again at once. What was published meanwhile is lost.
#[tokio::test]
async fn a_subscriber_that_redis_drops_subscribes_again() {
    let redis = Redis::start();
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 64kb 32kb 1",
    ]);
    let config = || RedisConfig::new(redis.url()).key("k");
    let (a, b) = (
        RedisAdapter::new(config()).unwrap(),
        RedisAdapter::new(config()).unwrap(),
    );
    let inbox = Arc::new(Inbox::default());
    let weak: std::sync::Weak<dyn NodeReceiver> = Arc::downgrade(&inbox) as _;
    assert!(a.listen_node(7, weak));
    tokio::time::timeout(Duration::from_secs(10), a.ready())
        .await
        .unwrap();
    assert!(
        b.send_to_node(7, Bytes::from(vec![b'x'; 1 << 20]))
            .await
            .unwrap()
    );
    eventually(
        Duration::from_secs(10),
        "the subscriber was not dropped",
        || a.stats().reconnects >= 1,
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), a.ready())
        .await
        .unwrap();
    assert!(b.node_listens(7).await.unwrap(), "not subscribed again");
    assert!(
        b.send_to_node(7, Bytes::from_static(b"small"))
            .await
            .unwrap()
    );
    eventually(
        Duration::from_secs(10),
        "nothing after the reconnection",
        || {
            inbox
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.as_ref() == b"small")
        },
    )
    .await;
}
