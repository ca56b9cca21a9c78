//! The WebSocket transport: sessions opened over WebSocket, and upgrades of polling sessions.

use std::io;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError, Session};
use futures_util::{FutureExt as _, StreamExt as _};

use super::packet::{Frame, Packet, decode_text, encode};
use super::socket::{CloseReason, Protocol, RequestInfo, Socket, TransportKind};
use super::{Engine, Handler, RequestError};

/// Opens a session on a new WebSocket; the handshake packet is its first frame.
pub(super) fn handshake<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    body: web::Payload,
    protocol: Protocol,
) -> Result<HttpResponse, RequestError> {
    let (res, session, stream) = accept(engine, req, body)?;
    let socket = engine.open(TransportKind::Websocket, RequestInfo::new(req), protocol);
    let open = encode(&engine.open_packet(&socket));
    engine.handler().on_open(&socket);
    actix_web::rt::spawn(run(engine.clone(), socket, session, stream, Some(open)));
    Ok(res)
}

/// Takes a WebSocket that wants to carry an existing polling session: it must answer the
/// probe, then the client's upgrade packet moves the session onto it.
pub(super) fn upgrade<H: Handler>(
    engine: &Engine<H>,
    socket: Arc<Socket<H::Data>>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    if socket.transport() != TransportKind::Polling || !socket.claim_upgrade() {
        // Another WebSocket carries (or is probing) this session. The WebSocket is accepted
        // and closed at once, as Node does, so that clients see a close rather than an error.
        let (res, session, _) = accept(engine, req, body)?;
        actix_web::rt::spawn(session.close(Some(CloseCode::Policy.into())));
        return Ok(res);
    }
    let (res, mut session, mut stream) = match accept(engine, req, body) {
        Ok(accepted) => accepted,
        Err(err) => {
            socket.abandon_upgrade();
            return Err(err);
        }
    };
    let engine = engine.clone();
    actix_web::rt::spawn(async move {
        if probe(&engine, &socket, &mut session, &mut stream).await {
            run(engine, socket, session, stream, None).await;
        } else {
            tracing::debug!(sid = %socket.sid(), "upgrade abandoned");
            socket.abandon_upgrade();
            let _ = session.close(None).await;
        }
    });
    Ok(res)
}

fn accept<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(HttpResponse, Session, AggregatedMessageStream), RequestError> {
    let max = engine.config().max_payload_len();
    let (res, session, stream) =
        actix_ws::handle(req, body).map_err(|_| RequestError::BadRequest)?;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    Ok((res, session, stream))
}

/// Runs the probe: `2probe` is answered `3probe`, then `5` completes the upgrade. Returns
/// `false` if the client gives up, misbehaves or takes longer than `upgrade_timeout`.
async fn probe<H: Handler>(
    engine: &Engine<H>,
    socket: &Socket<H::Data>,
    session: &mut Session,
    stream: &mut AggregatedMessageStream,
) -> bool {
    let deadline = tokio::time::sleep(engine.config().upgrade_timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    let mut ready = None;
    loop {
        let message = match ready.take() {
            Some(message) => message,
            None => tokio::select! {
                () = &mut deadline => return false,
                () = socket.closed() => return false,
                message = stream.next() => message,
            },
        };
        let packet = match message {
            Some(Ok(AggregatedMessage::Text(text))) => decode_text(&text),
            Some(Ok(AggregatedMessage::Ping(data))) => {
                if session.pong(&data).await.is_err() {
                    return false;
                }
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            _ => return false,
        };
        match packet {
            Ok(Packet::PingProbe) if !probed => {
                if session.text("3probe").await.is_err() {
                    return false;
                }
                probed = true;
                // A client may send `5` right behind its probe. When it is already here, the
                // upgrade completes before any poll hears of it; otherwise polls end with a
                // noop until it comes.
                ready = stream.next().now_or_never();
                if ready.is_none() {
                    socket.set_upgrading(true);
                }
            }
            Ok(Packet::Upgrade) if probed => {
                socket.set_websocket();
                return true;
            }
            Ok(Packet::Noop) => {}
            _ => return false,
        }
    }
}

/// Carries a session over a WebSocket until either side closes it: frames from the queue go
/// out, packets from the client go to the engine.
async fn run<H: Handler>(
    engine: Engine<H>,
    socket: Arc<Socket<H::Data>>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    open: Option<Frame>,
) {
    // Become the queue's only reader; after an upgrade this waits for the last poll to end.
    let _reader = socket.reader.lock().await;
    let mut close_code = CloseCode::Normal;
    if let Some(open) = open
        && send(&mut session, socket.protocol(), open).await.is_err()
    {
        socket.close(CloseReason::TransportClose);
    }
    'session: loop {
        for frame in socket.drain(usize::MAX) {
            if send(&mut session, socket.protocol(), frame).await.is_err() {
                socket.close(CloseReason::TransportClose);
                break 'session;
            }
        }
        if socket.is_closed() {
            break;
        }
        let message = tokio::select! {
            () = socket.woken() => continue,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(AggregatedMessage::Text(text))) => match decode_text(&text) {
                Ok(packet) => engine.on_packet(&socket, packet),
                Err(err) => {
                    tracing::debug!(sid = %socket.sid(), %err, "invalid packet, closing the session");
                    socket.close(CloseReason::ParseError);
                }
            },
            Some(Ok(AggregatedMessage::Binary(mut data))) => match socket.protocol() {
                Protocol::V4 => engine.on_packet(&socket, Packet::Binary(data)),
                // v3 binary frames start with their packet type, always `4` (message).
                Protocol::V3 { .. } if data.first() == Some(&4) => {
                    engine.on_packet(&socket, Packet::Binary(data.split_off(1)));
                }
                Protocol::V3 { .. } => socket.close(CloseReason::ParseError),
            },
            Some(Ok(AggregatedMessage::Ping(data))) => {
                let _ = session.pong(&data).await;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Close(_))) | None => {
                socket.close(CloseReason::TransportClose);
            }
            Some(Err(err)) => {
                tracing::debug!(sid = %socket.sid(), %err, "WebSocket protocol error, closing the session");
                close_code = protocol_close_code(&err);
                socket.close(CloseReason::TransportError);
            }
        }
    }
    let _ = session
        .close(Some(actix_ws::CloseReason {
            code: close_code,
            description: None,
        }))
        .await;
}

async fn send(
    session: &mut Session,
    protocol: Protocol,
    frame: Frame,
) -> Result<(), actix_ws::Closed> {
    match (frame, protocol) {
        (Frame::Text(text), _) => session.text(text).await,
        (Frame::Binary(data), Protocol::V4) => session.binary(data).await,
        (Frame::Binary(data), Protocol::V3 { .. }) => {
            let mut typed = Vec::with_capacity(1 + data.len());
            typed.push(4);
            typed.extend_from_slice(&data);
            session.binary(typed).await
        }
    }
}

/// The close code RFC 6455 suggests for a failed frame: 1009 for a message over `max_payload`,
/// 1007 for text that is not UTF-8, 1002 for the rest.
fn protocol_close_code(err: &ProtocolError) -> CloseCode {
    match err {
        ProtocolError::Overflow => CloseCode::Size,
        ProtocolError::Io(e) if e.kind() == io::ErrorKind::InvalidData => CloseCode::Invalid,
        // actix-ws reports an aggregated message over its limit as a bare I/O error.
        ProtocolError::Io(e) if e.kind() == io::ErrorKind::Other => CloseCode::Size,
        _ => CloseCode::Protocol,
    }
}
