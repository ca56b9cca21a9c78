//! The official `socket.io-client` (npm) against a sio server: every transport setup, acks both
//! ways, binary, rooms, broadcast operators, middleware, namespaces (tests/js/socketio_client.mjs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use bytes::Bytes;
use serde_json::{Value, json};
use sio_core::{AckSender, Args, Bin, ConnectError, Data, Namespace, SocketIo, SocketRef};

fn server() -> SocketIo {
    let main = Namespace::new("/")
        .on_connect(|socket: SocketRef, Data(auth): Data<Value>| async move {
            let _ = socket.emit("welcome", &json!({"id": socket.id(), "auth": auth}));
        })
        .on("echo", |args: Args, ack: AckSender| async move {
            let _ = ack.send(&args);
        })
        .on("echo-bin", |Bin(bin): Bin, ack: AckSender| async move {
            let lengths: Vec<usize> = bin.iter().map(Bytes::len).collect();
            let _ = ack.send(&lengths);
        })
        .on("send-bin", |socket: SocketRef| async move {
            let _ = socket
                .bin(vec![Bytes::from_static(&[9, 8, 7])])
                .emit("bin", &());
        })
        .on(
            "server-ack",
            |socket: SocketRef, Data(q): Data<i64>| async move {
                let answer: i64 = socket.emit_with_ack("ask", &q).await.unwrap_or(-1);
                let _ = socket.emit("answer", &answer);
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
            |socket: SocketRef, Data((room, msg)): Data<(String, String)>| async move {
                let _ = socket.to(room).emit("room-msg", &msg);
            },
        )
        .on(
            "broadcast",
            |socket: SocketRef, Data(msg): Data<String>| async move {
                let _ = socket.broadcast().emit("bcast", &msg);
            },
        )
        .on("my-rooms", |socket: SocketRef, ack: AckSender| async move {
            let _ = ack.send(&socket.rooms());
        })
        .on("disconnect-me", |socket: SocketRef| async move {
            socket.disconnect();
        })
        .on(
            "add",
            |Data((a, b)): Data<(i64, i64)>, ack: AckSender| async move {
                let _ = ack.send(&(a + b));
            },
        );
    let admin = Namespace::new("/admin").middleware(|Data(auth): Data<Value>| async move {
        if auth["token"] == "secret" {
            Ok(())
        } else {
            Err(ConnectError::new("not authorized").with_data(json!({"code": 401})))
        }
    });
    let dynamic =
        Namespace::new("/dyn").on("where", |socket: SocketRef, ack: AckSender| async move {
            let _ = ack.send(socket.ns());
        });
    SocketIo::builder()
        .namespace(main)
        .namespace(admin)
        .dynamic_namespace(|path| path.starts_with("/dyn-"), dynamic)
        .build()
}

/// Starts the server on a free port in its own actix system thread.
fn start() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let io = server();
            let server = HttpServer::new(move || App::new().service(io.service()))
                .workers(2)
                .bind(("127.0.0.1", 0))
                .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn official_socketio_client() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/socket.io-client").exists(),
        "the npm packages of the client tests are missing: run scripts/test (it runs `npm ci` in {})",
        js.display()
    );
    run_client(Path::new("node"), &js.join("socketio_client.mjs"), start());
}

/// Runs a client script with a bounded time and asserts it succeeded.
fn run_client(program: &Path, script: &Path, addr: SocketAddr) {
    let mut child = Command::new(program)
        .arg(script)
        .arg(format!("http://{addr}"))
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

#[test]
fn python_socketio_client() {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let python = py.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python client is missing: run scripts/test (it creates {})",
        py.join(".venv").display()
    );
    run_client(&python, &py.join("smoke.py"), start());
}
