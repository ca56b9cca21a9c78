//! bench-server on SIGTERM: a pending long-poll is answered with the close packet (clients
//! reconnect elsewhere) and the process exits promptly.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{BenchServer, Polling};

#[test]
fn sigterm_tells_clients_and_exits() {
    let mut server = BenchServer::start(&[]);
    let session = Polling::open(server.port);
    let poll = std::thread::spawn(move || session.get());
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        poll.join().unwrap(),
        "1",
        "the pending poll gets the close packet"
    );
    while !server.exited() {
        assert!(
            stopping.elapsed() < Duration::from_secs(6),
            "bench-server still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("exited {:?} after SIGTERM", stopping.elapsed());
}
