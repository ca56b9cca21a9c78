//! Sticky-free clusters: three `chat` nodes on one private `redis-server` behind nginx with plain
//! round-robin (`nginx/nginx-round-robin.conf`, no pinning at all). Polling-only and upgrading
//! Node `socket.io-client` clients join a room and chat (`tests/js/round-robin.mjs`), with no
//! message lost or duplicated, and every upgrading client ends up on WebSocket (its upgrade
//! tunnelled to the session's node when it lands on another); with `FORWARDING=off` the same
//! setup fails, which shows that forwarding is what makes it work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{ChatNode, Nginx, Redis, http, run_node, value};

fn run(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let redis = Redis::start();
    let nodes: Vec<ChatNode> = ["rr-1", "rr-2", "rr-3"]
        .into_iter()
        .map(|name| ChatNode::start_with(name, &redis.url(), env))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let nginx = Nginx::start("nginx-round-robin.conf", &ports);
    let mut all = vec![nginx.url()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let (passed, mut output) = run_node("round-robin.mjs", &all, Duration::from_secs(70));
    // Which upgrades needed a tunnel depends on where round-robin sent them: counted, not
    // asserted.
    let relayed: f64 = ports
        .iter()
        .map(|&port| {
            value(
                &http(port, "GET", "/metrics", ""),
                "sio_tunnel_messages_total",
            )
        })
        .sum();
    output.push_str(&format!(
        "tunnel messages relayed between nodes: {relayed}\n"
    ));
    (passed, output, nginx.error_log())
}

#[test]
fn polling_and_upgrading_clients_chat_through_round_robin_without_loss() {
    let (passed, output, log) = run(&[], &["10"]);
    println!("{output}");
    assert!(
        passed && output.contains("round-robin: all checks ok"),
        "{output}\nnginx error log:\n{log}"
    );
}

#[test]
fn without_forwarding_round_robin_fails() {
    let (passed, output, log) = run(&[("FORWARDING", "off")], &["10", "expect-failure"]);
    println!("{output}");
    assert!(
        passed && output.contains("fails as expected"),
        "{output}\nnginx error log:\n{log}"
    );
}
