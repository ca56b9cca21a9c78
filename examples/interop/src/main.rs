//! A cluster node that a checker drives through `socket.io-client` to compare mixed Node/sio
//! clusters with all-Node ones: namespaces `/` and `/other`, one acknowledged event per cluster
//! operation (broadcast, broadcast with acks, fetch, join/leave/disconnect, server-side emit),
//! on the Redis adapter.
//!
//! Environment: `PORT` (3001, on 127.0.0.1), `REDIS_URL` (`redis://127.0.0.1:6390`; may be
//! `rediss://user:password@host:port`, TLS with an ACL user), `REDIS_CA` (a PEM file with the
//! CA of a `rediss://` server's certificate, trusted besides the system's roots), `ADAPTER`
//! (`classic`, `sharded` or `streams`), `NODE_NAME` (`node-<PORT>`), `KEY` (`socket.io`),
//! `REQUESTS_TIMEOUT` (ms, 3000), `CSR` (`1`: connection state recovery on, as Node's
//! `connectionStateRecovery: {maxDisconnectionDuration: 60000}`: a 60 s window, middlewares
//! skipped on recovery; the same with every adapter; anything else: off).
//! Prints `READY {json}` once subscribed; exits on SIGTERM. Exits at once, saying why, when
//! Redis cannot be used (unreachable, a certificate or a password refused).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};
use sio_core::server::Server;
use sio_core::{
    AckSender, BroadcastOperators, Data, Namespace, RecoveryConfig, SocketIo, SocketRef, State,
};
use sio_redis::{RedisAdapter, RedisConfig, TlsConfig};

/// The bytes of a binary payload (`binary: true`).
const BIN: [u8; 7] = [0, 1, 2, 3, 0xfd, 0xfe, 0xff];

#[derive(Clone)]
struct Node {
    name: String,
    io: Arc<OnceLock<SocketIo>>,
    /// Server-side `sse` events received, by tag.
    sse_log: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

impl Node {
    /// Operators on the namespace a request names (`nsp`), else the socket's own.
    fn target(&self, socket: &SocketRef, req: &Value) -> Option<BroadcastOperators> {
        let nsp = req
            .get("nsp")
            .and_then(Value::as_str)
            .unwrap_or(socket.ns());
        let io = self.io.get()?;
        let mut ops = io.of(nsp)?;
        if req.get("exceptSelf").and_then(Value::as_bool) == Some(true) {
            ops = ops.except(socket.id().to_string());
        }
        Some(ops.within(rooms(req, "rooms")).except(rooms(req, "except")))
    }
}

/// A string or an array of strings.
fn rooms(req: &Value, key: &str) -> Vec<String> {
    match req.get(key) {
        Some(Value::String(room)) => vec![room.clone()],
        Some(Value::Array(rooms)) => rooms
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn timeout(req: &Value, default_ms: u64) -> Duration {
    Duration::from_millis(
        req.get("timeoutMs")
            .and_then(Value::as_u64)
            .unwrap_or(default_ms),
    )
}

fn namespace(path: &str) -> Namespace {
    Namespace::new(path)
        .on_connect(|socket: SocketRef, State(node): State<Node>| async move {
            let auth = &socket.handshake().auth;
            let query: HashMap<String, String> = socket
                .request()
                .uri
                .query()
                .map(|q| {
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let name = auth
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| query.get("name").cloned())
                .unwrap_or_default();
            let joined: Vec<String> = match auth.get("rooms") {
                Some(_) => rooms(auth, "rooms"),
                None => query
                    .get("rooms")
                    .map(|r| r.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
            };
            // A recovered socket got its rooms and data back (from another node, maybe).
            if !socket.recovered() {
                socket.join(joined);
                let _ = socket.set_data(&json!({"name": name, "node": node.name}));
            }
        })
        .on(
            "broadcast",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                if let Some(mut ops) = node.target(&socket, &req) {
                    let flag = |key| req.get(key).and_then(Value::as_bool) == Some(true);
                    if flag("volatile") {
                        ops = ops.volatile();
                    }
                    if flag("local") {
                        ops = ops.local();
                    }
                    let mut body = json!({"tag": req.get("tag"), "from": node.name});
                    if let Some(payload) = req.get("payload") {
                        body["payload"] = payload.clone();
                    }
                    let mut attachments = Vec::new();
                    if flag("binary") {
                        body["bin"] = json!({"_placeholder": true, "num": 0});
                        attachments.push(Bytes::from_static(&BIN));
                    }
                    match req.get("repeat").and_then(Value::as_u64) {
                        Some(n) => {
                            for seq in 0..n.min(1000) {
                                body["seq"] = json!(seq);
                                let _ = ops.clone().bin(attachments.clone()).emit("msg", &body);
                            }
                        }
                        None => {
                            let _ = ops.bin(attachments).emit("msg", &body);
                        }
                    }
                }
                let _ = ack.send(&json!({"ok": true, "node": node.name}));
            },
        )
        .on(
            "broadcast-room",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                let room = req.get("room").and_then(Value::as_str).unwrap_or_default();
                let body = json!({"tag": req.get("tag"), "from": node.name});
                let _ = socket.namespace().within(room.to_owned()).emit("msg", &body);
                let _ = ack.send(&json!({"ok": true, "node": node.name}));
            },
        )
        .on(
            "broadcast-with-ack",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                let Some(ops) = node.target(&socket, &req) else {
                    let _ = ack.send(&json!({"ok": false, "error": "no such namespace"}));
                    return;
                };
                let body = json!({"tag": req.get("tag"), "from": node.name});
                let answer = match ops.timeout(timeout(&req, 2000)).emit_with_ack::<Value, _>("ack-req", &body).await {
                    Ok(results) => {
                        let error = results.iter().find_map(|r| r.as_ref().err()).map(ToString::to_string);
                        let responses: Vec<Value> = results.into_iter().filter_map(Result::ok).collect();
                        json!({"ok": error.is_none(), "error": error, "responses": responses})
                    }
                    Err(err) => json!({"ok": false, "error": err.to_string(), "responses": []}),
                };
                let _ = ack.send(&answer);
            },
        )
        .on(
            "fetch",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                let started = Instant::now();
                let Some(ops) = node.target(&socket, &req) else {
                    let _ = ack.send(&json!({"ok": false, "error": "no such namespace"}));
                    return;
                };
                let ops = match req.get("timeoutMs") {
                    Some(_) => ops.timeout(timeout(&req, 3000)),
                    None => ops,
                };
                let answer = match ops.fetch_sockets().await {
                    Ok(sockets) => {
                        let sockets: Vec<Value> = sockets
                            .into_iter()
                            .map(|mut s| {
                                s.rooms.sort();
                                json!({"id": s.id, "rooms": s.rooms, "data": s.data})
                            })
                            .collect();
                        json!({"ok": true, "count": sockets.len(), "ms": started.elapsed().as_millis() as u64, "sockets": sockets})
                    }
                    Err(err) => json!({"ok": false, "error": err.to_string(), "ms": started.elapsed().as_millis() as u64}),
                };
                let _ = ack.send(&answer);
            },
        )
        .on(
            "sockets-join",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                if let Some(ops) = node.target(&socket, &req) {
                    ops.join(rooms(&req, "join"));
                }
                let _ = ack.send(&json!({"ok": true}));
            },
        )
        .on(
            "sockets-leave",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                if let Some(ops) = node.target(&socket, &req) {
                    ops.leave(rooms(&req, "leave"));
                }
                let _ = ack.send(&json!({"ok": true}));
            },
        )
        .on(
            "disconnect-sockets",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                // Answer first: the caller may be among the sockets it disconnects.
                let _ = ack.send(&json!({"ok": true}));
                if let Some(ops) = node.target(&socket, &req) {
                    if req.get("close").and_then(Value::as_bool) == Some(true) {
                        ops.close();
                    } else {
                        ops.disconnect();
                    }
                }
            },
        )
        .on(
            "server-side-emit",
            |socket: SocketRef, Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                let nsp = req.get("nsp").and_then(Value::as_str).unwrap_or(socket.ns());
                let Some(ops) = node.io.get().and_then(|io| io.of(nsp)) else {
                    let _ = ack.send(&json!({"ok": false, "error": "no such namespace"}));
                    return;
                };
                let body = json!({"tag": req.get("tag"), "from": node.name});
                let answer = if req.get("withAck").and_then(Value::as_bool) == Some(true) {
                    match ops.server_side_emit_with_ack::<Value, _>("sse", &body).await {
                        Ok(results) => {
                            let responses: Vec<Value> = results.into_iter().filter_map(Result::ok).collect();
                            json!({"ok": true, "error": null, "responses": responses})
                        }
                        Err(err) => json!({"ok": false, "error": err.to_string(), "responses": []}),
                    }
                } else {
                    let ok = ops.server_side_emit("sse", &body).is_ok();
                    json!({"ok": ok})
                };
                let _ = ack.send(&answer);
            },
        )
        .on(
            "sse-log",
            |Data(req): Data<Value>, State(node): State<Node>, ack: AckSender| async move {
                let tag = req.get("tag").and_then(Value::as_str).unwrap_or_default();
                let entries = node
                    .sse_log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(tag)
                    .cloned()
                    .unwrap_or_default();
                let _ = ack.send(&json!({"node": node.name, "count": entries.len(), "entries": entries}));
            },
        )
        .on(
            "server-count",
            |State(node): State<Node>, ack: AckSender| async move {
                let answer = match node.io.get() {
                    Some(io) => match io.server_count().await {
                        Ok(count) => json!({"ok": true, "count": count}),
                        Err(err) => json!({"ok": false, "error": err.to_string()}),
                    },
                    None => json!({"ok": false}),
                };
                let _ = ack.send(&answer);
            },
        )
        .on(
            "whoami",
            |socket: SocketRef, State(node): State<Node>, ack: AckSender| async move {
                let mut rooms = socket.rooms();
                rooms.sort();
                let _ = ack.send(&json!({
                    "id": socket.id().to_string(),
                    "node": node.name,
                    "nsp": socket.ns(),
                    "rooms": rooms,
                    "data": socket.data(),
                    "recovered": socket.recovered(),
                }));
            },
        )
        .on_server_event("sse", {
            let nsp = path.to_owned();
            move |Data(payload): Data<Value>, State(node): State<Node>, ack: AckSender| {
                let nsp = nsp.clone();
                async move {
                    let tag = payload.get("tag").and_then(Value::as_str).unwrap_or_default().to_owned();
                    node.sse_log
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(tag.clone())
                        .or_default()
                        .push(json!({"nsp": nsp, "payload": payload}));
                    let _ = ack.send(&json!({"node": node.name, "tag": tag}));
                }
            }
        })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    let port: u16 = env("PORT", "3001").parse().unwrap_or(3001);
    let adapter_kind = env("ADAPTER", "classic");
    let node_name = env("NODE_NAME", &format!("node-{port}"));
    let requests_timeout =
        Duration::from_millis(env("REQUESTS_TIMEOUT", "3000").parse().unwrap_or(3000));
    let redis_url = env("REDIS_URL", "redis://127.0.0.1:6390");
    let mut config = RedisConfig::new(&redis_url).key(env("KEY", "socket.io"));
    match std::env::var("REDIS_CA") {
        Ok(ca) if !ca.is_empty() && redis_url.starts_with("rediss") => {
            config = config.tls(TlsConfig::new().ca_file(ca));
        }
        // A CA means nothing without TLS (node-redis ignores it too).
        Ok(ca) if !ca.is_empty() => eprintln!("REDIS_CA ignored: REDIS_URL is not rediss://"),
        _ => {}
    }
    let config = match adapter_kind.as_str() {
        "classic" => config,
        "sharded" => config.sharded(),
        "streams" => config.streams(),
        other => {
            eprintln!("ADAPTER={other} is not supported; use classic, sharded or streams");
            std::process::exit(2);
        }
    };
    let adapter = match RedisAdapter::connect(config).await {
        Ok(adapter) => adapter,
        Err(err) => {
            eprintln!("interop-server: {err}");
            std::process::exit(1);
        }
    };
    let node = Node {
        name: node_name.clone(),
        io: Arc::default(),
        sse_log: Arc::default(),
    };
    let mut builder = SocketIo::builder();
    if env("CSR", "") == "1" {
        builder = builder.connection_state_recovery(
            RecoveryConfig::default()
                .max_disconnection_duration(Duration::from_secs(60))
                .skip_middlewares(true),
        );
    }
    let io = builder
        .ack_timeout(requests_timeout)
        .adapter(adapter.clone())
        .with_state(node.clone())
        .namespace(namespace("/"))
        .namespace(namespace("/other"))
        .build();
    let _ = node.io.set(io.clone());
    let health = json!({"node": node_name, "adapter": adapter_kind, "ready": true});
    let app_io = io.clone();
    let app_health = health.clone();
    let server = Server::new(move || {
        let health = app_health.clone();
        App::new()
            .route(
                "/health",
                web::get().to(move || {
                    let health = health.clone();
                    async move { HttpResponse::Ok().json(health) }
                }),
            )
            .service(app_io.service())
    })
    .workers(1)
    // On SIGTERM new connections are refused, running handlers get up to 5 s to send the
    // acks they owe, then every session gets a close packet, which clients treat as a lost
    // connection: they reconnect (to another node behind a load balancer).
    .shutdown_on_signal(&io, std::time::Duration::from_secs(5))
    .shutdown_timeout(2)
    .bind(("127.0.0.1", port))?
    .run();
    adapter.ready().await;
    println!("READY {health}");
    server.await
}
