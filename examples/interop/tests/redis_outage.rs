//! Redis stops for 5 s under two sio nodes that keep broadcasting: no client is disconnected,
//! each node keeps delivering to its own clients, cross-node delivery resumes within 1 s of
//! Redis coming back (the subscriber reconnects and subscribes again), and what was published
//! during the outage is lost for the other node (pub/sub has no replay; the book says so).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Kind, Redis, js_dir, start_node};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn nodes_ride_out_a_redis_outage() {
    let redis = Redis::start();
    let port = redis.port;
    let url = redis.url();
    let a = start_node(Kind::Sio, "A", &url);
    let b = start_node(Kind::Sio, "B", &url);
    let client = Command::new("node")
        .arg(js_dir().join("outage.mjs"))
        .args(["--a", &format!("http://127.0.0.1:{}", a.port)])
        .args(["--b", &format!("http://127.0.0.1:{}", b.port)])
        .args(["--ms", "11000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_secs(2));
    let down_at = now_ms();
    drop(redis);
    std::thread::sleep(Duration::from_secs(5));
    let redis = Redis::start_on(port);
    let up_at = now_ms();

    let output = client.wait_with_output().unwrap();
    drop(redis);
    let report: Value =
        serde_json::from_slice(&output.stdout).expect("outage.mjs printed no report");
    let sent = report["sent"].as_object().unwrap();
    let got = |client: &str, tag: &str| report["received"][client].get(tag).and_then(Value::as_u64);

    assert_eq!(
        report["disconnects"],
        serde_json::json!([]),
        "clients were disconnected"
    );
    let (mut before, mut during, mut lost, mut after, mut late) = (0, 0, 0, 0, Vec::new());
    for (tag, at) in sent {
        let at = at.as_u64().unwrap();
        // Node A's own clients get every broadcast, outage or not.
        for local in ["A0", "A1"] {
            assert!(
                got(local, tag).is_some(),
                "{local} missed {tag} (sent {}ms after the outage began)",
                at as i64 - down_at as i64
            );
        }
        let remote = ["B0", "B1"].map(|c| got(c, tag).is_some());
        if at + 50 < down_at {
            before += 1;
            assert!(
                remote.iter().all(|r| *r),
                "B missed {tag}, sent before the outage"
            );
        } else if at < up_at {
            during += 1;
            lost += remote.iter().filter(|r| !**r).count() / 2;
        } else if at > up_at + 1000 {
            after += 1;
            if !remote.iter().all(|r| *r) {
                late.push(tag.clone());
            }
        }
    }
    println!(
        "before: {before}, during: {during} (lost for node B: {lost}), 1 s after Redis returned: {after}"
    );
    assert!(
        before > 5 && during > 30 && after > 10,
        "timeline too short"
    );
    assert!(
        late.is_empty(),
        "cross-node delivery had not resumed 1 s after Redis returned: {late:?}"
    );
    assert!(
        lost > 0,
        "messages published during the outage should be lost for the other node"
    );
}
