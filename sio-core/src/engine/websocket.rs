//! The WebSocket transport: sessions opened over WebSocket, and upgrades of polling sessions.
//!
//! The transport runs over a [`Connection`]: a local WebSocket ([`Local`]), or one
//! whose client is on another node and whose messages a tunnel relays (see `tunnel`). Both get
//! the same probe, upgrade and session loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_http::ws::{CloseCode, Message};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::FutureExt as _;

use super::inbound::Inbound;
use super::outbound::{self, Outbound, OutboundBody};
use super::packet::{Frame, Packet, decode_text, encode};
use super::socket::{CloseReason, Protocol, RequestInfo, Socket, TransportKind};
use super::{Engine, Handler, RequestError};

/// What a session's WebSocket heard from its client.
#[derive(Debug)]
pub(super) enum Incoming {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client closed the WebSocket, or its connection is gone.
    Closed,
    /// The WebSocket failed (a frame over `max_payload`, text that is not UTF-8, ...); it
    /// closes with this code.
    Failed(CloseCode),
}

/// The client's end is gone: nothing more can be sent to it.
#[derive(Debug)]
pub(super) struct Gone;

/// A WebSocket that carries a session, seen from the session's side.
pub(super) trait Connection {
    /// The next message from the client (cancel-safe: it is raced against the session's queue).
    async fn next(&mut self) -> Incoming;
    /// A message that has arrived already, without waiting.
    fn ready(&mut self) -> Option<Incoming>;
    async fn text(&mut self, text: ByteString) -> Result<(), Gone>;
    async fn binary(&mut self, data: Bytes) -> Result<(), Gone>;
    async fn pong(&mut self, data: &[u8]) -> Result<(), Gone>;
    /// Closes the WebSocket with a close frame (without a code for `None`); what the session
    /// queued before goes first.
    async fn close(self, code: Option<CloseCode>);
    /// Lets the connection take the session's frames from its queue itself; `false` when
    /// the session loop must send them.
    fn attach<D: Send + Sync + 'static>(&mut self, socket: &Arc<Socket<D>>) -> bool;
}

/// A WebSocket accepted on this node: [`Inbound`] reads it, [`Outbound`] writes it.
pub(super) struct Local {
    out: Outbound,
    inbound: Inbound<web::Payload>,
}

impl Connection for Local {
    async fn next(&mut self) -> Incoming {
        self.inbound.next().await
    }

    fn ready(&mut self) -> Option<Incoming> {
        self.inbound.next().now_or_never()
    }

    async fn text(&mut self, text: ByteString) -> Result<(), Gone> {
        self.out.write(Message::Text(text)).await
    }

    async fn binary(&mut self, data: Bytes) -> Result<(), Gone> {
        self.out.write(Message::Binary(data)).await
    }

    async fn pong(&mut self, data: &[u8]) -> Result<(), Gone> {
        self.out
            .write(Message::Pong(Bytes::copy_from_slice(data)))
            .await
    }

    async fn close(self, code: Option<CloseCode>) {
        let reason = code.map(|code| actix_http::ws::CloseReason {
            code,
            description: None,
        });
        let _ = self.out.write(Message::Close(reason)).await;
    }

    fn attach<D: Send + Sync + 'static>(&mut self, socket: &Arc<Socket<D>>) -> bool {
        self.out.attach(socket);
        true
    }
}

/// Opens a session on a new WebSocket; the handshake packet is its first frame.
pub(super) fn handshake<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    body: web::Payload,
    protocol: Protocol,
) -> Result<HttpResponse, RequestError> {
    let (accepted, conn) = accept(engine, req, body)?;
    let socket = engine.open(TransportKind::Websocket, RequestInfo::new(req), protocol);
    // Written before the response leaves: actix-http sends the response and the open packet
    // in one write, a syscall and a wake-up of the client fewer per connection.
    let open = outbound::message(encode(&engine.open_packet(&socket)), protocol);
    if conn.out.write_now(open).is_err() {
        socket.close(CloseReason::TransportClose);
    }
    engine.handler().on_open(&socket);
    Ok(accepted.respond(run(engine.clone(), socket, conn)))
}

/// Takes a WebSocket that wants to carry an existing polling session: it must answer the
/// probe, then the client's upgrade packet moves the session onto it.
pub(super) fn upgrade<H: Handler>(
    engine: &Engine<H>,
    socket: Arc<Socket<H::Data>>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    if !claim_upgrade(&socket) {
        // The WebSocket is accepted and closed at once, as Node does, so that clients see a
        // close rather than an error.
        let (accepted, conn) = accept(engine, req, body)?;
        return Ok(accepted.respond(conn.close(Some(CloseCode::Policy))));
    }
    let (accepted, conn) = match accept(engine, req, body) {
        Ok(accepted) => accepted,
        Err(err) => {
            socket.abandon_upgrade();
            return Err(err);
        }
    };
    Ok(accepted.respond(upgrade_over(engine.clone(), socket, conn)))
}

/// Claims the upgrade of a polling session for one WebSocket; `false` when another one
/// carries (or is probing) the session.
pub(super) fn claim_upgrade<D>(socket: &Socket<D>) -> bool {
    socket.transport() == TransportKind::Polling && socket.claim_upgrade()
}

/// Runs a claimed upgrade over `conn`: the probe, then the session until either side closes.
pub(super) async fn upgrade_over<H: Handler, C: Connection>(
    engine: Engine<H>,
    socket: Arc<Socket<H::Data>>,
    mut conn: C,
) {
    let probing = AtomicBool::new(true);
    // A WebSocket that goes away during the probe leaves the session to polling.
    let _abandons = OnDrop(|| {
        if probing.load(Ordering::Relaxed) {
            socket.abandon_upgrade();
        }
    });
    let upgraded = probe(&engine, &socket, &mut conn).await;
    probing.store(false, Ordering::Relaxed);
    if upgraded {
        run(engine.clone(), socket.clone(), conn).await;
    } else {
        tracing::debug!(sid = %socket.sid(), "upgrade abandoned");
        socket.abandon_upgrade();
        conn.close(None).await;
    }
}

/// A WebSocket accepted on this node, before its handshake response leaves.
pub(super) struct Accepted {
    res: HttpResponse<()>,
    body: OutboundBody,
}

impl Accepted {
    /// The handshake response; `session` (the session's loop over the [`Local`] accepted
    /// with it) runs in the connection's task, whenever actix-http polls the body.
    pub(super) fn respond(self, session: impl Future<Output = ()> + 'static) -> HttpResponse {
        self.res
            .set_body(self.body.driving(session))
            .map_into_boxed_body()
    }

    /// The handshake response, for a [`Local`] driven by a task of its own.
    pub(super) fn into_response(self) -> HttpResponse {
        self.res.set_body(self.body).map_into_boxed_body()
    }
}

/// Runs its closure when dropped: what a session's loop owes its socket when the
/// connection's task drops it half-way (the connection went away with the body).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Accepts a WebSocket on this node, its messages bounded by `max_payload`.
pub(super) fn accept<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(Accepted, Local), RequestError> {
    let mut res = actix_http::ws::handshake(req.head()).map_err(|_| RequestError::BadRequest)?;
    let res = HttpResponse::from(res.finish()).set_body(());
    let inbound = Inbound::new(body, engine.config().max_payload_len());
    let (out, body) = outbound::channel();
    Ok((Accepted { res, body }, Local { out, inbound }))
}

/// Runs the probe: `2probe` is answered `3probe`, then `5` completes the upgrade. Returns
/// `false` if the client gives up, misbehaves or takes longer than `upgrade_timeout`.
async fn probe<H: Handler, C: Connection>(
    engine: &Engine<H>,
    socket: &Socket<H::Data>,
    conn: &mut C,
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
                message = conn.next() => message,
            },
        };
        let packet = match message {
            Incoming::Text(text) => decode_text(&text),
            Incoming::Ping(data) => {
                if conn.pong(&data).await.is_err() {
                    return false;
                }
                continue;
            }
            Incoming::Pong => continue,
            _ => return false,
        };
        match packet {
            Ok(Packet::PingProbe) if !probed => {
                if conn.text(ByteString::from_static("3probe")).await.is_err() {
                    return false;
                }
                probed = true;
                // A client may send `5` right behind its probe. When it is already here, the
                // upgrade completes before any poll hears of it; otherwise polls end with a
                // noop until it comes.
                ready = conn.ready();
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
async fn run<H: Handler, C: Connection>(
    engine: Engine<H>,
    socket: Arc<Socket<H::Data>>,
    mut conn: C,
) {
    let _closes = OnDrop(|| socket.close(CloseReason::TransportClose));
    // Become the queue's only reader; after an upgrade this waits for the last poll to end.
    let _reader = socket.reader.lock().await;
    let mut close_code = CloseCode::Normal;
    // A local WebSocket takes the frames from the queue itself, in the connection's task.
    let attached = conn.attach(&socket);
    'session: loop {
        // Read before the drain: a frame queued just before the close (a DISCONNECT packet,
        // say) is then in the queue and still goes out.
        let closed = socket.is_closed();
        while !attached && let Some(frame) = socket.pop() {
            if send(&mut conn, socket.protocol(), frame).await.is_err() {
                socket.close(CloseReason::TransportClose);
                break 'session;
            }
        }
        if closed {
            break;
        }
        let message = tokio::select! {
            () = socket.woken(), if !attached => continue,
            () = socket.closed(), if attached => continue,
            // Nothing more is read while the handler takes no more of this session's
            // messages: the client's writes wait in its own buffers (TCP backpressure).
            message = async {
                engine.ready(&socket).await;
                conn.next().await
            } => message,
        };
        match message {
            Incoming::Text(text) => match decode_text(&text) {
                Ok(packet) => engine.on_packet(&socket, packet),
                Err(err) => {
                    tracing::debug!(sid = %socket.sid(), %err, "invalid packet, closing the session");
                    socket.close(CloseReason::ParseError);
                }
            },
            Incoming::Binary(mut data) => match socket.protocol() {
                Protocol::V4 => engine.on_packet(&socket, Packet::Binary(data)),
                // v3 binary frames start with their packet type, always `4` (message).
                Protocol::V3 { .. } if data.first() == Some(&4) => {
                    engine.on_packet(&socket, Packet::Binary(data.split_off(1)));
                }
                Protocol::V3 { .. } => socket.close(CloseReason::ParseError),
            },
            Incoming::Ping(data) => {
                let _ = conn.pong(&data).await;
            }
            Incoming::Pong => {}
            Incoming::Closed => socket.close(CloseReason::TransportClose),
            Incoming::Failed(code) => {
                tracing::debug!(sid = %socket.sid(), ?code, "WebSocket failed, closing the session");
                close_code = code;
                socket.close(CloseReason::TransportError);
            }
        }
    }
    conn.close(Some(close_code)).await;
}

async fn send<C: Connection>(conn: &mut C, protocol: Protocol, frame: Frame) -> Result<(), Gone> {
    match on_the_wire(frame, protocol) {
        Frame::Text(text) => conn.text(text).await,
        Frame::Binary(data) => conn.binary(data).await,
    }
}

/// A frame as it travels in one WebSocket message: v3 binary frames go behind their packet
/// type, always `4` (message).
pub(super) fn on_the_wire(frame: Frame, protocol: Protocol) -> Frame {
    match (frame, protocol) {
        (Frame::Binary(data), Protocol::V3 { .. }) => {
            let mut typed = Vec::with_capacity(1 + data.len());
            typed.push(4);
            typed.extend_from_slice(&data);
            Frame::Binary(typed.into())
        }
        (frame, _) => frame,
    }
}
