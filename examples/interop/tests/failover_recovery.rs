//! Connection state recovery across nodes, surviving SIGKILL: clients on node A, a broadcaster
//! on B, A killed mid-broadcast; the clients come back on B and C recovered (same id, rooms and
//! `socket.data`), with every broadcast exactly once and in order (`js/failover.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{Kind, Redis, js_dir, start_node_env};

#[test]
fn sigkill_during_a_broadcast_loses_and_duplicates_nothing() {
    let redis = Redis::start();
    let env = [("RECOVERY", "60000")];
    let start = |name| start_node_env(Kind::Sio, name, &redis.url(), "classic", &env);
    let (a, b, c) = (start("A"), start("B"), start("C"));
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let output = Command::new("node")
        .arg(js_dir().join("failover.mjs"))
        .args([
            "--a",
            &url(a.port),
            "--b",
            &url(b.port),
            "--c",
            &url(c.port),
        ])
        .args(["--kill", &a.pid().to_string()])
        .output()
        .expect("cannot run node");
    let text = String::from_utf8_lossy(&output.stdout);
    // The counts go to the test's output for the report (`--nocapture`).
    println!("{text}");
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
