//! The chat in a real browser: Debian's headless Chromium, driven by `tests/js/two-nodes.mjs`
//! (playwright-core), with two pages on two `chat` nodes that share a private `redis-server`.
//! The script checks what a person would see (refused nicknames, the room's users and member
//! counts, the typing indicator, messages both ways with their delivered marks, a recovered
//! connection) and saves `artifacts/chat-two-nodes.png` at the repository's root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{ChatNode, Redis, repo_root, run_node};

/// Where Debian installs Chromium (scripts/test installs it).
const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn two_pages_on_two_nodes_chat_through_redis() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test (it installs Debian's chromium)"
    );
    let redis = Redis::start();
    let a = ChatNode::start("node-a", &redis.url());
    let b = ChatNode::start("node-b", &redis.url());
    let screenshot = repo_root().join("artifacts/chat-two-nodes.png");
    let _ = std::fs::remove_file(&screenshot);

    let (passed, output) = run_node(
        "two-nodes.mjs",
        &[a.url(), b.url(), screenshot.display().to_string()],
        Duration::from_secs(120),
    );
    println!("{output}");
    assert!(passed, "the browser script failed:\n{output}");
    assert!(output.contains("all 11 checks ok"), "{output}");
    let png = std::fs::read(&screenshot).expect("no screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
}
