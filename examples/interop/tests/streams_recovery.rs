//! Connection state recovery across a mixed cluster on Redis streams (Node's
//! `@socket.io/redis-streams-adapter` 0.3 and sio's `RedisConfig::streams`): clients on node A,
//! a broadcaster on B; A goes away mid-broadcast and the clients come back on B and C, each
//! recovered (same id, rooms and `socket.data`) with every broadcast exactly once and in order
//! (`js/failover.mjs`). The missed broadcasts are read back from the stream, the sessions from
//! `sio:session:<pid>`, whichever server wrote them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{ClusterNode, Kind, Redis, run_script, start_node_env, url};

fn failover(a: &ClusterNode, b: &ClusterNode, c: &ClusterNode, how: &[&str]) {
    let (a, b, c) = (url(a.port), url(b.port), url(c.port));
    let mut args = vec!["--a", &a, "--b", &b, "--c", &c];
    args.extend_from_slice(how);
    run_script("failover.mjs", &args);
}

const ENV: [(&str, &str); 1] = [("CSR", "1")];

/// sio writes its sessions through while the sockets live, so a SIGKILLed sio node loses
/// none: its clients recover on a Node node and on a sio node. Node B is also the
/// broadcaster, and a Node node that recovers a client while it broadcasts can lose one
/// broadcast for that client (seen in 3 runs of 6: its `restoreSession` reads the stream, then
/// the socket joins its rooms, and a broadcast delivered in between misses it), so losses of
/// clients recovered on B are reported, not failed on; sio's recovery (C) holds the
/// namespace's deliveries while it joins the rooms and must lose nothing.
#[test]
fn clients_of_a_killed_sio_node_recover_on_node_and_sio() {
    let redis = Redis::start();
    let start = |kind, name| start_node_env(kind, name, &redis.url(), "streams", &ENV);
    let (a, b, c) = (
        start(Kind::Sio, "A"),
        start(Kind::Node, "B"),
        start(Kind::Sio, "C"),
    );
    failover(
        &a,
        &b,
        &c,
        &["--kill", &a.pid().to_string(), "--lenient", "B"],
    );
}

/// Node keeps a session when its socket disconnects: the clients drop their connections to a
/// Node node and recover on a sio node (with Node's socket ids) and on a Node node (C, whose
/// losses are reported only, as above).
#[test]
fn clients_of_a_node_node_recover_on_sio_and_node() {
    let redis = Redis::start();
    let start = |kind, name| start_node_env(kind, name, &redis.url(), "streams", &ENV);
    let (a, b, c) = (
        start(Kind::Node, "A"),
        start(Kind::Sio, "B"),
        start(Kind::Node, "C"),
    );
    failover(&a, &b, &c, &["--drop", "--lenient", "C"]);
}

/// A sio node started after the clients left (so it never saw what they missed) recovers
/// them from the stream.
#[test]
fn a_node_started_after_the_broadcasts_recovers_from_the_stream() {
    let redis = Redis::start();
    let start = |kind, name| start_node_env(kind, name, &redis.url(), "streams", &ENV);
    let (a, b) = (start(Kind::Sio, "A"), start(Kind::Sio, "B"));
    let (kill, redis_url) = (a.pid().to_string(), redis.url());
    let (a, b) = (url(a.port), url(b.port));
    let bin = env!("CARGO_BIN_EXE_interop-server");
    run_script(
        "late-recovery.mjs",
        &[
            "--a",
            &a,
            "--b",
            &b,
            "--redis",
            &redis_url,
            "--kill",
            &kill,
            "--sio-bin",
            bin,
        ],
    );
}
