//! What the Redis tests run: a private `redis-server` (or a three-master Redis Cluster, or a
//! Sentinel) on free ports, in plain text or TLS-only with an ACL user and certificates the
//! test makes, killed when its guard drops, whatever the test's outcome.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The ACL user of the TLS servers (their `default` user is off, as on managed Redis).
pub(crate) const USER: &str = "sio";
/// Its password: characters a URL must encode, and that `.password()` takes as they are.
pub(crate) const PASSWORD: &str = "p@ss:w/rd";
/// [`PASSWORD`] percent-encoded, for URLs.
pub(crate) const PASSWORD_IN_URL: &str = "p%40ss%3Aw%2Frd";
/// The password of the TLS sentinels (`requirepass`).
pub(crate) const SENTINEL_PASSWORD: &str = "sentinel-secret";

/// A free TCP port on 127.0.0.1 (released before use; the OS does not hand it out again at
/// once).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A folder of the test's own, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sio-redis-test-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Certificates made for one test: a CA; a server certificate it signed for `127.0.0.1` and
/// `localhost` (also a client certificate: Redis presents it on its own replication and
/// cluster-bus connections); a client certificate it signed; and another CA, which signed
/// nothing the servers use.
pub(crate) struct Certs {
    dir: TempDir,
}

impl Certs {
    pub(crate) fn make() -> Self {
        let dir = TempDir::new("certs");
        let (ca_pem, ca) = authority("sio test CA");
        std::fs::write(dir.0.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.0.join("other-ca.pem"), authority("another CA").0).unwrap();
        let leaf = |name: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.0.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.0.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        };
        leaf(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        leaf(
            "client",
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        Certs { dir }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }

    /// The CA that signed the servers' certificates.
    pub(crate) fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// `redis-server` settings: TLS with these certificates.
    fn server_args(&self) -> Vec<String> {
        let arg = |s: &str| s.to_owned();
        let file = |f: &str| self.path(f).display().to_string();
        vec![
            arg("--tls-cert-file"),
            file("server.pem"),
            arg("--tls-key-file"),
            file("server-key.pem"),
            arg("--tls-ca-cert-file"),
            file("ca.pem"),
        ]
    }

    /// `redis-cli` options for a TLS server with the ACL user.
    fn cli_args(&self) -> Vec<String> {
        let file = |f: &str| self.path(f).display().to_string();
        [
            "--tls",
            "--cacert",
            &file("ca.pem"),
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client-key.pem"),
            "--user",
            USER,
            "--pass",
            PASSWORD,
            "--no-auth-warning",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// A self-signed CA: its certificate (PEM) and what signs with it.
fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// `redis-server` settings of a TLS-only server as managed services run them: no plain-text
/// port, the `default` user off, [`USER`] allowed everything, clients not asked for a
/// certificate (`extra` may say `--tls-auth-clients yes`).
fn tls_server_args(certs: &Certs, port: u16) -> Vec<String> {
    let mut args: Vec<String> = ["--port", "0", "--tls-port", &port.to_string()]
        .map(str::to_owned)
        .to_vec();
    args.extend(certs.server_args());
    args.extend(
        [
            "--tls-auth-clients",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            USER,
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]
        .map(str::to_owned),
    );
    args
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk (a replica's
/// copy of its master goes to a folder of its own).
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    /// `redis-cli`'s options for it (TLS and login), empty for a plain server.
    cli_args: Vec<String>,
    _dir: TempDir,
}

impl Redis {
    pub(crate) fn start() -> Self {
        Self::spawn(|_| Vec::new(), Vec::new())
    }

    /// A TLS-only server with the ACL user [`USER`] (see [`tls_server_args`]), and `extra`
    /// settings.
    pub(crate) fn start_tls(certs: &Certs, extra: &[&str]) -> Self {
        let args = |port| {
            let mut args = tls_server_args(certs, port);
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            args
        };
        Self::spawn(args, certs.cli_args())
    }

    fn spawn(args: impl Fn(u16) -> Vec<String>, cli_args: Vec<String>) -> Self {
        let dir = TempDir::new("redis");
        let (child, port) = start_server(
            |port| {
                let mut all: Vec<String> = ["--save", "", "--appendonly", "no", "--dir"]
                    .map(str::to_owned)
                    .to_vec();
                all.push(dir.0.display().to_string());
                all.extend(args(port));
                all
            },
            &cli_args,
        );
        Redis {
            child,
            port,
            cli_args,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `rediss://` URL of a TLS server, with the ACL user's credentials.
    pub(crate) fn tls_url(&self) -> String {
        format!("rediss://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}", self.port)
    }

    /// `redis-cli` on this server.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli_with(self.port, &self.cli_args, args)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` on a free port of 127.0.0.1 with `args(port)`, answering `PING`; on another
/// port when it exits at once (the port, or a cluster's bus port, was taken meanwhile).
fn start_server(args: impl Fn(u16) -> Vec<String>, cli_args: &[String]) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args(port))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && cli_with(port, cli_args, &["PING"]).contains("PONG")
            {
                return (child, port);
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("redis-server exited at start five times (is it built with TLS? Debian's is)");
}

/// `redis-cli -p <port> <args>`: what it printed, on stdout and stderr.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    cli_with(port, &[], args)
}

/// `redis-cli -p <port> <options> <args>`.
fn cli_with(port: u16, options: &[String], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(options)
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
    /// `redis-cli`'s options for its nodes (TLS and login), empty for a plain cluster.
    cli_args: Vec<String>,
    _dir: TempDir,
}

impl Cluster {
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// A TLS-only cluster (`tls-cluster yes`: the cluster bus is TLS too) with the ACL user.
    pub(crate) fn start_tls(certs: &Certs) -> Self {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&Certs>) -> Self {
        let dir = TempDir::new("cluster");
        let path = dir.0.clone();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            cli_args: certs.map(Certs::cli_args).unwrap_or_default(),
            _dir: dir,
        };
        for _ in 0..3 {
            let args = |port: u16| {
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &path.display().to_string(),
                ]
                .map(str::to_owned)
                .to_vec();
                if let Some(certs) = certs {
                    args.extend(tls_server_args(certs, port));
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_owned),
                    );
                }
                args
            };
            cluster.nodes.push(start_server(args, &cluster.cli_args));
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")));
        create.push("--cluster-yes".to_owned());
        let args: Vec<&str> = create.iter().map(String::as_str).collect();
        let out = cluster.cli(cluster.ports()[0], &args);
        assert!(out.contains("[OK]"), "cluster create failed:\n{out}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in cluster.ports() {
            while !cluster
                .cli(port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
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

    /// The `rediss+cluster://` URL of a TLS cluster, with the ACL user's credentials, seeded
    /// with the first node only.
    pub(crate) fn tls_url(&self) -> String {
        format!(
            "rediss+cluster://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}",
            self.ports()[0]
        )
    }

    /// `redis-cli` on the node at `port`.
    pub(crate) fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_with(port, &self.cli_args, args)
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
    }
}

/// A `redis-server --sentinel` over TLS, with a password of its own ([`SENTINEL_PASSWORD`]),
/// watching the TLS master on `master_port` as `mymaster` (logging in there as [`USER`]);
/// killed on drop.
pub(crate) struct Sentinel {
    child: Child,
    pub(crate) port: u16,
    cli_args: Vec<String>,
    _dir: TempDir,
}

impl Sentinel {
    pub(crate) fn start_tls(certs: &Certs, master_port: u16) -> Self {
        let port = free_port();
        let dir = TempDir::new("sentinel");
        let file = |f: &str| certs.path(f).display().to_string();
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                 tls-auth-clients no\ntls-replication yes\n\
                 requirepass {SENTINEL_PASSWORD}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel auth-user mymaster {USER}\n\
                 sentinel auth-pass mymaster {PASSWORD}\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n",
                dir = dir.0.display(),
                cert = file("server.pem"),
                key = file("server-key.pem"),
                ca = file("ca.pem"),
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        let cli_args = [
            "--tls",
            "--cacert",
            &file("ca.pem"),
            "-a",
            SENTINEL_PASSWORD,
            "--no-auth-warning",
        ]
        .map(str::to_owned)
        .to_vec();
        let sentinel = Sentinel {
            child,
            port,
            cli_args,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel.master_port().is_none() {
            assert!(Instant::now() < deadline, "the sentinel did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        sentinel
    }

    /// `redis-cli` on this sentinel.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli_with(self.port, &self.cli_args, args)
    }

    /// The master port it names now.
    pub(crate) fn master_port(&self) -> Option<u16> {
        self.cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
    }

    /// The `rediss+sentinel://` URL of this sentinel's master, with the master's credentials.
    pub(crate) fn tls_url(&self) -> String {
        format!(
            "rediss+sentinel://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}/mymaster",
            self.port
        )
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
