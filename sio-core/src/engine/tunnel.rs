//! Tunnels: a WebSocket whose client is connected to one node (the edge) while its session
//! lives on another (the owner). The edge accepts the WebSocket and relays its messages both
//! ways; the owner runs the session's ordinary WebSocket transport over the tunnel, so the
//! probe, the upgrade and everything after it behave as on a local WebSocket.
//!
//! A tunnel is bounded on both ends: each end buffers at most a fixed number of bytes of the
//! other's messages (each message counted with what it costs besides its payload, so that
//! empty ones count too), text and binary messages from the client are bounded by `max_payload`,
//! and an end that hears nothing for the idle timeout (longer than the ping interval, so only
//! a gone peer trips it) gives up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_http::ws::CloseCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::mpsc;

use super::forward::{
    ForwardError, ForwardMethod, ForwardedRequest, ForwardedResponse, Forwarder, TunnelEvent,
    TunnelId, TunnelMessage, forward_refused, from_forwarded, into_forwarded,
};
use super::sid::Sid;
use super::socket::Socket;
use super::websocket::{self, Connection, Gone, Incoming, Local};
use super::{Engine, Handler, RequestError, service};

/// The close code a tunnel carries for a close frame without one (RFC 6455's "no status").
const NO_STATUS: u16 = 1005;

/// What a buffered message costs besides its payload (the event and its place in the channel),
/// counted against the buffer's bound: a flood of empty messages must fill it too, and the
/// bound on bytes is then also one on the number of messages.
const MESSAGE_COST: usize = 64;

/// What a message takes of a tunnel end's buffer.
fn cost(event: &TunnelEvent) -> usize {
    event.len() + MESSAGE_COST
}

/// What [`TunnelLink::send`] returns.
pub type TunnelSendFuture = Pin<Box<dyn Future<Output = Result<(), ForwardError>> + Send>>;

/// Carries one tunnel end's messages to the other end (the cluster forwarder implements it over
/// its backend). Dropping it is how the tunnel ends on this node: the implementation stops
/// handing messages to the [`TunnelInlet`] then.
pub trait TunnelLink: Send + Sync + 'static {
    /// Sends `message` to the other end. Resolves once it has left, so that messages sent one
    /// after the other arrive in order.
    fn send(&self, message: TunnelMessage) -> TunnelSendFuture;
}

/// One end of a tunnel: what the other end sent, and a way to answer it.
///
/// ```
/// use std::time::Duration;
/// use sio_core::engine::{Tunnel, TunnelId, TunnelLink, TunnelMessage, TunnelSendFuture};
///
/// struct Nowhere;
/// impl TunnelLink for Nowhere {
///     fn send(&self, _: TunnelMessage) -> TunnelSendFuture {
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// let id = TunnelId { edge: 1, id: 7 };
/// let (tunnel, _inlet) = Tunnel::new(id, Box::new(Nowhere), 1 << 20, Duration::from_secs(45));
/// assert_eq!(tunnel.id(), id);
/// ```
pub struct Tunnel {
    id: TunnelId,
    inbox: mpsc::UnboundedReceiver<TunnelEvent>,
    /// What the messages handed in and not read yet cost (shared with the inlet, which bounds
    /// it): their payload bytes and [`MESSAGE_COST`] each.
    buffered: Arc<AtomicUsize>,
    link: Box<dyn TunnelLink>,
    idle: Duration,
    next_seq: u64,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("id", &self.id)
            .field("buffered", &self.buffered.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where the other end's messages for one [`Tunnel`] are handed in, in the order they arrived.
///
/// ```
/// # use std::time::Duration;
/// # use sio_core::engine::{Tunnel, TunnelLink, TunnelSendFuture};
/// # struct Nowhere;
/// # impl TunnelLink for Nowhere {
/// #     fn send(&self, _: TunnelMessage) -> TunnelSendFuture { Box::pin(async { Ok(()) }) }
/// # }
/// use bytes::Bytes;
/// use sio_core::engine::{TunnelEvent, TunnelId, TunnelMessage};
///
/// let tunnel = TunnelId { edge: 1, id: 7 };
/// let (_end, mut inlet) = Tunnel::new(tunnel, Box::new(Nowhere), 1024, Duration::from_secs(45));
/// let text = |seq, s: &'static str| TunnelMessage { tunnel, seq, event: TunnelEvent::Text(Bytes::from(s)) };
/// assert!(inlet.push(text(0, "2")));
/// // A message missing (seq 1), or more than 1024 bytes waiting: the tunnel is over.
/// assert!(!inlet.push(text(2, "3")));
/// ```
#[derive(Debug)]
pub struct TunnelInlet {
    tx: mpsc::UnboundedSender<TunnelEvent>,
    buffered: Arc<AtomicUsize>,
    max_buffered: usize,
    next_seq: u64,
}

impl Tunnel {
    /// A tunnel end that sends through `link`, buffers at most `max_buffered` bytes of the
    /// other end's messages (their payload, and 64 bytes each for the message itself), and
    /// gives up on an other end silent for `idle`. The inlet goes to whatever receives the
    /// other end's messages.
    pub fn new(
        id: TunnelId,
        link: Box<dyn TunnelLink>,
        max_buffered: usize,
        idle: Duration,
    ) -> (Tunnel, TunnelInlet) {
        let (tx, inbox) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let inlet = TunnelInlet {
            tx,
            buffered: buffered.clone(),
            max_buffered,
            next_seq: 0,
        };
        let tunnel = Tunnel {
            id,
            inbox,
            buffered,
            link,
            idle,
            next_seq: 0,
        };
        (tunnel, inlet)
    }

    /// The tunnel's id.
    pub fn id(&self) -> TunnelId {
        self.id
    }

    /// The other end's next message; `None` when the tunnel broke (the inlet was dropped: a
    /// message missing, the buffer full) or the other end was silent for the idle timeout.
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<TunnelEvent> {
        let event = tokio::time::timeout(self.idle, self.inbox.recv())
            .await
            .ok()
            .flatten()?;
        Some(self.taken(event))
    }

    /// A message that has arrived already.
    fn try_recv(&mut self) -> Option<TunnelEvent> {
        let event = self.inbox.try_recv().ok()?;
        Some(self.taken(event))
    }

    fn taken(&self, event: TunnelEvent) -> TunnelEvent {
        self.buffered.fetch_sub(cost(&event), Ordering::AcqRel);
        event
    }

    /// Sends `event` to the other end.
    pub(crate) async fn send(&mut self, event: TunnelEvent) -> Result<(), ForwardError> {
        let message = TunnelMessage {
            tunnel: self.id,
            seq: self.next_seq,
            event,
        };
        self.next_seq += 1;
        self.link.send(message).await
    }

    /// Tells the other end this one is closed (with `code`, or none); best effort, as the other
    /// end may be gone already.
    async fn close(&mut self, code: Option<CloseCode>) {
        let code = code.map_or(NO_STATUS, u16::from);
        if let Err(err) = self.send(TunnelEvent::Close(code)).await {
            tracing::debug!(target: "sio::forward", tunnel = ?self.id, %err, "tunnel close not delivered");
        }
    }
}

impl TunnelInlet {
    /// Hands in one message of the other end. `false` when this end is done with the tunnel:
    /// it is gone, the message closes the tunnel, a message is missing, or the buffer would
    /// grow past its limit. Drop the inlet then; the tunnel end sees a break after what it
    /// was handed.
    pub fn push(&mut self, message: TunnelMessage) -> bool {
        if message.seq != self.next_seq {
            tracing::warn!(target: "sio::forward", tunnel = ?message.tunnel, expected = self.next_seq, got = message.seq, "tunnel message missing, breaking the tunnel");
            return false;
        }
        self.next_seq += 1;
        let cost = cost(&message.event);
        let buffered = self.buffered.fetch_add(cost, Ordering::AcqRel) + cost;
        if buffered > self.max_buffered {
            tracing::warn!(target: "sio::forward", tunnel = ?message.tunnel, buffered, "tunnel buffer full, breaking the tunnel");
            return false;
        }
        let closes = matches!(message.event, TunnelEvent::Close(_));
        self.tx.send(message.event).is_ok() && !closes
    }
}

fn close_code(code: u16) -> Option<CloseCode> {
    (code != NO_STATUS).then(|| CloseCode::from(code))
}

/// The owner's side of a tunnel: the WebSocket of a session whose client is on the edge node.
struct Relayed {
    tunnel: Tunnel,
    max_payload: usize,
}

impl Relayed {
    fn incoming(&self, event: Option<TunnelEvent>) -> Incoming {
        match event {
            // The edge bounds the client's messages already; a message over the limit here
            // comes from a misbehaving node and fails the WebSocket as it would locally.
            Some(TunnelEvent::Text(data) | TunnelEvent::Binary(data))
                if data.len() > self.max_payload =>
            {
                Incoming::Failed(CloseCode::Size)
            }
            Some(TunnelEvent::Text(data)) => ByteString::try_from(data)
                .map_or(Incoming::Failed(CloseCode::Invalid), Incoming::Text),
            Some(TunnelEvent::Binary(data)) => Incoming::Binary(data),
            Some(TunnelEvent::Close(code)) => match close_code(code) {
                None | Some(CloseCode::Normal | CloseCode::Away) => Incoming::Closed,
                Some(code) => Incoming::Failed(code),
            },
            // The edge is gone (or silent past the idle timeout): as a lost connection.
            None => Incoming::Closed,
        }
    }
}

impl Connection for Relayed {
    async fn next(&mut self) -> Incoming {
        let event = self.tunnel.recv().await;
        self.incoming(event)
    }

    fn ready(&mut self) -> Option<Incoming> {
        let event = self.tunnel.try_recv()?;
        Some(self.incoming(Some(event)))
    }

    async fn text(&mut self, text: ByteString) -> Result<(), Gone> {
        let data = text.into_bytes();
        self.tunnel
            .send(TunnelEvent::Text(data))
            .await
            .map_err(|_| Gone)
    }

    async fn binary(&mut self, data: Bytes) -> Result<(), Gone> {
        self.tunnel
            .send(TunnelEvent::Binary(data))
            .await
            .map_err(|_| Gone)
    }

    async fn pong(&mut self, _: &[u8]) -> Result<(), Gone> {
        // The edge answers the client's WebSocket pings itself; none travel the tunnel.
        Ok(())
    }

    async fn close(mut self, code: Option<CloseCode>) {
        self.tunnel.close(code).await;
    }

    fn attach<D: Send + Sync + 'static>(&mut self, _: &Arc<Socket<D>>) -> bool {
        // Frames travel the tunnel as messages that the session loop sends.
        false
    }
}

impl<H: Handler> Engine<H> {
    /// Runs an upgrade another node forwarded ([`ForwardMethod::Upgrade`]): the session's
    /// WebSocket transport runs over `tunnel`, whose other end holds the client's WebSocket.
    /// Answers [`ForwardedResponse::TUNNEL_ACCEPTED`], [`ForwardedResponse::TUNNEL_BUSY`], or
    /// the error a direct upgrade request would get. Runs within a Tokio runtime (the
    /// session's WebSocket transport is spawned on it).
    ///
    /// ```
    /// use sio_core::engine::{Engine, ForwardedRequest, ForwardedResponse, Handler, Tunnel};
    ///
    /// // What a cluster forwarder does with an upgrade another node sent it.
    /// fn serve<H: Handler>(engine: &Engine<H>, upgrade: ForwardedRequest, tunnel: Tunnel) -> bool {
    ///     engine.serve_tunnel(upgrade, tunnel).status == ForwardedResponse::TUNNEL_ACCEPTED
    /// }
    /// ```
    pub fn serve_tunnel(&self, request: ForwardedRequest, tunnel: Tunnel) -> ForwardedResponse {
        let status = match service::live_session(self, request.sid, false) {
            Err(err) => return into_forwarded(request.id, err.error_response()),
            Ok(socket) if websocket::claim_upgrade(&socket) => {
                let relayed = Relayed {
                    tunnel,
                    max_payload: self.config().max_payload_len(),
                };
                tokio::spawn(websocket::upgrade_over(self.clone(), socket, relayed));
                ForwardedResponse::TUNNEL_ACCEPTED
            }
            Ok(_) => ForwardedResponse::TUNNEL_BUSY,
        };
        ForwardedResponse {
            id: request.id,
            status,
            headers: vec![],
            body: Bytes::new(),
        }
    }
}

/// The edge side of an upgrade for another node's session: accepts the WebSocket once the
/// owner took the upgrade, and relays its messages through a tunnel until either side closes.
pub(super) async fn forward_upgrade<H: Handler>(
    engine: &Engine<H>,
    forwarder: &Arc<dyn Forwarder>,
    sid: Sid,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    // A request that is no WebSocket handshake is refused before the owner hears of it.
    let (accepted, conn) = websocket::accept(engine, req, body)?;
    // A forged sid is refused before a tunnel end is made for it.
    let _permit = match forwarder.admit(sid, ForwardMethod::Upgrade).await {
        Ok(permit) => permit,
        Err(err) => return forward_refused(err),
    };
    let request = ForwardedRequest {
        id: 0,
        from: engine.node_id(),
        method: ForwardMethod::Upgrade,
        sid,
        query: req.query_string().to_owned(),
        headers: vec![],
        body: Bytes::new(),
    };
    let (answer, tunnel) = match forwarder.open_tunnel(sid.node_id(), request).await {
        Ok(opened) => opened,
        Err(err) => return forward_refused(err),
    };
    match answer.status {
        ForwardedResponse::TUNNEL_ACCEPTED => {
            actix_web::rt::spawn(relay(conn, tunnel));
            Ok(accepted.into_response())
        }
        ForwardedResponse::TUNNEL_BUSY => Ok(accepted.respond(conn.close(Some(CloseCode::Policy)))),
        _ => Ok(from_forwarded(answer)),
    }
}

/// Relays between the client's WebSocket and the tunnel until one side closes; the other
/// side is then told (the client with a close frame, the owner with a tunnel close).
async fn relay(mut conn: Local, mut tunnel: Tunnel) {
    let code = loop {
        tokio::select! {
            incoming = conn.next() => {
                let event = match incoming {
                    Incoming::Text(text) => TunnelEvent::Text(text.into_bytes()),
                    Incoming::Binary(data) => TunnelEvent::Binary(data),
                    Incoming::Ping(data) => {
                        let _ = conn.pong(&data).await;
                        continue;
                    }
                    Incoming::Pong => continue,
                    Incoming::Closed => {
                        tunnel.close(Some(CloseCode::Normal)).await;
                        break Some(CloseCode::Normal);
                    }
                    Incoming::Failed(code) => {
                        tunnel.close(Some(code)).await;
                        break Some(code);
                    }
                };
                if let Err(err) = tunnel.send(event).await {
                    tracing::debug!(target: "sio::forward", tunnel = ?tunnel.id(), %err, "owner unreachable, closing the WebSocket");
                    break Some(CloseCode::Away);
                }
            }
            event = tunnel.recv() => {
                let sent = match event {
                    Some(TunnelEvent::Text(data)) => match ByteString::try_from(data) {
                        Ok(text) => conn.text(text).await,
                        Err(_) => {
                            tunnel.close(Some(CloseCode::Invalid)).await;
                            break Some(CloseCode::Error);
                        }
                    },
                    Some(TunnelEvent::Binary(data)) => conn.binary(data).await,
                    Some(TunnelEvent::Close(code)) => break close_code(code),
                    // The owner is gone or silent, or this node is shutting down.
                    None => {
                        tracing::debug!(target: "sio::forward", tunnel = ?tunnel.id(), "tunnel ended, closing the WebSocket as going away");
                        tunnel.close(Some(CloseCode::Away)).await;
                        break Some(CloseCode::Away);
                    }
                };
                if sent.is_err() {
                    tunnel.close(Some(CloseCode::Normal)).await;
                    return;
                }
            }
        }
    };
    conn.close(code).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;

    impl TunnelLink for Nowhere {
        fn send(&self, _: TunnelMessage) -> TunnelSendFuture {
            Box::pin(async { Ok(()) })
        }
    }

    const ID: TunnelId = TunnelId { edge: 1, id: 2 };

    fn tunnel(max_buffered: usize) -> (Tunnel, TunnelInlet) {
        Tunnel::new(ID, Box::new(Nowhere), max_buffered, Duration::from_secs(5))
    }

    fn message(seq: u64, event: TunnelEvent) -> TunnelMessage {
        TunnelMessage {
            tunnel: ID,
            seq,
            event,
        }
    }

    fn text(s: &'static str) -> TunnelEvent {
        TunnelEvent::Text(Bytes::from_static(s.as_bytes()))
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_a_close_ends_the_inlet() {
        let (mut tunnel, mut inlet) = tunnel(1000);
        assert!(inlet.push(message(0, text("2probe"))));
        assert!(inlet.push(message(1, text("5"))));
        assert!(!inlet.push(message(2, TunnelEvent::Close(1000))));
        drop(inlet);
        assert_eq!(tunnel.recv().await, Some(text("2probe")));
        assert_eq!(tunnel.try_recv(), Some(text("5")));
        assert_eq!(tunnel.recv().await, Some(TunnelEvent::Close(1000)));
        assert_eq!(tunnel.recv().await, None);
    }

    #[tokio::test]
    async fn a_missing_message_breaks_the_tunnel() {
        let (mut tunnel, mut inlet) = tunnel(1000);
        assert!(inlet.push(message(0, text("a"))));
        assert!(!inlet.push(message(2, text("c"))));
        drop(inlet);
        assert_eq!(tunnel.recv().await, Some(text("a")));
        assert_eq!(tunnel.recv().await, None);
    }

    #[tokio::test]
    async fn the_buffer_is_bounded_by_what_is_not_read_yet() {
        let (mut tunnel, mut inlet) = tunnel(MESSAGE_COST + 4);
        assert!(inlet.push(message(0, text("abc"))));
        // Read: its bytes no longer count.
        assert_eq!(tunnel.recv().await, Some(text("abc")));
        assert!(inlet.push(message(1, text("defg"))));
        assert!(!inlet.push(message(2, text("h"))));
    }

    /// Empty messages carry no payload but still take memory: they fill the buffer too, so
    /// that an end that stops reading cannot be sent them without bound.
    #[tokio::test]
    async fn empty_messages_count_against_the_buffer() {
        let (_tunnel, mut inlet) = tunnel(10 * MESSAGE_COST);
        let pushed = (0..1000)
            .take_while(|&seq| inlet.push(message(seq, TunnelEvent::Text(Bytes::new()))))
            .count();
        assert_eq!(pushed, 10);
    }

    #[tokio::test]
    async fn a_silent_other_end_is_given_up_after_the_idle_timeout() {
        let idle = Duration::from_millis(20);
        let (mut tunnel, _inlet) = Tunnel::new(ID, Box::new(Nowhere), 4, idle);
        assert_eq!(tunnel.recv().await, None);
    }

    #[test]
    fn close_codes_cross_the_tunnel_with_no_status_for_none() {
        assert_eq!(close_code(NO_STATUS), None);
        assert_eq!(close_code(1008), Some(CloseCode::Policy));
        let relayed = Relayed {
            tunnel: tunnel(1000).0,
            max_payload: 3,
        };
        assert!(matches!(
            relayed.incoming(Some(TunnelEvent::Close(1000))),
            Incoming::Closed
        ));
        assert!(matches!(
            relayed.incoming(Some(TunnelEvent::Close(1009))),
            Incoming::Failed(CloseCode::Size)
        ));
        assert!(matches!(
            relayed.incoming(Some(text("4toolong"))),
            Incoming::Failed(CloseCode::Size)
        ));
        assert!(matches!(
            relayed.incoming(Some(TunnelEvent::Text(Bytes::from_static(b"\xff")))),
            Incoming::Failed(CloseCode::Invalid)
        ));
        assert!(matches!(relayed.incoming(None), Incoming::Closed));
    }
}
