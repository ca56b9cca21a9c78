//! The HTTP long-polling transport: handshake, GET (server to client) and POST (client to server).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt as _;

use super::packet::{Frame, Packet, encode};
use super::socket::{CloseReason, Protocol, RequestInfo, Socket, TransportKind};
use super::{Engine, EngineConfig, Handler, RequestError, payload};

/// How long a poll that starts during an upgrade may wait for it (Node's upgrade check interval).
const UPGRADE_CHECK: Duration = Duration::from_millis(100);

/// Opens a session and answers with its handshake packet.
pub(super) fn handshake<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    protocol: Protocol,
) -> HttpResponse {
    let socket = engine.open(TransportKind::Polling, RequestInfo::new(req), protocol);
    let open = encode(&engine.open_packet(&socket));
    engine.handler().on_open(&socket);
    payload_response(protocol, &[open])
}

/// Answers a poll with what is queued, waiting until something is.
pub(super) async fn get<D>(
    socket: &Arc<Socket<D>>,
    max_payload: usize,
) -> Result<HttpResponse, RequestError> {
    Ok(poll(socket, max_payload).await?.response(socket.protocol()))
}

/// What a poll takes from its session.
#[derive(Debug)]
pub(super) enum Polled {
    /// Frames drained from the queue: the answer is theirs alone, and they are nowhere else.
    Drained(Vec<Frame>),
    /// Nothing to deliver, the poll only has to end: a noop.
    Noop,
}

impl Polled {
    /// The answer to the poll, framed for the session's protocol.
    pub(super) fn response(&self, protocol: Protocol) -> HttpResponse {
        match self {
            Polled::Drained(frames) => payload_response(protocol, frames),
            Polled::Noop => payload_response(protocol, &[encode(&Packet::Noop)]),
        }
    }
}

/// Takes what a poll answers with, waiting until something is queued. A poll that finds
/// another one pending is a protocol error that closes the session; the pending one gets the
/// close packet. (actix-web does not tell a handler that its client went away, so an aborted
/// poll is detected this way too, when the client polls again.)
pub(super) async fn poll<D>(
    socket: &Arc<Socket<D>>,
    max_payload: usize,
) -> Result<Polled, RequestError> {
    let Ok(_reader) = socket.reader.try_lock() else {
        tracing::debug!(sid = %socket.sid(), "overlapping polls, closing the session");
        socket.close(CloseReason::TransportError);
        return Err(RequestError::BadRequest);
    };
    if socket.is_closed() {
        return closed_answer(socket, max_payload);
    }
    if socket.is_upgrading() {
        // A poll that starts during an upgrade. Node answers it on its 100 ms upgrade check;
        // here it ends as soon as the upgrade completes (refused: polling is over for this
        // session) or, at the latest, on that same tick.
        let _ = tokio::time::timeout(UPGRADE_CHECK, async {
            while socket.is_upgrading() {
                socket.woken().await;
            }
        })
        .await;
        if socket.transport() != TransportKind::Polling {
            return Err(RequestError::BadRequest);
        }
    }
    loop {
        // During an upgrade the queue is kept for the WebSocket; the poll only has to end.
        if socket.is_upgrading() {
            return Ok(Polled::Noop);
        }
        if socket.transport() != TransportKind::Polling {
            return Err(RequestError::BadRequest);
        }
        let frames = socket.drain(max_payload);
        if !frames.is_empty() {
            return Ok(drained(socket, frames));
        }
        if socket.is_closed() {
            return closed_answer(socket, max_payload);
        }
        socket.woken().await;
    }
}

/// A poll on a closed session: what the server queued before closing it (a DISCONNECT, then
/// the close packet, as Node flushes its buffer before closing), a noop for the one poll that
/// answers the client's own close, "Session ID unknown" for the rest.
fn closed_answer<D>(socket: &Socket<D>, max_payload: usize) -> Result<Polled, RequestError> {
    if socket.close_reason().is_some_and(CloseReason::flushes) {
        let frames = socket.drain(max_payload);
        if !frames.is_empty() {
            return Ok(drained(socket, frames));
        }
    }
    if socket.deliver_close() {
        Ok(Polled::Noop)
    } else {
        Err(RequestError::UnknownSid)
    }
}

/// A poll that drained `frames`. When the server closed the session, the close packet goes in
/// a payload of its own: the client reads a payload in one go, acting on a close packet at once
/// but on Socket.IO packets only on the next tick, so a DISCONNECT before it would be lost
/// (Node sends them apart too, flushing its buffer before closing).
fn drained<D>(socket: &Socket<D>, mut frames: Vec<Frame>) -> Polled {
    if socket.close_reason().is_some_and(CloseReason::flushes) {
        let close = encode(&Packet::Close);
        if frames.len() > 1 && frames.last() == Some(&close) {
            frames.pop();
            socket.requeue(close);
        } else {
            socket.mark_close_delivered();
        }
    }
    Polled::Drained(frames)
}

/// Reads a payload of packets from the client and acts on each, in order.
pub(super) async fn post<H: Handler>(
    engine: &Engine<H>,
    socket: &Arc<Socket<H::Data>>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    let _writer = claim_writer(socket)?;
    let body = match read_body(engine.config(), req, body).await {
        Ok(body) => body,
        Err(err) => {
            tracing::debug!(sid = %socket.sid(), %err, "bad polling body, closing the session");
            socket.close(CloseReason::TransportError);
            return Err(err);
        }
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    post_body(engine, socket, body.freeze(), content_type).await?;
    Ok(posted())
}

/// The answer to a POST whose packets were taken.
pub(super) fn posted() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=UTF-8")
        .body("ok")
}

/// The session's right to take a POST: one at a time, and a client that overlaps two is broken,
/// so its session closes.
pub(super) fn claim_writer<D>(
    socket: &Socket<D>,
) -> Result<tokio::sync::MutexGuard<'_, ()>, RequestError> {
    socket.writer.try_lock().map_err(|_| {
        tracing::debug!(sid = %socket.sid(), "overlapping posts, closing the session");
        socket.close(CloseReason::TransportError);
        RequestError::BadRequest
    })
}

/// Acts on the packets of a POST body already read (locally, or forwarded by another node),
/// sent with `content_type`. Resolves once the handler takes more of the session's messages
/// ([`Handler::ready`]): the POST is answered only then, and the client sends its next one
/// only after that, so a client whose events keep the handlers waiting is slowed down instead
/// of growing the server's memory.
pub(super) async fn post_body<H: Handler>(
    engine: &Engine<H>,
    socket: &Arc<Socket<H::Data>>,
    body: bytes::Bytes,
    content_type: Option<&[u8]>,
) -> Result<(), RequestError> {
    let binary_body = content_type.is_some_and(|v| v.starts_with(b"application/octet-stream"));
    let max = engine.config().max_packets_per_batch;
    let decoded = match socket.protocol() {
        Protocol::V4 => payload::decode(body, max),
        Protocol::V3 { .. } if binary_body => payload::v3::decode_binary_payload(body, max),
        Protocol::V3 { .. } => payload::v3::decode_text_payload(body, max),
    };
    let payload = match decoded {
        Ok(payload) => payload,
        Err(err) => {
            tracing::debug!(sid = %socket.sid(), %err, "invalid payload, closing the session");
            socket.close(CloseReason::ParseError);
            return Err(RequestError::BadRequest);
        }
    };
    for packet in payload.packets() {
        if socket.is_closed() {
            break;
        }
        engine.on_packet(socket, packet);
    }
    tokio::select! {
        () = engine.ready(socket) => {}
        () = socket.closed() => {}
    }
    Ok(())
}

/// What a body's announced length may make the server reserve before the bytes arrive: a
/// client that announces `max_payload` and then sends nothing must not cost that much memory.
const PREALLOCATE_MAX: usize = 64 << 10;

/// Reads a polling POST body: at most `max_payload` bytes (refused as soon as the limit is
/// passed, by the announced length or by what has arrived, instead of after reading it all),
/// within `body_timeout` (a client that trickles its body holds a connection only that long).
pub(super) async fn read_body(
    config: &EngineConfig,
    req: &HttpRequest,
    mut body: web::Payload,
) -> Result<BytesMut, RequestError> {
    let max = config.max_payload_len();
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > max) {
        return Err(RequestError::PayloadTooLarge);
    }
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(0).min(PREALLOCATE_MAX));
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| RequestError::BadRequest)?;
            if buf.len() + chunk.len() > max {
                return Err(RequestError::PayloadTooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(config.body_timeout, read).await {
        Ok(read) => read.map(|()| buf),
        Err(_) => Err(RequestError::BadRequest),
    }
}

/// A poll's answer, framed for the session's protocol.
fn payload_response(protocol: Protocol, frames: &[Frame]) -> HttpResponse {
    let has_binary = frames.iter().any(|f| matches!(f, Frame::Binary(_)));
    let text = |body: String| {
        HttpResponse::Ok()
            .content_type("text/plain; charset=UTF-8")
            .body(body)
    };
    match protocol {
        Protocol::V4 => text(payload::encode(frames)),
        Protocol::V3 { binary: true } if has_binary => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(payload::v3::encode_binary(frames)),
        Protocol::V3 { .. } => text(payload::v3::encode_text(frames)),
    }
}
