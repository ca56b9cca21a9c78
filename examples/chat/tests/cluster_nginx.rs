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

/// A redis-server, three chat nodes on it, and nginx with `template` in front of them; each
/// is stopped when its guard drops.
fn cluster(template: &str) -> (Redis, Vec<ChatNode>, Nginx) {
    let redis = Redis::start();
    let nodes: Vec<ChatNode> = ["node-1", "node-2", "node-3"]
        .into_iter()
        .map(|name| ChatNode::start(name, &redis.url()))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let nginx = Nginx::start(template, &ports);
    (redis, nodes, nginx)
}

#[test]
fn clients_behind_nginx_chat_across_nodes_and_survive_a_node_crash() {
    let (_redis, nodes, nginx) = cluster("nginx.conf");
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

/// One `GET /health` through nginx, with `cookie` if any: the answering node and the
/// `chat_node` cookie nginx set.
fn health(port: u16, cookie: Option<&str>) -> (String, Option<String>) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: chat_node={c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: chat\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let set_cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: chat_node="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let node = serde_json::from_str::<serde_json::Value>(body)
        .unwrap_or_else(|err| panic!("{err}: {response}"))["node"]
        .as_str()
        .unwrap()
        .to_owned();
    (node, set_cookie)
}

#[test]
fn the_cookie_variant_pins_each_client_to_one_node() {
    let (_redis, _nodes, nginx) = cluster("nginx-cookie.conf");

    // New clients get a cookie each, and spread over the nodes.
    let mut seen = std::collections::BTreeSet::new();
    let mut clients = Vec::new();
    for _ in 0..30 {
        let (node, cookie) = health(nginx.port, None);
        let cookie = cookie.expect("nginx set no chat_node cookie");
        seen.insert(node.clone());
        clients.push((node, cookie));
    }
    assert!(seen.len() > 1, "every new client went to {seen:?}");
    // A client that sends its cookie back stays on its node.
    for (node, cookie) in &clients {
        for _ in 0..3 {
            let (again, set) = health(nginx.port, Some(cookie));
            assert_eq!(&again, node, "cookie {cookie} moved");
            assert_eq!(set.as_deref(), Some(cookie.as_str()));
        }
    }
}
