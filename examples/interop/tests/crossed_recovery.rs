//! Connection state recovery on the classic adapter, which has no shared log: every node logs
//! the cluster's broadcasts in its own arrival order, and two nodes broadcasting at the same
//! time each deliver their own first. Clients of node A come back on node B (a new Engine.IO
//! session, the official client's `pid` and offset) in the middle of two crossed bursts, one
//! from each node, and must get every broadcast exactly once, recovered
//! (`js/crossed-recovery.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Kind, Redis, run_script, start_node_env, url};

fn crossed_bursts(adapter: &str) {
    let redis = Redis::start();
    let env = [("CSR", "1")];
    let start = |name| start_node_env(Kind::Sio, name, &redis.url(), adapter, &env);
    let (a, b) = (start("A"), start("B"));
    run_script(
        "crossed-recovery.mjs",
        &["--a", &url(a.port), "--b", &url(b.port)],
    );
}

#[test]
fn crossed_bursts_from_two_nodes_are_recovered_on_the_other_node_exactly() {
    crossed_bursts("classic");
}

/// Sharded pub/sub sends a room's broadcast only to the nodes with that room; a broadcast
/// numbered for recovery goes to every node, or a node without the room would not know that
/// a client coming from another node missed it.
#[test]
fn on_the_sharded_adapter_too() {
    crossed_bursts("sharded");
}
