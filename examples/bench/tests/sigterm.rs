//! bench-server on SIGTERM: a pending long-poll is answered with the close packet, a
//! WebSocket gets it before its close frame (clients reconnect elsewhere), and the process
//! exits promptly.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{BenchServer, Polling};

#[test]
fn sigterm_tells_clients_and_exits() {
    let mut server = BenchServer::start(&[]);
    let session = Polling::open(server.port);
    let poll = std::thread::spawn(move || session.get());
    let mut ws = websocket(server.port);
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
    // Everything the WebSocket got until the server closed it: the close packet `1` as a text
    // frame, then a close frame.
    let mut rest = Vec::new();
    let _ = ws.read_to_end(&mut rest);
    let close_packet = [0x81, 0x01, b'1'];
    let at = rest
        .windows(3)
        .position(|w| w == close_packet)
        .unwrap_or_else(|| panic!("no close packet on the WebSocket: {rest:?}"));
    assert_eq!(
        rest.get(at + 3),
        Some(&0x88),
        "no close frame after it: {rest:?}"
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

/// A WebSocket session with a Socket.IO connection on `/`, read past the CONNECT answer.
fn websocket(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
          Upgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    // `40`, masked with a zero key.
    tcp.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'4', b'0'])
        .unwrap();
    let mut seen = Vec::new();
    while !seen.windows(3).any(|w| w == b"40{") {
        let mut buf = [0; 512];
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the CONNECT answer: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    tcp
}
