//! Sticky-free forwarding: the seam the engine uses when a polling request names a session
//! another node owns (the sid carries the owner's node id, see [`Sid::node_id`]).
//!
//! The edge node turns the HTTP request into a [`ForwardedRequest`], a [`Forwarder`] carries it
//! to the owner (over the cluster backend), the owner runs it against its local session and the
//! [`ForwardedResponse`] travels back. Both travel as one compact binary [`ForwardMessage`]
//! whose codec is pure, so it is tested without a network.

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::sid::Sid;
use super::socket::{CloseReason, TransportKind};
use super::{Engine, Handler, RequestError, polling, service};

/// Version byte of the wire format; bumped when the layout changes, so mixed versions refuse
/// each other's messages instead of misreading them.
const VERSION: u8 = 1;
const KIND_GET: u8 = 1;
const KIND_POST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
/// More headers than this is not a request a browser's Engine.IO client sends.
const MAX_HEADERS: usize = 64;

/// The HTTP method of a forwarded polling request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMethod {
    /// A poll (server to client).
    Get,
    /// A payload from the client.
    Post,
}

/// A polling request for a session of another node, as the edge node received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// Matches the answer to its request (chosen by the edge node).
    pub id: u64,
    /// The edge node's id: where the answer goes.
    pub from: u32,
    /// GET or POST.
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

/// The owner's answer to a [`ForwardedRequest`], relayed by the edge node as is.
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

/// What travels between nodes: a request or its answer.
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
    /// Neither a request nor a response.
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
        let method = match kind {
            KIND_GET => Some(ForwardMethod::Get),
            KIND_POST => Some(ForwardMethod::Post),
            KIND_RESPONSE => None,
            other => return Err(ForwardDecodeError::Kind(other)),
        };
        if buf.remaining() < 8 {
            return Err(ForwardDecodeError::Truncated);
        }
        let id = buf.get_u64();
        let message = match method {
            Some(method) => {
                if buf.remaining() < 4 {
                    return Err(ForwardDecodeError::Truncated);
                }
                let from = buf.get_u32();
                let sid = text(get_field(&mut buf)?)?
                    .parse()
                    .map_err(|_| ForwardDecodeError::Text)?;
                let query = text(get_field(&mut buf)?)?;
                let headers = get_headers(&mut buf)?;
                let body = get_field(&mut buf)?;
                ForwardMessage::Request(ForwardedRequest {
                    id,
                    from,
                    method,
                    sid,
                    query,
                    headers,
                    body,
                })
            }
            None => {
                if buf.remaining() < 2 {
                    return Err(ForwardDecodeError::Truncated);
                }
                let status = buf.get_u16();
                let headers = get_headers(&mut buf)?;
                let body = get_field(&mut buf)?;
                ForwardMessage::Response(ForwardedResponse {
                    id,
                    status,
                    headers,
                    body,
                })
            }
        };
        Ok(message)
    }
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
    if buf.has_remaining() {
        Ok(buf.get_u8())
    } else {
        Err(ForwardDecodeError::Truncated)
    }
}

fn get_field(buf: &mut Bytes) -> Result<Bytes, ForwardDecodeError> {
    if buf.remaining() < 4 {
        return Err(ForwardDecodeError::Truncated);
    }
    let len = usize::try_from(buf.get_u32()).map_err(|_| ForwardDecodeError::Truncated)?;
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
    /// No node with the sid's node id listens: it is gone (or never existed). The client gets
    /// Engine.IO's "Session ID unknown" 400, as from a node that lost the session.
    #[error("no node {0:08x} in the cluster")]
    UnknownNode(u32),
    /// The owner did not answer in time (it may be overloaded or gone); the client gets a 502.
    #[error("node {0:08x} did not answer in time")]
    Timeout(u32),
    /// Too many requests are waiting for answers already; the client gets a 503 and retries.
    #[error("too many forwarded requests in flight")]
    Busy,
    /// The cluster backend could not carry the request.
    #[error("cluster backend unavailable: {0}")]
    Backend(String),
}

/// The answer of a [`Forwarder`].
pub type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<ForwardedResponse, ForwardError>> + Send>>;

/// Carries a request for a foreign session to the node that owns it and brings back the
/// answer. The engine calls it; the Socket.IO layer provides one over its cluster backend.
pub trait Forwarder: Send + Sync + 'static {
    /// Sends `request` to node `node_id` and waits (boundedly) for its answer.
    fn forward(&self, node_id: u32, request: ForwardedRequest) -> ForwardFuture;
}

/// The request headers the owner reads (the body's type and length); the rest stays on the edge.
const FORWARDED_HEADERS: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::CONTENT_LENGTH];

impl<H: Handler> Engine<H> {
    /// Sends polling requests for other nodes' sessions (their sid's [`Sid::node_id`] is not
    /// this engine's) through `forwarder` instead of answering "Session ID unknown". Set once;
    /// later calls are ignored (answers `false`).
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
            ForwardMethod::Get => polling::get(&socket, max).await,
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
                polling::post_body(self, &socket, request.body, content_type)
            }
        }
    }
}

/// The edge side: reads the request (bounded by `max_payload`), sends it to the sid's owner
/// and relays the answer.
pub(super) async fn forward_polling<H: Handler>(
    engine: &Engine<H>,
    forwarder: &Arc<dyn Forwarder>,
    sid: Sid,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    let method = match *req.method() {
        Method::GET => ForwardMethod::Get,
        Method::POST => ForwardMethod::Post,
        _ => return Err(RequestError::BadRequest),
    };
    let body = match method {
        ForwardMethod::Get => Bytes::new(),
        ForwardMethod::Post => polling::read_body(req, body, engine.config().max_payload_len())
            .await?
            .freeze(),
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
        body,
    };
    match forwarder.forward(sid.node_id(), request).await {
        Ok(response) => Ok(from_forwarded(response)),
        Err(ForwardError::UnknownNode(_)) => Err(RequestError::UnknownSid),
        Err(err) => {
            tracing::warn!(target: "sio::forward", %sid, %err, "forwarded request failed");
            let status = match err {
                ForwardError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            Ok(HttpResponse::build(status)
                .content_type("text/plain; charset=UTF-8")
                .body(err.to_string()))
        }
    }
}

/// The owner's answer as the edge sends it to the client.
fn from_forwarded(response: ForwardedResponse) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &response.headers {
        builder.insert_header((name.as_str(), value.as_ref()));
    }
    builder.body(response.body)
}

/// A local answer in the wire form: status, content type, body.
fn into_forwarded(id: u64, response: HttpResponse) -> ForwardedResponse {
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

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = ForwardMessage::Request(request(ForwardMethod::Post)).encode();
        for len in 0..full.len() {
            assert!(ForwardMessage::decode(full.slice(..len)).is_err(), "{len}");
        }
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
        raw[1] = 42;
        assert_eq!(
            ForwardMessage::decode(raw.into()),
            Err(ForwardDecodeError::Kind(42))
        );
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
