//! Shared fixtures of the integration tests: a real server on a free port, and client scripts
//! run with a bounded time.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use sio_core::engine::{Handler, Message, Socket};
use sio_core::server::Server;

/// A bare Engine.IO handler that sends every message back, text as text, binary as binary.
pub(crate) struct Echo;

impl Handler for Echo {
    type Data = ();

    fn on_message(&self, socket: &Arc<Socket<()>>, message: Message) {
        let _ = socket.send(message.into_frame());
    }
}

/// The HTTP server an application runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http {
    /// actix-web's `HttpServer`.
    ActixWeb,
    /// `sio_core::server::Server`: sio drives upgraded connections itself.
    Sio,
}

/// Starts an actix-web `HttpServer` (two workers, like a real deployment sharing one session
/// table) on a free port of 127.0.0.1, in its own thread, with the routes `make` sets up.
pub(crate) fn start<F>(make: impl FnOnce() -> F + Send + 'static) -> SocketAddr
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    start_on(Http::ActixWeb, make)
}

/// [`start`] on the given HTTP server.
pub(crate) fn start_on<F>(http: Http, make: impl FnOnce() -> F + Send + 'static) -> SocketAddr
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let configure = make();
            let app = move || App::new().configure(configure.clone());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let server = match http {
                Http::ActixWeb => HttpServer::new(app)
                    .workers(2)
                    .listen(listener)
                    .unwrap()
                    .run(),
                Http::Sio => Server::new(app).workers(2).listen(listener).unwrap().run(),
            };
            server.await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A server started by [`start_stoppable_on`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    /// Stops the server; its thread then ends.
    pub(crate) handle: actix_web::dev::ServerHandle,
}

/// [`start_on`] for tests that start many servers: signals are left alone, and the returned
/// handle stops the server (and ends its thread) instead of leaving it to the process's end.
pub(crate) fn start_stoppable_on<F>(
    http: Http,
    make: impl FnOnce() -> F + Send + 'static,
) -> Running
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let configure = make();
            let app = move || App::new().configure(configure.clone());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = match http {
                Http::ActixWeb => HttpServer::new(app)
                    .workers(2)
                    .disable_signals()
                    .listen(listener)
                    .unwrap()
                    .run(),
                Http::Sio => Server::new(app)
                    .workers(2)
                    .disable_signals()
                    .listen(listener)
                    .unwrap()
                    .run(),
            };
            tx.send(Running {
                addr,
                handle: server.handle(),
            })
            .unwrap();
            server.await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// The folder of the npm client tests, checked to be installed.
pub(crate) fn js_dir(package: &str) -> PathBuf {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules").join(package).exists(),
        "the npm packages of the client tests are missing: run scripts/test (it runs `npm ci` in {})",
        js.display()
    );
    js
}

/// Runs `program script http://ADDR ARGS...` for at most 90 s and asserts it succeeded,
/// showing its output either way.
pub(crate) fn run_client(program: &Path, script: &Path, addr: SocketAddr, args: &[&str]) {
    let mut child = Command::new(program)
        .arg(script)
        .arg(format!("http://{addr}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    println!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} failed", script.display());
}

/// The upgrade request of a raw-TCP WebSocket client (Engine.IO v4, no session yet).
pub(crate) const WS_HANDSHAKE: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
     Upgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A client WebSocket frame (masked, as RFC 6455 requires of clients).
pub(crate) fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A raw Socket.IO client: a WebSocket speaking Engine.IO packets as text.
pub(crate) type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// A WebSocket session with the server at `addr`, past the Engine.IO open packet (no
/// namespace connected yet).
pub(crate) async fn ws_open(addr: &str) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (_, mut ws) = awc::Client::new().ws(url).connect().await.unwrap();
    next_text(&mut ws).await; // open
    ws
}

/// The next text frame, answering pings on the way; fails after 5 s.
pub(crate) async fn next_text(ws: &mut Ws) -> String {
    use awc::ws::{Frame, Message};
    use futures_util::{SinkExt as _, StreamExt as _};
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("connection closed")
            .unwrap();
        match frame {
            Frame::Text(text) if text == "2" => ws.send(Message::Text("3".into())).await.unwrap(),
            Frame::Text(text) => return String::from_utf8(text.to_vec()).unwrap(),
            Frame::Ping(p) => ws.send(Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

/// Stands between a cluster node and the receiver sio gives it, so that a test can cut the
/// node off as a killed process is: once the test drops it, nothing reaches the receiver.
#[derive(Debug)]
pub(crate) struct Listener(std::sync::Weak<dyn sio_core::NodeReceiver>);

impl sio_core::NodeReceiver for Listener {
    fn receive(&self, message: bytes::Bytes) {
        if let Some(receiver) = self.0.upgrade() {
            receiver.receive(message);
        }
    }
}

/// `Backend::listen_node` for a test backend over `node`: `receiver` listens through a
/// [`Listener`] kept in `slot` (empty `slot` to cut the node off).
pub(crate) fn listen_through(
    node: &sio_core::MemoryNode,
    node_id: u32,
    receiver: std::sync::Weak<dyn sio_core::NodeReceiver>,
    slot: &std::sync::Mutex<Option<Arc<Listener>>>,
) -> bool {
    use sio_core::Backend as _;
    let listener = Arc::new(Listener(receiver));
    let weak: std::sync::Weak<dyn sio_core::NodeReceiver> =
        Arc::downgrade(&listener) as std::sync::Weak<Listener>;
    *slot.lock().unwrap() = Some(listener);
    node.listen_node(node_id, weak)
}
