//! Processes of the cluster tests: a private `redis-server`, cluster nodes and the checker.
//! Every process is killed when its guard drops, whatever the test's outcome.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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

pub(crate) fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// The ACL user of [`Redis::start_tls`] (its `default` user is off, as on managed Redis).
pub(crate) const TLS_USER: &str = "sio";
/// Its password, percent-encoded in URLs.
pub(crate) const TLS_PASSWORD: &str = "p@ss:w/rd";

/// A CA made for one test, and a server certificate it signed for `127.0.0.1` and
/// `localhost`, in a folder removed on drop.
pub(crate) struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub(crate) fn make() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let id = free_port();
        let dir = std::env::temp_dir().join(format!("sio-interop-certs-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Names of their own: a CA of another test is another issuer.
        ca.distinguished_name
            .push(DnType::CommonName, format!("sio interop test CA {id}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().unwrap();
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
        Certs { dir }
    }

    /// The CA's PEM file (`REDIS_CA`).
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    /// For a TLS server: the CA file, and that it has the ACL user.
    tls: Option<PathBuf>,
    /// Its working folder, removed on drop.
    dir: PathBuf,
}

impl Redis {
    pub(crate) fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A TLS-only server (no plain-text port) whose `default` user is off and whose user
    /// [`TLS_USER`] may do everything, as managed Redis services run.
    pub(crate) fn start_tls(certs: &Certs) -> Self {
        Self::start_tls_with(certs, &[])
    }

    /// [`start_tls`](Self::start_tls) with more settings (`--cluster-enabled yes`, ...).
    pub(crate) fn start_tls_with(certs: &Certs, extra: &[&str]) -> Self {
        for _ in 0..5 {
            if let Some(redis) = Self::try_start_tls(certs, free_port(), extra) {
                return redis;
            }
        }
        panic!("redis-server exited at start five times (is it built with TLS? Debian's is)");
    }

    fn try_start_tls(certs: &Certs, port: u16, extra: &[&str]) -> Option<Self> {
        let user_rule = format!(">{TLS_PASSWORD}");
        let tls_args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &certs.path("server.pem"),
            "--tls-key-file",
            &certs.path("server-key.pem"),
            "--tls-ca-cert-file",
            &certs.path("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            TLS_USER,
            "on",
            &user_rule,
            "~*",
            "&*",
            "+@all",
        ];
        let args: Vec<&str> = tls_args.iter().chain(extra).copied().collect();
        let mut redis = Self::try_spawn(port, &args)?;
        redis.tls = Some(certs.ca());
        Some(redis)
    }

    /// The `rediss://` URL of a TLS server, with the ACL user's credentials.
    pub(crate) fn tls_url(&self) -> String {
        format!(
            "rediss://{TLS_USER}:p%40ss%3Aw%2Frd@127.0.0.1:{}",
            self.port
        )
    }

    /// `redis-cli` on this server (TLS and login included).
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let Some(ca) = &self.tls else {
            return redis_cli(self.port, args);
        };
        let ca = ca.display().to_string();
        let mut all = vec!["--tls", "--cacert", &ca, "--user", TLS_USER];
        all.extend(["--pass", TLS_PASSWORD, "--no-auth-warning"]);
        all.extend(args);
        redis_cli(self.port, &all)
    }

    /// A replica of the server on `master`, on a free port.
    pub(crate) fn start_replica_of(master: u16) -> Self {
        Self::spawn(
            free_port(),
            &["--replicaof", "127.0.0.1", &master.to_string()],
        )
    }

    /// A server on `port` (again, after a stop: the outage test).
    pub(crate) fn start_on(port: u16) -> Self {
        Self::spawn(port, &[])
    }

    fn spawn(port: u16, extra: &[&str]) -> Self {
        Self::try_spawn(port, extra).expect("redis-server exited at start")
    }

    /// A server on `port`, or `None` when it exits at once (the port, or a cluster's bus port,
    /// was taken meanwhile).
    fn try_spawn(port: u16, extra: &[&str]) -> Option<Self> {
        // A replica writes its copy of the master to `dump.rdb` in its folder: one of its own,
        // not the test's working directory.
        let dir = std::env::temp_dir().join(format!("sio-interop-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(extra)
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        let mut redis = Redis {
            child,
            port,
            tls: None,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = redis.child.try_wait() {
                return None;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which server a node runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Sio,
    Node,
}

/// A running cluster node.
pub(crate) struct ClusterNode {
    child: Child,
    pub(crate) port: u16,
}

impl ClusterNode {
    /// The node's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit; whether it did.
    pub(crate) fn terminate(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node and waits for its `READY` line.
pub(crate) fn start_node(kind: Kind, name: &str, redis_url: &str) -> ClusterNode {
    start_node_with(kind, name, redis_url, "classic")
}

/// Starts a node speaking `adapter` (`classic` or `sharded`).
pub(crate) fn start_node_with(
    kind: Kind,
    name: &str,
    redis_url: &str,
    adapter: &str,
) -> ClusterNode {
    start_node_env(kind, name, redis_url, adapter, &[])
}

/// Starts a node speaking `adapter`, with more environment variables.
pub(crate) fn start_node_env(
    kind: Kind,
    name: &str,
    redis_url: &str,
    adapter: &str,
    env: &[(&str, &str)],
) -> ClusterNode {
    let port = free_port();
    let mut command = match kind {
        Kind::Sio => Command::new(env!("CARGO_BIN_EXE_interop-server")),
        Kind::Node => {
            let mut c = Command::new("node");
            c.arg(js_dir().join("node-server.mjs"));
            c
        }
    };
    let mut child = command
        .env("PORT", port.to_string())
        .env("NODE_NAME", name)
        .env("REDIS_URL", redis_url)
        .env("ADAPTER", adapter)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start a cluster node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("READY") {
                let _ = tx.send(());
            }
        }
    });
    let node = ClusterNode { child, port };
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{kind:?} node {name} did not print READY"));
    node
}

/// Runs the checker against nodes A and B (only the scenarios whose name contains `only`, when
/// given); whether every scenario passed, and its output.
pub(crate) fn run_checker(
    a: u16,
    b: u16,
    redis_url: &str,
    adapter: &str,
    only: Option<&str>,
) -> (bool, String) {
    run_checker_env(a, b, redis_url, adapter, only, &[])
}

/// [`run_checker`] with more environment variables (`REDIS_CA`, read by the checker and the
/// Rust emitter).
pub(crate) fn run_checker_env(
    a: u16,
    b: u16,
    redis_url: &str,
    adapter: &str,
    only: Option<&str>,
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut checker = Command::new("node");
    checker
        .envs(env.iter().copied())
        .arg(js_dir().join("checker.mjs"))
        .args(["--a", &format!("http://127.0.0.1:{a}")])
        .args(["--b", &format!("http://127.0.0.1:{b}")])
        .args(["--redis", redis_url])
        .args(["--adapter", adapter])
        .args(["--rust-emitter", env!("CARGO_BIN_EXE_emit")]);
    if let Some(only) = only {
        checker.args(["--only", only]);
    }
    let output = checker.output().expect("cannot run node");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// `redis-cli -p <port> <args>`: what it printed, on stdout and stderr.
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// How many connections the Redis server on `port` counts on the main namespace's request
/// channel: the classic protocol's server count.
pub(crate) fn request_subscribers(port: u16) -> String {
    redis_cli(port, &["PUBSUB", "NUMSUB", "socket.io-request#/#"])
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Runs `node js/<script> <args>`, prints what it printed (the counts of the recovery scripts,
/// for the report with `--nocapture`) and fails the test if it failed.
pub(crate) fn run_script(script: &str, args: &[&str]) {
    let output = Command::new("node")
        .arg(js_dir().join(script))
        .args(args)
        .output()
        .expect("cannot run node");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(
        output.status.success(),
        "{script}: {text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `http://127.0.0.1:<port>`
pub(crate) fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
