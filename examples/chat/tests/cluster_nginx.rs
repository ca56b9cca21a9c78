//! The chat as deployed behind a load balancer: three `chat` nodes on one private
//! `redis-server`, behind Debian's `nginx` with the shipped `nginx/nginx.conf` (ip_hash).
//! `tests/js/cluster.mjs` connects Node `socket.io-client` clients through nginx (polling only,
//! WebSocket only, and polling with upgrade, on every node), checks that every client gets
//! every other client's messages, kills one node (SIGKILL), and checks that its clients
//! reconnect through nginx to another node and keep chatting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{ChatNode, Nginx, Redis, run_node};

/// Messages each client sends per phase.
const MESSAGES_PER_CLIENT: usize = 5;

#[test]
fn clients_behind_nginx_chat_across_nodes_and_survive_a_node_crash() {
    let redis = Redis::start();
    let nodes: Vec<ChatNode> = ["node-1", "node-2", "node-3"]
        .into_iter()
        .map(|name| ChatNode::start(name, &redis.url()))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let nginx = Nginx::start("nginx.conf", &ports);
    let pids = nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.pid()))
        .collect::<Vec<_>>()
        .join(",");

    let (passed, output) = run_node(
        "cluster.mjs",
        &[nginx.url(), pids, MESSAGES_PER_CLIENT.to_string()],
        Duration::from_secs(120),
    );
    println!("{output}");
    assert!(
        passed && output.contains("cluster: all checks ok"),
        "the cluster script failed:\n{output}\nnginx error log:\n{}",
        nginx.error_log()
    );
}
