//! What the Redis tests run: a private `redis-server` (or a three-master Redis Cluster) on free
//! ports, killed when its guard drops, whatever the test's outcome.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (released before use; the OS does not hand it out again at
/// once).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
}

impl Redis {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        let redis = Redis { child, port };
        wait_for_pong(port);
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` on this server.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_pong(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() || !cli(port, &["PING"]).contains("PONG")
    {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli -p <port> <args>`: what it printed, on stdout and stderr.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A field of `INFO`'s answer (`total_connections_received`, `cmdstat_hset`...).
pub(crate) fn info_field(port: u16, section: &str, field: &str) -> String {
    cli(port, &["INFO", section])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// How many times Redis ran `command` (from `INFO commandstats`).
pub(crate) fn calls(port: u16, command: &str) -> u64 {
    info_field(port, "commandstats", &format!("cmdstat_{command}"))
        .split(',')
        .find_map(|kv| kv.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Three cluster-enabled `redis-server`s made one Redis Cluster (three masters, no replicas),
/// in a temporary folder; killed on drop.
pub(crate) struct Cluster {
    nodes: Vec<(Child, u16)>,
    dir: std::path::PathBuf,
}

impl Cluster {
    pub(crate) fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sio-redis-test-cluster-{}", free_port()));
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
        for port in cluster.ports() {
            wait_for_pong(port);
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")));
        create.push("--cluster-yes".to_owned());
        let args: Vec<&str> = create.iter().map(String::as_str).collect();
        let out = cli(cluster.ports()[0], &args);
        assert!(out.contains("[OK]"), "cluster create failed:\n{out}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in cluster.ports() {
            while !cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not settle");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    pub(crate) fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(_, port)| *port).collect()
    }

    /// A `redis+cluster://` URL seeded with the first node only.
    pub(crate) fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.ports()[0])
    }

    /// Connections every node accepted so far.
    pub(crate) fn connections_received(&self) -> u64 {
        self.ports()
            .into_iter()
            .map(|port| {
                info_field(port, "stats", "total_connections_received")
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    }
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

/// Polls `check` every 20 ms until it holds; fails the test after `limit`.
pub(crate) async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sio node serving HTTP on a free port of 127.0.0.1, in a thread and runtime of its own
/// (its adapter must be made inside that runtime: `build` gets it there). Its runtime stops
/// when the test process ends.
pub(crate) fn sio_node<A: Clone + Send + 'static>(
    build: impl FnOnce() -> (sio_core::SocketIo, A) + Send + 'static,
) -> (std::net::SocketAddr, sio_core::SocketIo, A) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let (io, extra) = build();
            let service = io.clone();
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().service(service.service())
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send((server.addrs()[0], io, extra)).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap()
}

/// One Engine.IO polling request over HTTP/1.0 (`sid` for an open session); the status and
/// body.
pub(crate) fn poll(
    addr: std::net::SocketAddr,
    method: &str,
    sid: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut path = "/socket.io/?EIO=4&transport=polling".to_owned();
    if let Some(sid) = sid {
        path = format!("{path}&sid={sid}");
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Opens an Engine.IO session on `addr` and connects it to namespace `ns`; its sid.
pub(crate) fn connect(addr: std::net::SocketAddr, ns: &str) -> String {
    let (status, open) = poll(addr, "GET", None, "");
    assert_eq!(status, 200, "{open}");
    let json: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = json["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        poll(addr, "POST", Some(&sid), &format!("40{ns},")),
        (200, "ok".to_owned())
    );
    let (status, connected) = poll(addr, "GET", Some(&sid), "");
    assert_eq!(status, 200);
    assert!(
        connected.starts_with(&format!("40{ns},{{\"sid\":")),
        "{connected}"
    );
    sid
}
