//! What one client can make the chat do: a polling POST of a hundred events gets the socket's
//! burst handled and the rest answered with an error, and a thousand joins and leaves send the
//! other users one room list, not one per change. One node, no Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{ChatNode, http};

/// A long-polling client connected to `/` with a nickname, keeping every packet it got.
struct Client {
    port: u16,
    path: String,
    packets: Vec<String>,
}

impl Client {
    fn connect(node: &ChatNode, name: &str) -> Self {
        let open = http(node.port, "GET", "/socket.io/?EIO=4&transport=polling", "");
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut client = Client {
            port: node.port,
            path: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
            packets: Vec::new(),
        };
        client.post(&format!(r#"40{{"name":"{name}"}}"#));
        client.wait_for(|p| p.starts_with(r#"42["welcome""#));
        client
    }

    fn post(&self, payload: &str) {
        assert_eq!(http(self.port, "POST", &self.path, payload), "ok");
    }

    /// Polls until a packet matches `found` (at most 10 s); the packets before it stay in
    /// `packets`.
    fn wait_for(&mut self, found: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.packets.iter().any(|p| found(p)) {
            assert!(Instant::now() < deadline, "not found in {:?}", self.packets);
            let body = http(self.port, "GET", &self.path, "");
            self.packets.extend(body.split('\x1e').map(str::to_owned));
        }
    }
}

#[test]
fn a_flood_of_events_gets_the_burst_then_errors() {
    let node = ChatNode::start_on("rate", "", support::free_port(), &[]);
    let mut client = Client::connect(&node, "eve");
    let flood: Vec<String> = (1..=100).map(|id| format!(r#"42{id}["rooms"]"#)).collect();
    client.post(&flood.join("\x1e"));
    client.wait_for(|p| p.starts_with("43100["));

    let acks: Vec<&String> = client
        .packets
        .iter()
        .filter(|p| p.starts_with("43"))
        .collect();
    assert_eq!(acks.len(), 100, "{acks:?}");
    let refused = r#"[{"error":"too many events: slow down"}]"#;
    let handled = acks.iter().filter(|a| !a.ends_with(refused)).count();
    // The burst of 40, and what 20 a second refilled while the batch was dispatched.
    assert!((40..=42).contains(&handled), "{handled} handled: {acks:?}");

    // The budget comes back with time.
    std::thread::sleep(Duration::from_millis(200));
    client.post(r#"42101["rooms"]"#);
    client.wait_for(|p| p.starts_with("43101["));
    assert_eq!(client.packets.last().map(String::as_str), Some("43101[[]]"));
}

#[test]
fn a_flood_of_joins_and_leaves_sends_one_room_list() {
    let node = ChatNode::start_on("rooms", "", support::free_port(), &[]);
    let mut watcher = Client::connect(&node, "bob");
    let flooder = Client::connect(&node, "eve");
    let flood: Vec<&str> = (0..500)
        .flat_map(|_| [r#"42["join","a"]"#, r#"42["leave","a"]"#])
        .collect();
    flooder.post(&flood.join("\x1e"));

    // The room list goes out a moment after the changes; an ack asked for later comes after it.
    std::thread::sleep(Duration::from_secs(1));
    watcher.post(r#"421["rooms"]"#);
    watcher.wait_for(|p| p.starts_with("431["));
    let lists = watcher
        .packets
        .iter()
        .filter(|p| p.starts_with(r#"42["rooms","#))
        .count();
    assert_eq!(lists, 1, "{:?}", watcher.packets);
}
