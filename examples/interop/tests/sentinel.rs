//! sio nodes that find Redis through Sentinel (`redis+sentinel://`): every cluster operation
//! works, and after a failover (the replica is promoted, the old master demoted) the nodes
//! follow the new master and keep delivering across nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kind, Redis, free_port, redis_cli, request_subscribers, run_checker, start_node};

/// A `redis-server --sentinel` watching the master on `master_port`, killed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_sentinel(master_port: u16) -> Sentinel {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sio-sentinel-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is not installed (scripts/test installs it)");
    let sentinel = Sentinel {
        child,
        port,
        _dir: TempDir(dir),
    };
    wait_until(Duration::from_secs(10), || master_of(port).is_some());
    sentinel
}

/// The master port the sentinel names now.
fn master_of(sentinel: u16) -> Option<u16> {
    redis_cli(
        sentinel,
        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
    )
    .lines()
    .nth(1)
    .and_then(|p| p.trim().parse().ok())
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "condition not met in {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_find_the_master_through_sentinel_and_follow_a_failover() {
    let master = Redis::start();
    let replica = Redis::start_replica_of(master.port);
    wait_until(Duration::from_secs(10), || {
        redis_cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
    });
    let sentinel = start_sentinel(master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let a = start_node(Kind::Sio, "A", &url);
    let b = start_node(Kind::Sio, "B", &url);

    let (ok, output) = run_checker(a.port, b.port, &master.url(), "classic", None);
    assert!(ok, "through sentinel:\n{output}");

    // Make the replica the master; the nodes' connections to the old one are cut by Sentinel.
    redis_cli(sentinel.port, &["SENTINEL", "failover", "mymaster"]);
    wait_until(Duration::from_secs(15), || {
        master_of(sentinel.port) == Some(replica.port)
    });
    // Both nodes' subscribers moved to the new master.
    wait_until(Duration::from_secs(10), || {
        request_subscribers(replica.port) == "2"
    });
    // Publishers move within a second (they ask Sentinel again at most once a second).
    std::thread::sleep(Duration::from_millis(1500));
    // Only broadcasts: the first run's polling clients may linger as sessions until their ping
    // timeout, and would not answer acks.
    let (ok, output) = run_checker(
        a.port,
        b.port,
        &replica.url(),
        "classic",
        Some("broadcast-all"),
    );
    assert!(ok, "after the failover:\n{output}");
}
