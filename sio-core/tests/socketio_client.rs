//! The official `socket.io-client` (npm) against a sio server: every transport setup, acks both
//! ways, binary, rooms, broadcast operators, middleware, namespaces (tests/js/socketio_client.mjs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use bytes::Bytes;
use serde_json::{Value, json};
use sio_core::parser::Parser;
use sio_core::{
    AckSender, Args, Bin, ConnectError, Data, Namespace, RecoveryConfig, SocketIo, SocketRef,
};

fn server(parser: Parser) -> SocketIo {
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
            "set-data",
            |socket: SocketRef, Data(data): Data<Value>, ack: AckSender| async move {
                let _ = socket.set_data(&data);
                let _ = ack.send(&());
            },
        )
        .on("my-data", |socket: SocketRef, ack: AckSender| async move {
            let _ = ack.send(&socket.data());
        })
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
        .on("fail", |Data(ok): Data<bool>| async move {
            if ok {
                Ok(())
            } else {
                Err("refused by the handler")
            }
        })
        .on_disconnecting(|socket: SocketRef| async move {
            if socket.rooms().iter().any(|r| r == "watch") {
                let _ = socket.to("watch").emit("left", &socket.id());
            }
        })
        .on("volatile-burst", |socket: SocketRef| async move {
            // Within one handler call nothing drains the queue: only the first gets through.
            for i in 0..5 {
                let _ = socket.volatile().emit("burst", &i);
            }
            let _ = socket.emit("burst-end", &());
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
        .engine(|e| e.allow_eio3(true))
        .parser(parser)
        .connection_state_recovery(RecoveryConfig::default())
        .namespace(main)
        .namespace(admin)
        .dynamic_namespace(|path| path.starts_with("/dyn-"), dynamic)
        .build()
}

fn start(parser: Parser) -> std::net::SocketAddr {
    start_on(common::Http::ActixWeb, parser)
}

fn start_on(http: common::Http, parser: Parser) -> std::net::SocketAddr {
    common::start_on(http, move || {
        let io = server(parser);
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(io.service());
        }
    })
}

#[test]
fn official_socketio_client() {
    let js = common::js_dir("socket.io-client");
    let script = js.join("socketio_client.mjs");
    common::run_client(Path::new("node"), &script, start(Parser::Json), &[]);
}

#[test]
fn official_socketio_client_on_sio_s_server() {
    let js = common::js_dir("socket.io-client");
    let script = js.join("socketio_client.mjs");
    let addr = start_on(common::Http::Sio, Parser::Json);
    common::run_client(Path::new("node"), &script, addr, &[]);
}

#[test]
fn socketio_client_v2_over_engineio_v3() {
    let js = common::js_dir("socket.io-client-v2");
    let script = js.join("socketio_client_v2.mjs");
    common::run_client(Path::new("node"), &script, start(Parser::Json), &[]);
}

#[cfg(feature = "msgpack")]
#[test]
fn official_socketio_client_with_msgpack_parser() {
    let js = common::js_dir("socket.io-msgpack-parser");
    let script = js.join("socketio_client.mjs");
    common::run_client(
        Path::new("node"),
        &script,
        start(Parser::MsgPack),
        &["msgpack"],
    );
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
    common::run_client(&python, &py.join("smoke.py"), start(Parser::Json), &[]);
}
