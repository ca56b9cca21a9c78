//! Sticky-free forwarding: the seam the engine uses when a request names a session another
//! node owns (the sid carries the owner's node id, see [`Sid::node_id`]).
//!
//! The edge node turns the HTTP request into a [`ForwardedRequest`], a [`Forwarder`] carries it
//! to the owner (over the cluster backend), the owner runs it against its local session and the
//! [`ForwardedResponse`] travels back. A WebSocket upgrade is a request too
//! ([`ForwardMethod::Upgrade`]); once the owner accepts it, the WebSocket's messages travel both
//! ways as [`TunnelMessage`]s (see [`Tunnel`](super::Tunnel)). All of them travel as one compact
//! binary [`ForwardMessage`] whose codec is pure, so it is tested without a network.
//!
//! A sid is only a claim: anyone can make one up with any node id in it. So before the edge
//! reads more of a request than its head, the [`Forwarder`] clears it
//! ([`Forwarder::admit`]): the owner must be a node the cluster knows alive, and a POST's
//! session one its owner has confirmed (with a body-less [`ForwardMethod::Probe`] when the
//! edge has not seen it answered yet). A forged sid then costs a small message at most, never
//! a body sent across the cluster or a request slot held until the timeout.

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::packet::Frame;
use super::polling::Polled;
use super::sid::Sid;
use super::socket::{CloseReason, Protocol, Socket, TransportKind};
use super::{Engine, Handler, RequestError, Tunnel, adopt, polling, service};

/// Version byte of the wire format; bumped when the layout changes, so mixed versions refuse
/// each other's messages instead of misreading them.
/// Version 2 added WebSocket upgrades and their tunnels, version 3 probes.
const VERSION: u8 = 3;
const KIND_GET: u8 = 1;
const KIND_POST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
const KIND_UPGRADE: u8 = 4;
const KIND_TUNNEL_TEXT: u8 = 5;
const KIND_TUNNEL_BINARY: u8 = 6;
const KIND_TUNNEL_CLOSE: u8 = 7;
const KIND_PROBE: u8 = 8;
/// More headers than this is not a request a browser's Engine.IO client sends.
const MAX_HEADERS: usize = 64;

/// What a forwarded request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardMethod {
    /// A poll (server to client).
    Get,
    /// A payload from the client.
    Post,
    /// A WebSocket that wants to carry the session: the owner answers
    /// [`TUNNEL_ACCEPTED`](ForwardedResponse::TUNNEL_ACCEPTED) and runs the upgrade over a
    /// tunnel whose id is the request's (see [`TunnelId`]).
    Upgrade,
    /// Whether the session is live and on polling, asked before a POST's body is read: the
    /// owner answers 200 with no body, or the error the POST would get.
    Probe,
}

/// A request for a session of another node, as the edge node received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// Matches the answer to its request (chosen by the edge node).
    pub id: u64,
    /// The edge node's id: where the answer goes.
    pub from: u32,
    /// What it asks for.
    pub method: ForwardMethod,
    /// The session, owned by the node the request goes to.
    pub sid: Sid,
    /// The query string (`EIO=4&transport=polling&sid=…`).
    pub query: String,
    /// The headers the owner needs (content type and length); the rest stays on the edge.
    pub headers: Vec<(String, Bytes)>,
    /// The POST body (empty for a GET).
    pub body: Bytes,
}

/// The owner's answer to a [`ForwardedRequest`], relayed by the edge node as is (an upgrade's
/// answer is read by the edge instead, see [`TUNNEL_ACCEPTED`](Self::TUNNEL_ACCEPTED)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedResponse {
    /// The [`ForwardedRequest::id`] it answers.
    pub id: u64,
    /// The HTTP status.
    pub status: u16,
    /// Response headers (content type).
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

impl ForwardedResponse {
    /// The owner took an upgrade: the tunnel now carries the WebSocket's messages.
    pub const TUNNEL_ACCEPTED: u16 = 101;
    /// Another WebSocket carries (or is probing) the session: the edge accepts the WebSocket
    /// and closes it at once, as a local upgrade does.
    pub const TUNNEL_BUSY: u16 = 409;

    /// Whether the owner says the session is unknown (ended, or never existed): Engine.IO's
    /// 400 with code 1.
    pub fn is_unknown_session(&self) -> bool {
        self.status == StatusCode::BAD_REQUEST.as_u16()
            && serde_json::from_slice::<serde_json::Value>(&self.body).is_ok_and(|body| {
                body.get("code")
                    .is_some_and(|code| *code == RequestError::UnknownSid.code())
            })
    }
}

/// Names a tunnel: the edge node that opened it (and holds the client's WebSocket) and the id
/// of the upgrade request that opened it, unique on that node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId {
    /// The edge node.
    pub edge: u32,
    /// The [`ForwardedRequest::id`] of the upgrade.
    pub id: u64,
}

/// What a tunnel carries for a WebSocket, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A text message (UTF-8, checked by the receiver).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// The sender's end is closed, with this WebSocket close code.
    Close(u16),
}

impl TunnelEvent {
    /// The payload bytes it carries (what counts against a tunnel's buffer).
    pub fn len(&self) -> usize {
        match self {
            TunnelEvent::Text(data) | TunnelEvent::Binary(data) => data.len(),
            TunnelEvent::Close(_) => 0,
        }
    }

    /// Whether it carries no payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One message of a tunnel, from one end to the other.
///
/// ```
/// use bytes::Bytes;
/// use sio_core::engine::{ForwardMessage, TunnelEvent, TunnelId, TunnelMessage};
///
/// let probe = ForwardMessage::Tunnel(TunnelMessage {
///     tunnel: TunnelId { edge: 2, id: 41 },
///     seq: 0,
///     event: TunnelEvent::Text(Bytes::from_static(b"2probe")),
/// });
/// assert_eq!(ForwardMessage::decode(probe.encode()), Ok(probe));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelMessage {
    /// The tunnel.
    pub tunnel: TunnelId,
    /// Numbers the sender's messages from 0, so that a lost or reordered one is noticed (the
    /// tunnel then breaks instead of corrupting the session).
    pub seq: u64,
    /// What it carries.
    pub event: TunnelEvent,
}

/// What travels between nodes: a request, its answer, or a tunnel's message.
///
/// ```
/// use bytes::Bytes;
/// use sio_core::engine::{ForwardMessage, ForwardedResponse};
///
/// let message = ForwardMessage::Response(ForwardedResponse {
///     id: 7,
///     status: 200,
///     headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
///     body: Bytes::from_static(b"4hello"),
/// });
/// assert_eq!(ForwardMessage::decode(message.encode()), Ok(message));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMessage {
    /// From the edge node to the owner.
    Request(ForwardedRequest),
    /// From the owner back to the edge node.
    Response(ForwardedResponse),
    /// A WebSocket message through a tunnel, either way.
    Tunnel(TunnelMessage),
}

/// A forwarding message that could not be read (another version, or damaged in transit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardDecodeError {
    /// The message ends before its last field.
    #[error("truncated forwarding message")]
    Truncated,
    /// Another version of the wire format; both nodes must run compatible sio versions.
    #[error("unknown forwarding message version {0}")]
    Version(u8),
    /// Neither a request, a response nor a tunnel message.
    #[error("unknown forwarding message kind {0}")]
    Kind(u8),
    /// The sid or query is not valid text, or not a sid.
    #[error("invalid text in forwarding message")]
    Text,
    /// More headers than any Engine.IO request carries.
    #[error("too many headers in forwarding message")]
    TooManyHeaders,
}

impl ForwardMessage {
    /// The wire form: version, kind, id, then length-prefixed fields.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        match self {
            ForwardMessage::Request(req) => {
                out.put_u8(match req.method {
                    ForwardMethod::Get => KIND_GET,
                    ForwardMethod::Post => KIND_POST,
                    ForwardMethod::Upgrade => KIND_UPGRADE,
                    ForwardMethod::Probe => KIND_PROBE,
                });
                out.put_u64(req.id);
                out.put_u32(req.from);
                put_field(&mut out, req.sid.to_string().as_bytes());
                put_field(&mut out, req.query.as_bytes());
                put_headers(&mut out, &req.headers);
                put_field(&mut out, &req.body);
            }
            ForwardMessage::Response(res) => {
                out.put_u8(KIND_RESPONSE);
                out.put_u64(res.id);
                out.put_u16(res.status);
                put_headers(&mut out, &res.headers);
                put_field(&mut out, &res.body);
            }
            ForwardMessage::Tunnel(message) => {
                out.put_u8(match message.event {
                    TunnelEvent::Text(_) => KIND_TUNNEL_TEXT,
                    TunnelEvent::Binary(_) => KIND_TUNNEL_BINARY,
                    TunnelEvent::Close(_) => KIND_TUNNEL_CLOSE,
                });
                out.put_u64(message.tunnel.id);
                out.put_u32(message.tunnel.edge);
                out.put_u64(message.seq);
                match &message.event {
                    TunnelEvent::Text(data) | TunnelEvent::Binary(data) => {
                        put_field(&mut out, data)
                    }
                    TunnelEvent::Close(code) => out.put_u16(*code),
                }
            }
        }
        out.freeze()
    }

    /// Reads the wire form written by [`encode`](Self::encode).
    pub fn decode(mut buf: Bytes) -> Result<Self, ForwardDecodeError> {
        let version = get_u8(&mut buf)?;
        if version != VERSION {
            return Err(ForwardDecodeError::Version(version));
        }
        let kind = get_u8(&mut buf)?;
        if !(KIND_GET..=KIND_PROBE).contains(&kind) {
            return Err(ForwardDecodeError::Kind(kind));
        }
        let id = get_u64(&mut buf)?;
        let method = match kind {
            KIND_GET => ForwardMethod::Get,
            KIND_POST => ForwardMethod::Post,
            KIND_UPGRADE => ForwardMethod::Upgrade,
            KIND_PROBE => ForwardMethod::Probe,
            KIND_RESPONSE => return decode_response(id, buf),
            _ => return decode_tunnel(kind, id, buf),
        };
        let from = get_u32(&mut buf)?;
        let sid = text(get_field(&mut buf)?)?
            .parse()
            .map_err(|_| ForwardDecodeError::Text)?;
        let query = text(get_field(&mut buf)?)?;
        let headers = get_headers(&mut buf)?;
        let body = get_field(&mut buf)?;
        Ok(ForwardMessage::Request(ForwardedRequest {
            id,
            from,
            method,
            sid,
            query,
            headers,
            body,
        }))
    }
}

fn decode_response(id: u64, mut buf: Bytes) -> Result<ForwardMessage, ForwardDecodeError> {
    let status = get_u16(&mut buf)?;
    let headers = get_headers(&mut buf)?;
    let body = get_field(&mut buf)?;
    Ok(ForwardMessage::Response(ForwardedResponse {
        id,
        status,
        headers,
        body,
    }))
}

fn decode_tunnel(kind: u8, id: u64, mut buf: Bytes) -> Result<ForwardMessage, ForwardDecodeError> {
    let edge = get_u32(&mut buf)?;
    let seq = get_u64(&mut buf)?;
    let event = match kind {
        KIND_TUNNEL_TEXT => TunnelEvent::Text(get_field(&mut buf)?),
        KIND_TUNNEL_BINARY => TunnelEvent::Binary(get_field(&mut buf)?),
        _ => TunnelEvent::Close(get_u16(&mut buf)?),
    };
    Ok(ForwardMessage::Tunnel(TunnelMessage {
        tunnel: TunnelId { edge, id },
        seq,
        event,
    }))
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    // Fields are bounded by max_payload (a u32 is plenty); saturate rather than wrap.
    out.put_u32(u32::try_from(field.len()).unwrap_or(u32::MAX));
    out.put_slice(field);
}

fn put_headers(out: &mut BytesMut, headers: &[(String, Bytes)]) {
    let headers = headers.get(..headers.len().min(MAX_HEADERS)).unwrap_or(&[]);
    out.put_u8(u8::try_from(headers.len()).unwrap_or(u8::MAX));
    for (name, value) in headers {
        put_field(out, name.as_bytes());
        put_field(out, value);
    }
}

fn get_u8(buf: &mut Bytes) -> Result<u8, ForwardDecodeError> {
    buf.try_get_u8().map_err(|_| ForwardDecodeError::Truncated)
}

fn get_u16(buf: &mut Bytes) -> Result<u16, ForwardDecodeError> {
    buf.try_get_u16().map_err(|_| ForwardDecodeError::Truncated)
}

fn get_u32(buf: &mut Bytes) -> Result<u32, ForwardDecodeError> {
    buf.try_get_u32().map_err(|_| ForwardDecodeError::Truncated)
}

fn get_u64(buf: &mut Bytes) -> Result<u64, ForwardDecodeError> {
    buf.try_get_u64().map_err(|_| ForwardDecodeError::Truncated)
}

fn get_field(buf: &mut Bytes) -> Result<Bytes, ForwardDecodeError> {
    let len = usize::try_from(get_u32(buf)?).map_err(|_| ForwardDecodeError::Truncated)?;
    if buf.remaining() < len {
        return Err(ForwardDecodeError::Truncated);
    }
    Ok(buf.split_to(len))
}

fn get_headers(buf: &mut Bytes) -> Result<Vec<(String, Bytes)>, ForwardDecodeError> {
    let count = usize::from(get_u8(buf)?);
    if count > MAX_HEADERS {
        return Err(ForwardDecodeError::TooManyHeaders);
    }
    (0..count)
        .map(|_| Ok((text(get_field(buf)?)?, get_field(buf)?)))
        .collect()
}

fn text(field: Bytes) -> Result<String, ForwardDecodeError> {
    String::from_utf8(field.to_vec()).map_err(|_| ForwardDecodeError::Text)
}

/// Why a forwarded request got no answer from its owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No node with the sid's node id listens: it is gone (or never existed, or died while the
    /// request waited for its answer). The client gets
    /// Engine.IO's "Session ID unknown" 400, as from a node that lost the session.
    #[error("no node {0:08x} in the cluster")]
    UnknownNode(u32),
    /// The node left the cluster after the request reached it, before it answered: the
    /// request may have run there or not. The client gets "Session ID unknown", as for
    /// [`UnknownNode`](Self::UnknownNode), but a POST is not adopted (its packets may have run).
    #[error("node {0:08x} left the cluster before it answered")]
    Vanished(u32),
    /// The owner did not answer in time (it may be overloaded or gone); the client gets a 502.
    #[error("node {0:08x} did not answer in time")]
    Timeout(u32),
    /// Too many requests are waiting for answers already; the client gets a 503 and retries.
    #[error("too many forwarded requests in flight")]
    Busy,
    /// The cluster backend could not carry the request.
    #[error("cluster backend unavailable: {0}")]
    Backend(String),
    /// The owner refused the request before its body was sent, with this answer (its answer
    /// to the [`ForwardMethod::Probe`], relayed to the client as is): the session is unknown
    /// to it, or no longer on polling.
    #[error("the session's owner refused the request (HTTP {})", .0.status)]
    Refused(Box<ForwardedResponse>),
    /// Another POST for the session is on its way through this node already. A client sends
    /// one at a time, so the client gets a 400 as from the owner.
    #[error("overlapping forwarded POSTs for one session")]
    Overlapping,
}

/// The answer of a [`Forwarder`].
pub type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<ForwardedResponse, ForwardError>> + Send>>;

/// The answer of [`Forwarder::open_tunnel`]: the owner's answer to the upgrade, and the edge's
/// end of the tunnel (of use when the answer is
/// [`TUNNEL_ACCEPTED`](ForwardedResponse::TUNNEL_ACCEPTED)).
pub type TunnelFuture =
    Pin<Box<dyn Future<Output = Result<(ForwardedResponse, Tunnel), ForwardError>> + Send>>;

/// The answer of [`Forwarder::admit`]: leave to forward the request, as a permit that holds
/// what it reserves (the one POST of a session in flight) until it is dropped.
pub(crate) type AdmitFuture =
    Pin<Box<dyn Future<Output = Result<Box<dyn Send + Sync>, ForwardError>> + Send>>;

/// Puts back what an answer to a forwarded poll took from its session (see
/// [`Forwarder::on_undelivered`]).
pub(crate) type Undo = Box<dyn FnOnce() + Send>;

/// Carries a request for a foreign session to the node that owns it and brings back the
/// answer. The engine calls it; the Socket.IO layer provides one over its cluster backend.
pub trait Forwarder: Send + Sync + 'static {
    /// Clears a request for `sid` before the edge reads more of it than its head (a POST's
    /// body): a request for a node the cluster does not know alive, for a session its owner
    /// does not confirm, or overlapping another POST of its session, is refused at once. The
    /// permit is held until the request is answered; what it reserves is released when it is
    /// dropped. The default clears every request and reserves nothing.
    fn admit(&self, sid: Sid, method: ForwardMethod) -> AdmitFuture {
        let _ = (sid, method);
        Box::pin(async { Ok(Box::new(()) as Box<dyn Send + Sync>) })
    }

    /// Sends `request` to node `node_id` and waits (boundedly) for its answer.
    fn forward(&self, node_id: u32, request: ForwardedRequest) -> ForwardFuture;

    /// Sends the upgrade `request` ([`ForwardMethod::Upgrade`]) to node `node_id` and waits
    /// (boundedly) for its answer. The tunnel, named after the request, listens before the
    /// request leaves, so none of the owner's messages is missed.
    fn open_tunnel(&self, node_id: u32, request: ForwardedRequest) -> TunnelFuture;

    /// On the owner: the answer to request `id` of node `from` carries frames a poll took
    /// from its session; if the answer cannot be delivered to `from`, run `undo`, which puts
    /// them back at the head of the session's queue for the client's next poll. The default
    /// drops `undo` (the frames are lost with an undelivered answer).
    fn on_undelivered(&self, from: u32, id: u64, undo: Undo) {
        let _ = (from, id, undo);
    }
}

/// The request headers the owner reads (the body's type and length); the rest stays on the edge.
const FORWARDED_HEADERS: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::CONTENT_LENGTH];

impl<H: Handler> Engine<H> {
    /// Sends polling requests and WebSocket upgrades for other nodes' sessions (their sid's
    /// [`Sid::node_id`] is not this engine's) through `forwarder` instead of answering
    /// "Session ID unknown". Set once; later calls are ignored (answers `false`).
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) -> bool {
        self.inner.forwarder.set(forwarder).is_ok()
    }

    pub(super) fn forwarder(&self) -> Option<Arc<dyn Forwarder>> {
        self.inner.forwarder.get().cloned()
    }

    /// Runs a polling request another node forwarded against the local session it names, and
    /// answers what a direct request would have got.
    pub async fn serve_forwarded(&self, request: ForwardedRequest) -> ForwardedResponse {
        let id = request.id;
        // The answer is turned into plain data before anything else is awaited: actix's
        // `HttpResponse` is not `Send`, and this runs on whatever task the backend uses.
        match self.run_forwarded(request).await {
            Ok(response) => into_forwarded(id, response),
            Err(err) => into_forwarded(id, err.error_response()),
        }
    }

    async fn run_forwarded(&self, request: ForwardedRequest) -> Result<HttpResponse, RequestError> {
        let is_poll = request.method == ForwardMethod::Get;
        let socket = service::live_session(self, request.sid, is_poll)?;
        if socket.transport() != TransportKind::Polling {
            return Err(RequestError::BadRequest);
        }
        let max = self.config().max_payload_len();
        match request.method {
            // An upgrade comes with its tunnel, to `serve_tunnel`.
            ForwardMethod::Upgrade => Err(RequestError::BadRequest),
            ForwardMethod::Probe => Ok(HttpResponse::Ok().finish()),
            ForwardMethod::Get => {
                let polled = polling::poll(&socket, max).await?;
                let response = polled.response(socket.protocol());
                if let (Polled::Drained(frames), Some(forwarder)) = (polled, self.forwarder()) {
                    forwarder.on_undelivered(request.from, request.id, put_back(&socket, frames));
                }
                Ok(response)
            }
            ForwardMethod::Post => {
                let _writer = polling::claim_writer(&socket)?;
                if request.body.len() > max {
                    socket.close(CloseReason::TransportError);
                    return Err(RequestError::PayloadTooLarge);
                }
                let content_type = request
                    .headers
                    .iter()
                    .find(|(name, _)| name == header::CONTENT_TYPE.as_str())
                    .map(|(_, value)| value.as_ref());
                polling::post_body(self, &socket, request.body, content_type).await?;
                Ok(polling::posted())
            }
        }
    }
}

/// What undoes a poll's answer that never reached its client: its frames go back to the head
/// of the session's queue (if the session is still there), in their order.
fn put_back<D: Send + Sync + 'static>(socket: &Arc<Socket<D>>, frames: Vec<Frame>) -> Undo {
    let socket = Arc::downgrade(socket);
    Box::new(move || {
        if let Some(socket) = socket.upgrade() {
            tracing::debug!(target: "sio::forward", frames = frames.len(), "forwarded poll answer undelivered, frames requeued");
            for frame in frames.into_iter().rev() {
                socket.requeue(frame);
            }
        }
    })
}

/// The edge side: once the forwarder has cleared the request, reads it (bounded by
/// `max_payload` and `body_timeout`), sends it to the sid's owner and relays the answer.
///
/// A POST whose owner is found dead before the request reached it is adopted instead (see
/// [`adopt`](super::adopt)).
pub(super) async fn forward_polling<H: Handler>(
    engine: &Engine<H>,
    forwarder: &Arc<dyn Forwarder>,
    sid: Sid,
    protocol: Protocol,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    let method = match *req.method() {
        Method::GET => ForwardMethod::Get,
        Method::POST => ForwardMethod::Post,
        _ => return Err(RequestError::BadRequest),
    };
    // Held until the answer is relayed: it is the session's one POST in flight here.
    let _permit = match forwarder.admit(sid, method).await {
        Ok(permit) => permit,
        Err(ForwardError::UnknownNode(_)) if method == ForwardMethod::Post => {
            let body = async {
                Ok(polling::read_body(engine.config(), req, body)
                    .await?
                    .freeze())
            };
            return adopt::adopt_post(engine, sid, protocol, req, body).await;
        }
        Err(err) => return forward_refused(err),
    };
    let body = match method {
        ForwardMethod::Post => polling::read_body(engine.config(), req, body)
            .await?
            .freeze(),
        _ => Bytes::new(),
    };
    let headers = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(name)?;
            Some((
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            ))
        })
        .collect();
    let request = ForwardedRequest {
        id: 0,
        from: engine.node_id(),
        method,
        sid,
        query: req.query_string().to_owned(),
        headers,
        body: body.clone(),
    };
    match forwarder.forward(sid.node_id(), request).await {
        Ok(response) => Ok(from_forwarded(response)),
        // Not delivered: the owner died since it was cleared.
        Err(ForwardError::UnknownNode(_)) if method == ForwardMethod::Post => {
            adopt::adopt_post(engine, sid, protocol, req, async { Ok(body) }).await
        }
        Err(err) => forward_refused(err),
    }
}

/// What the client gets when its request was not answered by the owner: the protocol's
/// "Session ID unknown" when the owner is gone (or never was), the owner's own refusal, a 400
/// for a second POST of the session, else a failure status.
pub(super) fn forward_refused(err: ForwardError) -> Result<HttpResponse, RequestError> {
    match err {
        ForwardError::UnknownNode(_) | ForwardError::Vanished(_) => Err(RequestError::UnknownSid),
        ForwardError::Refused(answer) => Ok(from_forwarded(*answer)),
        ForwardError::Overlapping => Err(RequestError::BadRequest),
        err => Ok(forward_failed(&err)),
    }
}

/// What the client gets when its request found no answer on the owner: 503 when too many
/// wait already (it retries), 502 otherwise. The sid is not logged: it is the session's bearer
/// token (the error names the node).
fn forward_failed(err: &ForwardError) -> HttpResponse {
    tracing::warn!(target: "sio::forward", %err, "forwarded request failed");
    let status = match err {
        ForwardError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    HttpResponse::build(status)
        .content_type("text/plain; charset=UTF-8")
        .body(err.to_string())
}

/// The owner's answer as the edge sends it to the client.
pub(super) fn from_forwarded(response: ForwardedResponse) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &response.headers {
        builder.insert_header((name.as_str(), value.as_ref()));
    }
    builder.body(response.body)
}

/// A local answer in the wire form: status, content type, body.
pub(super) fn into_forwarded(id: u64, response: HttpResponse) -> ForwardedResponse {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| {
            vec![(
                header::CONTENT_TYPE.as_str().to_owned(),
                Bytes::copy_from_slice(v.as_bytes()),
            )]
        })
        .unwrap_or_default();
    // Polling answers are in-memory bodies, so this cannot fail in practice; an error becomes
    // an empty body rather than a lost answer.
    let body =
        actix_web::body::MessageBody::try_into_bytes(response.into_body()).unwrap_or_default();
    ForwardedResponse {
        id,
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: ForwardMethod) -> ForwardedRequest {
        ForwardedRequest {
            id: u64::MAX - 3,
            from: 3,
            method,
            sid: Sid::new(0xdead_beef),
            query: "EIO=4&transport=polling&sid=x".into(),
            headers: vec![
                ("content-type".into(), Bytes::from_static(b"text/plain")),
                ("content-length".into(), Bytes::from_static(b"6")),
            ],
            body: Bytes::from_static(b"4hello\x1e4\xc3\xa9"),
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for message in [
            ForwardMessage::Request(request(ForwardMethod::Get)),
            ForwardMessage::Request(request(ForwardMethod::Post)),
            ForwardMessage::Response(ForwardedResponse {
                id: 1,
                status: 400,
                headers: vec![],
                body: Bytes::from_static(br#"{"code":1,"message":"Session ID unknown"}"#),
            }),
        ] {
            assert_eq!(ForwardMessage::decode(message.encode()), Ok(message));
        }
    }

    fn tunnel(seq: u64, event: TunnelEvent) -> ForwardMessage {
        ForwardMessage::Tunnel(TunnelMessage {
            tunnel: TunnelId {
                edge: 0xfeed_f00d,
                id: u64::MAX - 1,
            },
            seq,
            event,
        })
    }

    fn tunnel_messages() -> [ForwardMessage; 4] {
        [
            tunnel(
                0,
                TunnelEvent::Text(Bytes::from_static("2probe é".as_bytes())),
            ),
            tunnel(1, TunnelEvent::Binary(Bytes::from_static(b"\x00\xff\x1e"))),
            tunnel(2, TunnelEvent::Text(Bytes::new())),
            tunnel(u64::MAX, TunnelEvent::Close(1009)),
        ]
    }

    #[test]
    fn upgrades_and_tunnel_messages_round_trip() {
        let upgrade = ForwardMessage::Request(ForwardedRequest {
            headers: vec![],
            body: Bytes::new(),
            ..request(ForwardMethod::Upgrade)
        });
        assert_eq!(ForwardMessage::decode(upgrade.encode()), Ok(upgrade));
        for message in tunnel_messages() {
            assert_eq!(ForwardMessage::decode(message.encode()), Ok(message));
        }
    }

    #[test]
    fn a_tunnel_message_is_its_payload_and_a_fixed_header() {
        // version, kind, id, edge, seq, then the payload's length and bytes.
        let encoded = tunnel(0, TunnelEvent::Text(Bytes::from_static(b"4hi"))).encode();
        assert_eq!(encoded.len(), 1 + 1 + 8 + 4 + 8 + 4 + 3);
        assert_eq!(&encoded[..2], &[VERSION, KIND_TUNNEL_TEXT]);
        let close = tunnel(0, TunnelEvent::Close(1000)).encode();
        assert_eq!(close.len(), 1 + 1 + 8 + 4 + 8 + 2);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let upgrade = ForwardMessage::Request(request(ForwardMethod::Upgrade));
        let messages = [
            ForwardMessage::Request(request(ForwardMethod::Post)),
            upgrade,
        ];
        for message in messages.iter().chain(&tunnel_messages()) {
            let full = message.encode();
            for len in 0..full.len() {
                assert!(ForwardMessage::decode(full.slice(..len)).is_err(), "{len}");
            }
        }
    }

    #[test]
    fn older_versions_are_refused() {
        // Nodes of the versions before tunnels and before probes: their messages are not misread.
        for version in [1, 2] {
            let mut raw = tunnel(0, TunnelEvent::Close(1000)).encode().to_vec();
            raw[0] = version;
            assert_eq!(
                ForwardMessage::decode(raw.into()),
                Err(ForwardDecodeError::Version(version))
            );
        }
    }

    #[test]
    fn a_probe_is_a_request_without_a_body() {
        // As the edge sends it: the sid, and nothing of the client's request.
        let probe = ForwardMessage::Request(ForwardedRequest {
            query: String::new(),
            headers: vec![],
            body: Bytes::new(),
            ..request(ForwardMethod::Probe)
        });
        let encoded = probe.encode();
        assert_eq!(encoded[1], KIND_PROBE);
        assert_eq!(encoded.len(), 1 + 1 + 8 + 4 + (4 + 22) + 4 + 1 + 4);
        assert_eq!(ForwardMessage::decode(encoded), Ok(probe));
    }

    #[test]
    fn an_unknown_session_answer_is_told_from_other_refusals() {
        let answer = |err: RequestError| into_forwarded(1, err.error_response());
        assert!(answer(RequestError::UnknownSid).is_unknown_session());
        assert!(!answer(RequestError::BadRequest).is_unknown_session());
        assert!(!into_forwarded(1, HttpResponse::Ok().body("ok")).is_unknown_session());
    }

    #[test]
    fn other_versions_and_kinds_are_refused() {
        let mut raw = ForwardMessage::Request(request(ForwardMethod::Get))
            .encode()
            .to_vec();
        raw[0] = 9;
        assert_eq!(
            ForwardMessage::decode(raw.clone().into()),
            Err(ForwardDecodeError::Version(9))
        );
        raw[0] = VERSION;
        for kind in [0, 9, 42] {
            raw[1] = kind;
            assert_eq!(
                ForwardMessage::decode(raw.clone().into()),
                Err(ForwardDecodeError::Kind(kind))
            );
        }
    }

    #[test]
    fn a_bad_sid_is_refused() {
        let mut raw = ForwardMessage::Request(request(ForwardMethod::Get))
            .encode()
            .to_vec();
        // The sid's text starts after version, kind, id, origin and its length.
        raw[18] = b'!';
        assert_eq!(
            ForwardMessage::decode(raw.into()),
            Err(ForwardDecodeError::Text)
        );
    }
}
