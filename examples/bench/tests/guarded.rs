//! The hardening contract's additions: `/guarded` lets in only the token `ok` (after its
//! asynchronous middleware) and serves the same events as `/`; `GET /stats` counts sessions
//! and sockets as they come and go.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BenchServer, Polling, request};

/// A session that sent `connect` (a CONNECT packet) and got the answer to it.
fn connect(port: u16, connect: &str) -> (Polling, String) {
    let session = Polling::open(port);
    session.post(connect);
    let answer = session.get();
    (session, answer)
}

#[test]
fn guarded_admits_the_token_and_refuses_anything_else() {
    let server = BenchServer::start(&[]);
    let asked = Instant::now();
    let (session, answer) = connect(server.port, r#"40/guarded,{"token":"ok"}"#);
    assert!(answer.starts_with(r#"40/guarded,{"sid":""#), "{answer}");
    assert!(
        asked.elapsed() >= Duration::from_millis(10),
        "no token lookup"
    );
    session.post(r#"42/guarded,1["echo",{"a":[1,"x"]}]"#);
    assert_eq!(session.get(), r#"43/guarded,1[{"a":[1,"x"]}]"#);
    session.post(r#"42/guarded,["broadcast","hi"]"#);
    assert_eq!(session.get(), r#"42/guarded,["bcast","hi"]"#);

    let refusal = r#"44/guarded,{"message":"unauthorized"}"#;
    for refused in [
        r#"40/guarded,{"token":"no"}"#,
        r#"40/guarded,{"token":true}"#,
        r#"40/guarded,{}"#,
        "40/guarded,",
    ] {
        assert_eq!(connect(server.port, refused).1, refusal, "for {refused}");
    }
}

#[test]
fn stats_count_sessions_and_sockets_until_they_leave() {
    let server = BenchServer::start(&[]);
    let stats =
        || -> Value { serde_json::from_str(&request(server.port, "GET", "/stats", "")).unwrap() };
    let counts = |sessions: usize, n: usize| json!({ "sessions": sessions, "sockets": { "/": n, "/custom": n, "/guarded": n } });
    assert_eq!(stats(), counts(0, 0));

    let clients = [
        connect(server.port, "40").0,
        connect(server.port, "40/custom,").0,
        connect(server.port, r#"40/guarded,{"token":"ok"}"#).0,
        // A session on no namespace, and one whose CONNECT was refused: sessions, no sockets.
        Polling::open(server.port),
        connect(server.port, r#"40/guarded,{"token":"no"}"#).0,
    ];
    assert_eq!(stats(), counts(5, 1));

    for client in &clients {
        // The Engine.IO close packet, then the poll a client has pending when it closes: the
        // server keeps a session its client closed until a poll has been answered after the
        // close (at most ping_timeout), so that the poll gets no "Session ID unknown".
        client.post("1");
        client.get();
    }
    wait_for_stats(server.port, &counts(0, 0));
}

/// A client that sends its CONNECT to `/guarded` several times in one batch while the
/// middleware runs leaves nothing behind once it has gone.
#[test]
fn repeated_guarded_connects_leave_nothing_behind() {
    let server = BenchServer::start(&[]);
    let session = Polling::open(server.port);
    session.post(&[r#"40/guarded,{"token":"ok"}"#; 5].join("\x1e"));
    let answer = session.get();
    assert!(answer.starts_with(r#"40/guarded,{"sid":""#), "{answer}");
    session.post("1");
    session.get();
    wait_for_stats(
        server.port,
        &json!({ "sessions": 0, "sockets": { "/": 0, "/custom": 0, "/guarded": 0 } }),
    );
}

/// Polls `GET /stats` until it answers `expected`, for at most 5 s.
fn wait_for_stats(port: u16, expected: &Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now: Value = serde_json::from_str(&request(port, "GET", "/stats", "")).unwrap();
        if &now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "still {now} after 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
