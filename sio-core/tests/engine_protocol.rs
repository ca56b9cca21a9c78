//! The Engine.IO v4 protocol on the wire, checked with a raw HTTP/WebSocket client: handshake,
//! Node's error answers, long-polling, heartbeats, close, limits, upgrade and CORS.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::ServiceConfig;
use awc::ws::{CloseCode, Frame, Message as WsMessage};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sio_core::engine::{Cors, Engine, EngineConfig};

const MAX_PAYLOAD: u64 = 1000;

/// An echo server with the official suites' timings, a small payload limit, CORS for every
/// origin, and an `allow_request` hook that refuses requests carrying `x-deny`.
fn server() -> String {
    let addr = common::start(|| {
        let config = EngineConfig::builder()
            .ping_interval(Duration::from_millis(300))
            .ping_timeout(Duration::from_millis(200))
            .max_payload(MAX_PAYLOAD)
            .cors(Cors::any())
            .allow_request(|req| !req.headers().contains_key("x-deny"))
            .build();
        let engine = Engine::new(config, common::Echo);
        move |cfg: &mut ServiceConfig| {
            cfg.service(engine.service());
        }
    });
    format!("http://{addr}/engine.io/")
}

async fn get(url: &str) -> (StatusCode, String) {
    let mut res = awc::Client::default().get(url).send().await.unwrap();
    let body = res.body().await.unwrap();
    (res.status(), String::from_utf8_lossy(&body).into_owned())
}

async fn post(url: &str, body: impl Into<Bytes>) -> (StatusCode, String) {
    let mut res = awc::Client::default()
        .post(url)
        .send_body(body.into())
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    (res.status(), String::from_utf8_lossy(&body).into_owned())
}

fn error(code: u8, message: &str) -> String {
    json!({"code": code, "message": message}).to_string()
}

/// Opens a polling session; returns its URL (with `sid`) and the handshake.
async fn open(base: &str) -> (String, Value) {
    let (status, body) = get(&format!("{base}?EIO=4&transport=polling")).await;
    assert_eq!(status, StatusCode::OK);
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    (format!("{base}?EIO=4&transport=polling&sid={sid}"), open)
}

#[actix_web::test]
async fn handshake_announces_the_settings() {
    let base = server();
    let (_, open) = open(&base).await;
    let keys: Vec<&str> = open
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ]
    );
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], MAX_PAYLOAD);
}

#[actix_web::test]
async fn the_path_answers_with_and_without_its_trailing_slash_only() {
    let base = server();
    let bare = base.trim_end_matches('/');
    open(&base).await;
    open(bare).await;
    for other in [format!("{bare}x/"), format!("{base}x")] {
        let (status, _) = get(&format!("{other}?EIO=4&transport=polling")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
    }
}

#[actix_web::test]
async fn bad_requests_get_node_s_errors() {
    let base = server();
    let cases = [
        (
            "?transport=polling",
            error(5, "Unsupported protocol version"),
        ),
        (
            "?EIO=3&transport=polling",
            error(5, "Unsupported protocol version"),
        ),
        (
            "?EIO=abc&transport=polling",
            error(5, "Unsupported protocol version"),
        ),
        ("?EIO=4", error(0, "Transport unknown")),
        ("?EIO=4&transport=abc", error(0, "Transport unknown")),
        (
            "?EIO=4&transport=polling&sid=nope",
            error(1, "Session ID unknown"),
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            get(&format!("{base}{query}")).await,
            (StatusCode::BAD_REQUEST, expected),
            "{query}"
        );
    }
    assert_eq!(
        post(&format!("{base}?EIO=4&transport=polling"), "4hi").await,
        (StatusCode::BAD_REQUEST, error(2, "Bad handshake method"))
    );
    let mut res = awc::Client::default()
        .get(format!("{base}?EIO=4&transport=polling"))
        .insert_header(("x-deny", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.body().await.unwrap(), error(4, "Forbidden"));
}

#[actix_web::test]
async fn polling_echoes_text_and_binary_batches() {
    let (url, _) = open(&server()).await;
    assert_eq!(post(&url, "4hello").await, (StatusCode::OK, "ok".into()));
    // Only what is queued: the first ping is not due before pingInterval.
    assert_eq!(get(&url).await, (StatusCode::OK, "4hello".into()));
    post(&url, "4a\x1e4b\x1ebAQIDBA==").await;
    assert_eq!(
        get(&url).await,
        (StatusCode::OK, "4a\x1e4b\x1ebAQIDBA==".into())
    );
}

#[actix_web::test]
async fn invalid_payload_closes_the_session() {
    let (url, _) = open(&server()).await;
    post(&url, "abc").await;
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn oversized_post_is_refused_early_and_closes_the_session() {
    let (url, _) = open(&server()).await;
    let body = format!("4{}", "x".repeat(usize::try_from(MAX_PAYLOAD).unwrap()));
    assert_eq!(post(&url, body).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn duplicate_polls_close_the_session() {
    let (url, _) = open(&server()).await;
    let first = get(&url);
    let second = async {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        get(&url).await
    };
    let (first, second) = futures_util::join!(first, second);
    assert_eq!(first, (StatusCode::OK, "1".into()));
    assert_eq!(second.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn client_close_answers_the_pending_poll_with_a_noop() {
    let (url, _) = open(&server()).await;
    let poll = get(&url);
    let close = async {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        post(&url, "1").await
    };
    let (poll, _) = futures_util::join!(poll, close);
    assert_eq!(poll, (StatusCode::OK, "6".into()));
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn heartbeat_pings_after_the_interval_and_times_out_without_pong() {
    let base = server();
    let (url, _) = open(&base).await;
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(get(&url).await, (StatusCode::OK, "2".into()));
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert_eq!(post(&url, "3").await.0, StatusCode::OK);
    }
    let (url, _) = open(&base).await;
    actix_web::rt::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
}

fn ws_url(base: &str, query: &str) -> String {
    format!(
        "{}?EIO=4&transport=websocket{query}",
        base.replacen("http", "ws", 1)
    )
}

async fn next_text<S, E>(conn: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Frame, E>> + Unpin,
    E: std::fmt::Debug,
{
    loop {
        match conn.next().await.unwrap().unwrap() {
            Frame::Text(text) => return String::from_utf8(text.to_vec()).unwrap(),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn websocket_sessions_echo_and_enforce_the_payload_limit() {
    let base = server();
    let (_, mut conn) = awc::Client::new()
        .ws(ws_url(&base, ""))
        .connect()
        .await
        .unwrap();
    let open: Value =
        serde_json::from_str(next_text(&mut conn).await.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], json!([]));
    conn.send(WsMessage::Text("4hello".into())).await.unwrap();
    assert_eq!(next_text(&mut conn).await, "4hello");
    conn.send(WsMessage::Binary(Bytes::from_static(&[1, 2, 3])))
        .await
        .unwrap();
    match conn.next().await.unwrap().unwrap() {
        Frame::Binary(data) => assert_eq!(&data[..], &[1, 2, 3]),
        other => panic!("expected binary, got {other:?}"),
    }
    let big = "x".repeat(usize::try_from(MAX_PAYLOAD).unwrap() + 1);
    conn.send(WsMessage::Text(big.into())).await.unwrap();
    // The close packet `1` may come first; then the close frame, with 1009.
    loop {
        match conn.next().await.unwrap().unwrap() {
            Frame::Text(text) if text == "1" => {}
            Frame::Close(Some(reason)) => break assert_eq!(reason.code, CloseCode::Size),
            other => panic!("expected a 1009 close, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn websocket_invalid_packet_and_close_packet_end_the_session() {
    let base = server();
    for packet in ["abc", "1"] {
        let (_, mut conn) = awc::Client::new()
            .ws(ws_url(&base, ""))
            .connect()
            .await
            .unwrap();
        next_text(&mut conn).await;
        conn.send(WsMessage::Text(packet.into())).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            match conn.next().await {
                None | Some(Ok(Frame::Close(_))) | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{packet:?} did not close quickly"
            );
        }
    }
}

#[actix_web::test]
async fn upgrade_moves_the_session_to_the_websocket() {
    let base = server();
    let (url, open) = open(&base).await;
    let sid = open["sid"].as_str().unwrap();
    let (_, mut ws) = awc::Client::new()
        .ws(ws_url(&base, &format!("&sid={sid}")))
        .connect()
        .await
        .unwrap();
    post(&url, "4queued").await;
    ws.send(WsMessage::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    assert_eq!(get(&url).await, (StatusCode::OK, "6".into()));
    ws.send(WsMessage::Text("5".into())).await.unwrap();
    // What was queued before the upgrade comes first, on the WebSocket.
    assert_eq!(next_text(&mut ws).await, "4queued");
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
    let (_, mut second) = awc::Client::new()
        .ws(ws_url(&base, &format!("&sid={sid}")))
        .connect()
        .await
        .unwrap();
    assert!(matches!(
        second.next().await,
        Some(Ok(Frame::Close(_))) | None
    ));
    ws.send(WsMessage::Text("4after".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4after");
}

#[actix_web::test]
async fn cors_preflight_and_headers() {
    let base = server();
    let res = awc::Client::default()
        .request(
            actix_web::http::Method::OPTIONS,
            format!("{base}?EIO=4&transport=polling"),
        )
        .insert_header(("origin", "https://a.example"))
        .insert_header(("access-control-request-headers", "content-type"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    let res = awc::Client::default()
        .get(format!("{base}?EIO=4&transport=polling"))
        .insert_header(("origin", "https://a.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
}

/// An echo server with tight process limits: 2 sessions, 3 handshakes a second, 4 packets a batch.
fn limited_server() -> (
    String,
    std::sync::Arc<std::sync::OnceLock<Engine<common::Echo>>>,
) {
    let engine_slot = std::sync::Arc::new(std::sync::OnceLock::new());
    let slot = engine_slot.clone();
    let addr = common::start(move || {
        let config = EngineConfig::builder()
            .max_sessions(2)
            .max_handshakes_per_second(3)
            .max_packets_per_batch(4)
            .build();
        let engine = Engine::new(config, common::Echo);
        let _ = slot.set(engine.clone());
        move |cfg: &mut ServiceConfig| {
            cfg.service(engine.service());
        }
    });
    (format!("http://{addr}/engine.io/"), engine_slot)
}

#[actix_web::test]
async fn process_limits_refuse_with_node_s_error_json() {
    let (base, engine) = limited_server();
    let handshake = format!("{base}?EIO=4&transport=polling");
    let (url, _) = open(&base).await;
    // A batch over max_packets_per_batch closes the session.
    assert_eq!(post(&url, "4a\x1e4b\x1e4c\x1e4d").await.0, StatusCode::OK);
    assert_eq!(
        get(&url).await,
        (StatusCode::OK, "4a\x1e4b\x1e4c\x1e4d".into())
    );
    assert_eq!(
        post(&url, "4a\x1e4b\x1e4c\x1e4d\x1e4e").await,
        (StatusCode::BAD_REQUEST, error(3, "Bad request"))
    );
    assert_eq!(get(&url).await.0, StatusCode::BAD_REQUEST);
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    // Two more sessions fill max_sessions; the next handshake is refused.
    let _second = open(&base).await;
    let _third = open(&base).await;
    assert_eq!(
        get(&handshake).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            error(3, "Too many sessions")
        )
    );
    let engine = engine.get().unwrap();
    assert_eq!(engine.session_count(), 2);
    // A server that is closing takes no new session.
    engine.close_all();
    assert_eq!(
        get(&handshake).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            error(3, "Too many sessions")
        )
    );
}

#[actix_web::test]
async fn handshakes_over_the_rate_get_429() {
    let addr = common::start(|| {
        let engine = Engine::new(
            EngineConfig::builder().max_handshakes_per_second(3).build(),
            common::Echo,
        );
        move |cfg: &mut ServiceConfig| {
            cfg.service(engine.service());
        }
    });
    let handshake = format!("http://{addr}/engine.io/?EIO=4&transport=polling");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&handshake).await.0);
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(
        get(&handshake).await,
        (
            StatusCode::TOO_MANY_REQUESTS,
            error(3, "Too many handshakes")
        )
    );
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&handshake).await.0, StatusCode::OK);
}

/// The open packet is in the first chunk of the WebSocket handshake's response body, before
/// any other task ran: actix-http writes the response and the open packet at once, one
/// syscall and one wake-up of the client fewer per connection.
#[actix_web::test]
async fn the_websocket_open_packet_leaves_with_the_handshake_response() {
    use actix_web::body::MessageBody as _;
    use actix_web::test;
    use std::task::Poll;

    let engine = Engine::new(EngineConfig::default(), common::Echo);
    let app = test::init_service(actix_web::App::new().service(engine.service())).await;
    let req = test::TestRequest::get()
        .uri("/engine.io/?EIO=4&transport=websocket")
        .insert_header(("upgrade", "websocket"))
        .insert_header(("connection", "Upgrade"))
        .insert_header(("sec-websocket-version", "13"))
        .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut body = std::pin::pin!(res.into_body());
    let first = std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_next(cx))).await;
    let Poll::Ready(Some(Ok(chunk))) = first else {
        panic!("the body had nothing to send with the response");
    };
    // An unmasked text frame first (the open packet is under 126 bytes: a 2-byte header).
    // The test request's body is empty, as if the client had gone: its close frame follows.
    assert_eq!(chunk[0], 0x81, "{chunk:?}");
    let open = chunk.get(2..2 + usize::from(chunk[1])).unwrap_or_default();
    assert!(open.starts_with(br#"0{"sid":""#), "{chunk:?}");
}
