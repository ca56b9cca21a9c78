//! Connection state recovery across nodes, surviving SIGKILL: clients on node A, a broadcaster
//! on B, A killed mid-broadcast; the clients come back on B and C recovered (same id, rooms and
//! `socket.data`), with every broadcast exactly once and in order (`js/failover.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Kind, Redis, run_script, start_node_env, url};

#[test]
fn sigkill_during_a_broadcast_loses_and_duplicates_nothing() {
    let redis = Redis::start();
    let env = [("CSR", "1")];
    let start = |name| start_node_env(Kind::Sio, name, &redis.url(), "classic", &env);
    let (a, b, c) = (start("A"), start("B"), start("C"));
    let kill = a.pid().to_string();
    let (a, b, c) = (url(a.port), url(b.port), url(c.port));
    run_script(
        "failover.mjs",
        &["--a", &a, "--b", &b, "--c", &c, "--kill", &kill],
    );
}

/// Polling-only clients and sender, all on A, their requests sent to B and C by a round-robin
/// proxy (`js/adoption.mjs`): A is SIGKILLed mid-stream, the sender's POSTs that B or C
/// could not forward are adopted there, and every broadcast arrives exactly once.
#[test]
fn sigkill_of_a_polling_sender_s_owner_loses_none_of_its_posts() {
    let redis = Redis::start();
    let env = [("CSR", "1")];
    let start = |name| start_node_env(Kind::Sio, name, &redis.url(), "classic", &env);
    let (a, b, c) = (start("A"), start("B"), start("C"));
    let kill = a.pid().to_string();
    let (a, b, c) = (url(a.port), url(b.port), url(c.port));
    run_script(
        "adoption.mjs",
        &["--a", &a, "--b", &b, "--c", &c, "--kill", &kill],
    );
}
