//! Processes and HTTP of bench-server's tests: bench-server nodes, a private `redis-server`, and
//! one-shot HTTP/1.1 requests for Engine.IO long-polling. Every process is killed when its guard
//! drops, whatever the test's outcome. (The port and Redis helpers are those of
//! `examples/chat/tests/support`, copied: an example's tests do not reach into another example.)

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
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

/// Waits until something listens on `port`.
pub(crate) fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and returns the response body.
pub(crate) fn request(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// An Engine.IO long-polling session's path on a node (`sid` included).
pub(crate) struct Polling {
    pub(crate) port: u16,
    path: String,
}

impl Polling {
    /// Handshake only: the session exists, no namespace is joined.
    pub(crate) fn open(port: u16) -> Self {
        let open = request(port, "GET", "/socket.io/?EIO=4&transport=polling", "");
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no sid in {open}"));
        Polling {
            port,
            path: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        }
    }

    /// Handshake and Socket.IO CONNECT to `/`.
    pub(crate) fn connect(port: u16) -> Self {
        let session = Self::open(port);
        session.post("40");
        let answer = session.get();
        assert!(answer.starts_with("40{"), "CONNECT answered {answer}");
        session
    }

    /// One long-poll: the packets the server has (or waits for), `\x1e`-separated.
    pub(crate) fn get(&self) -> String {
        request(self.port, "GET", &self.path, "")
    }

    pub(crate) fn post(&self, payload: &str) {
        assert_eq!(request(self.port, "POST", &self.path, payload), "ok");
    }
}

/// A running `bench-server`.
pub(crate) struct BenchServer {
    child: Child,
    pub(crate) port: u16,
}

impl BenchServer {
    /// Starts one on a free port with these environment variables; returns once it listens
    /// (with `REDIS_URL`, that is after its Redis subscriptions are confirmed).
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_bench-server"))
            .envs(env.iter().copied())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = BenchServer { child, port };
        wait_listening(port, "bench-server");
        server
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub(crate) fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        wait_listening(port, "redis-server");
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
