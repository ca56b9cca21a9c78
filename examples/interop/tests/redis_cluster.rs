//! Nodes on a three-node Redis Cluster (`redis+cluster://`), seeded with different cluster
//! nodes: classic pub/sub crosses the cluster bus (the server count adds up every cluster node's
//! subscribers), and sharded pub/sub puts each channel on the master owning its slot, in every
//! mix of sio and Node (`createShardedAdapter` on a node-redis cluster client).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kind, free_port, redis_cli, run_checker, start_node_with};

/// Cluster-enabled `redis-server`s in a temporary folder, killed on drop.
struct Cluster {
    nodes: Vec<(Child, u16)>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster() -> Cluster {
    let dir = std::env::temp_dir().join(format!("sio-redis-cluster-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster = Cluster {
        nodes: Vec::new(),
        dir: dir.clone(),
    };
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        cluster.nodes.push((child, port));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, port) in &cluster.nodes {
        while !redis_cli(*port, &["PING"]).contains("PONG") {
            assert!(Instant::now() < deadline, "a cluster node did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(cluster.nodes.iter().map(|(_, p)| format!("127.0.0.1:{p}")));
    create.push("--cluster-yes".to_owned());
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let out = redis_cli(cluster.nodes[0].1, &args);
    assert!(out.contains("[OK]"), "cluster create failed:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for (_, port) in &cluster.nodes {
        while !redis_cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the cluster did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    cluster
}

/// Runs the checker on nodes `a` and `b`, each given other cluster nodes as seeds.
fn check(cluster: &Cluster, a: Kind, b: Kind, adapter: &str) {
    let port = |i: usize| cluster.nodes[i].1;
    let seed_a = format!("redis+cluster://127.0.0.1:{}", port(0));
    let seed_b = format!(
        "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
        port(1),
        port(2)
    );
    let node_a = start_node_with(a, "A", &seed_a, adapter);
    let node_b = start_node_with(b, "B", &seed_b, adapter);
    let emitter_redis = format!("redis://127.0.0.1:{}", port(2));
    let (ok, output) = run_checker(node_a.port, node_b.port, &emitter_redis, adapter, None);
    println!("{adapter}: {a:?} + {b:?}:\n{output}");
    assert!(ok, "{adapter} on a Redis Cluster, {a:?} + {b:?}:\n{output}");
}

#[test]
fn classic_nodes_on_different_cluster_nodes_act_as_one() {
    let cluster = start_cluster();
    check(&cluster, Kind::Sio, Kind::Sio, "classic");
}

/// Sharded pub/sub is what a cluster is for: each channel lives on the master owning its slot.
/// All-Node first (the reference), then sio with sio and with Node, both ways.
#[test]
fn sharded_on_a_cluster_in_every_mix() {
    let cluster = start_cluster();
    for (a, b) in [
        (Kind::Node, Kind::Node),
        (Kind::Sio, Kind::Sio),
        (Kind::Sio, Kind::Node),
        (Kind::Node, Kind::Sio),
    ] {
        check(&cluster, a, b, "sharded");
    }
}
