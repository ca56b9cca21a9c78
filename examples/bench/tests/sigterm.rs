//! bench-server on SIGTERM: a pending long-poll is answered with the close packet (clients
//! reconnect elsewhere) and the process exits promptly.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends one HTTP/1.1 GET and returns the response body.
fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn sigterm_tells_clients_and_exits() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let open = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break get(port, "/socket.io/?EIO=4&transport=polling");
        }
        assert!(Instant::now() < deadline, "bench-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let poll = std::thread::spawn(move || {
        get(
            port,
            &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        poll.join().unwrap(),
        "1",
        "the pending poll gets the close packet"
    );
    while server.try_wait().unwrap().is_none() {
        assert!(
            stopping.elapsed() < Duration::from_secs(6),
            "bench-server still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("exited {:?} after SIGTERM", stopping.elapsed());
}
