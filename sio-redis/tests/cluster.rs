//! Node channels (sticky-free forwarding) and server counts on a real three-master Redis
//! Cluster: a shard channel lives on the master owning its slot, which alone counts its
//! subscribers, and every node counts only its own classic subscribers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use sio_core::{Backend as _, NodeReceiver, SocketIo};
use sio_redis::{RedisAdapter, RedisConfig};
use support::{Cluster, cli, eventually, poll, sio_node};

#[derive(Default)]
struct Inbox(Mutex<Vec<(u32, Bytes)>>);

/// The receiver of one node id, writing to a shared inbox.
struct Listener(u32, Arc<Inbox>);

impl NodeReceiver for Listener {
    fn receive(&self, message: Bytes) {
        self.1.0.lock().unwrap().push((self.0, message));
    }
}

async fn ready(config: RedisConfig) -> RedisAdapter {
    let adapter = RedisAdapter::new(config).unwrap();
    tokio::time::timeout(Duration::from_secs(20), adapter.ready())
        .await
        .unwrap();
    adapter
}

/// Node A listens for many node ids, whose channels spread over the three masters; node B,
/// seeded with one master, reaches each of them, and finds out at once that a made-up node id
/// (a forged sid's) has no listener.
async fn node_channels(cluster: &Cluster, config: impl Fn() -> RedisConfig, shard: bool) {
    let a = ready(config()).await;
    let inbox = Arc::new(Inbox::default());
    let ids: Vec<u32> = (1..=16).collect();
    let listeners: Vec<Arc<Listener>> = ids
        .iter()
        .map(|id| Arc::new(Listener(*id, inbox.clone())))
        .collect();
    for listener in &listeners {
        let weak: Weak<dyn NodeReceiver> = Arc::downgrade(listener) as _;
        assert!(a.listen_node(listener.0, weak));
    }
    tokio::time::timeout(Duration::from_secs(20), a.ready())
        .await
        .unwrap();
    if shard {
        // The channels are subscribed on more than one master: the case that needs routing.
        let owners: HashSet<u16> =
            ids.iter()
                .filter_map(|id| {
                    let channel = format!("socket.io-forward#{id:08x}#");
                    cluster.ports().into_iter().find(|port| {
                        cli(*port, &["PUBSUB", "SHARDNUMSUB", &channel]).contains("\n1")
                    })
                })
                .collect();
        assert!(owners.len() > 1, "{owners:?}");
    }
    let b = ready(config()).await;
    for id in &ids {
        assert!(b.node_listens(*id).await.unwrap(), "node {id}");
        let message = Bytes::from(format!("to {id}"));
        assert!(b.send_to_node(*id, message).await.unwrap(), "node {id}");
    }
    eventually(Duration::from_secs(10), "messages lost", || {
        inbox.0.lock().unwrap().len() == ids.len()
    })
    .await;
    for (id, message) in inbox.0.lock().unwrap().iter() {
        assert_eq!(message.as_ref(), format!("to {id}").as_bytes());
    }
    // #6: a node nobody runs.
    assert!(!b.node_listens(0x0bad_f00d).await.unwrap());
    assert!(!b.send_to_node(0x0bad_f00d, Bytes::new()).await.unwrap());
    drop(listeners);
}

/// #13 and #6, sharded pub/sub: `SPUBLISH`/`SHARDNUMSUB` go to the master owning the
/// channel's slot (anywhere else they get `MOVED`, or count nobody).
#[tokio::test]
async fn node_channels_on_a_cluster_in_sharded_mode() {
    let cluster = Cluster::start();
    node_channels(&cluster, || RedisConfig::new(cluster.url()).sharded(), true).await;
}

/// #6, classic pub/sub: a `PUBLISH` crosses the cluster bus, but each node counts only its own
/// subscribers, so whether a node listens is asked of every node.
#[tokio::test]
async fn node_channels_on_a_cluster_in_classic_mode() {
    let cluster = Cluster::start();
    node_channels(&cluster, || RedisConfig::new(cluster.url()), false).await;
}

/// #13 end to end: a session opened on node A is polled through node B (which forwards over
/// the owner's shard channel), on a cluster in sharded mode. Node ids are random, so whether
/// A's channel lives on the master B was seeded with is left to chance here; the test above
/// covers every master.
#[test]
fn forwarding_on_a_cluster_in_sharded_mode() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let node = || {
        let url = url.clone();
        sio_node(move || {
            let adapter = RedisAdapter::new(RedisConfig::new(url).sharded()).unwrap();
            let io = SocketIo::builder().adapter(adapter.clone()).build();
            (io, adapter)
        })
    };
    let ((a, io_a, adapter_a), (b, io_b, adapter_b)) = (node(), node());
    actix_web::rt::System::new().block_on(async {
        for adapter in [&adapter_a, &adapter_b] {
            tokio::time::timeout(Duration::from_secs(20), adapter.ready())
                .await
                .unwrap();
        }
    });
    let (status, open) = poll(a, "GET", None, "");
    assert_eq!(status, 200, "{open}");
    let json: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = json["sid"].as_str().unwrap().to_owned();
    assert_eq!(poll(b, "POST", Some(&sid), "40"), (200, "ok".to_owned()));
    let (status, connect) = poll(b, "GET", Some(&sid), "");
    assert_eq!(status, 200, "{connect}");
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    assert_eq!(io_a.metrics().sockets, vec![("/".to_owned(), 1)]);
    assert_eq!(io_b.metrics().forwarding.unwrap().failures, 0);
}

/// #17: the server count of a cluster (asked by every `fetch_sockets`, broadcast with acks and
/// `server_side_emit` with acks) reuses one connection per node, and is itself reused for a
/// second.
#[tokio::test]
async fn server_counts_on_a_cluster_open_no_connections() {
    let cluster = Cluster::start();
    let a = ready(RedisConfig::new(cluster.url())).await;
    assert_eq!(a.server_count().await.unwrap(), 1);
    let before = cluster.connections_received();
    for round in 0..3 {
        for _ in 0..20 {
            assert_eq!(a.server_count().await.unwrap(), 1);
        }
        if round < 2 {
            // Past the cached count: counted again, on the same connections.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
    }
    // Only the counting's own: `redis-cli` connects to each node to ask.
    assert_eq!(
        cluster.connections_received(),
        before + cluster.ports().len() as u64
    );
}
