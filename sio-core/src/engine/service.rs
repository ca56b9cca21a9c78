//! Mounting an engine into an actix-web `App`, and routing each request to its transport.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::socket::{CloseReason, Protocol, Socket, TransportKind};
use super::{Engine, Handler, RequestError, Sid, forward, polling, tunnel, websocket};

/// The actix-web service of an [`Engine`], answering on its configured path (with or without
/// the trailing slash). Register it with `App::service`; the app keeps its own routes,
/// middleware and TLS.
pub struct EngineService<H: Handler> {
    engine: Engine<H>,
}

impl<H: Handler> EngineService<H> {
    pub(super) fn new(engine: Engine<H>) -> Self {
        EngineService { engine }
    }
}

impl<H: Handler> fmt::Debug for EngineService<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineService")
            .field("path", &self.engine.config().path)
            .finish()
    }
}

impl<H: Handler> HttpServiceFactory for EngineService<H> {
    fn register(self, config: &mut AppService) {
        let path = self.engine.config().path.clone();
        let bare = path.trim_end_matches('/').to_owned();
        // One resource per spelling: a resource with one static pattern is matched by string
        // comparison, one with several patterns through a regex set (a tenth of the cost of a
        // websocket connect, and paid again by every polling request).
        let paths = if bare == path {
            vec![path]
        } else {
            vec![path, bare]
        };
        for path in paths {
            let engine = self.engine.clone();
            web::resource(path)
                .to(move |req: HttpRequest, body: web::Payload| {
                    let engine = engine.clone();
                    async move { handle(engine, req, body).await }
                })
                .register(config);
        }
    }
}

/// The query parameters Engine.IO uses; others are the application's and are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query<'a> {
    eio: Option<Cow<'a, str>>,
    transport: Option<Cow<'a, str>>,
    sid: Option<Cow<'a, str>>,
    /// Engine.IO v3: the client wants base64 instead of binary polling bodies.
    b64: Option<Cow<'a, str>>,
}

impl<'a> Query<'a> {
    /// Reads a query string (`+` and `%XX` decoded); `None` when a parameter Engine.IO uses
    /// comes twice. Values borrow from the query unless they had to be decoded: this runs on
    /// every polling request, where a deserializer's owned strings were most of its cost.
    fn parse(query: &'a str) -> Option<Self> {
        let mut parsed = Query::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "EIO" => &mut parsed.eio,
                "transport" => &mut parsed.transport,
                "sid" => &mut parsed.sid,
                "b64" => &mut parsed.b64,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        Some(parsed)
    }
}

async fn handle<H: Handler>(
    engine: Engine<H>,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let cors = engine.config().cors.as_ref();
    if req.method() == Method::OPTIONS
        && let Some(cors) = cors
    {
        return cors.preflight(&req);
    }
    let mut res = match route(&engine, &req, body).await {
        Ok(res) => res,
        Err(err) => {
            // The path only: the query holds the sid, a bearer token of the session.
            tracing::debug!(method = %req.method(), path = req.path(), %err, "request refused");
            err.error_response()
        }
    };
    if let Some(cors) = cors {
        cors.apply(&req, res.headers_mut());
    }
    res
}

/// Checks a request the way Node's engine.io does (transport, protocol version, session, then
/// handshake rules) and hands it to its transport.
async fn route<H: Handler>(
    engine: &Engine<H>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, RequestError> {
    let config = engine.config();
    let query = Query::parse(req.query_string()).ok_or(RequestError::BadRequest)?;
    let transport = match query.transport.as_deref() {
        Some("polling") if config.transports.polling => TransportKind::Polling,
        Some("websocket") if config.transports.websocket => TransportKind::Websocket,
        _ => return Err(RequestError::UnknownTransport),
    };
    let protocol = match query.eio.as_deref() {
        Some("4") => Protocol::V4,
        // Like Node with `allowEIO3`, a request that names no version is taken as v3.
        Some("3") | None if config.allow_eio3 => Protocol::V3 {
            binary: query.b64.is_none(),
        },
        _ => return Err(RequestError::UnsupportedProtocolVersion),
    };
    let Some(sid) = &query.sid else {
        if req.method() != Method::GET {
            return Err(RequestError::BadHandshakeMethod);
        }
        if let Some(allow) = &config.allow_request
            && !allow(req)
        {
            return Err(RequestError::Forbidden);
        }
        engine.admit()?;
        return match transport {
            TransportKind::Polling => Ok(polling::handshake(engine, req, protocol)),
            TransportKind::Websocket => websocket::handshake(engine, req, body, protocol),
        };
    };
    let sid = sid.parse::<Sid>().map_err(|_| RequestError::UnknownSid)?;
    if sid.node_id() != engine.node_id()
        && let Some(forwarder) = engine.forwarder()
    {
        return match transport {
            TransportKind::Polling => {
                forward::forward_polling(engine, &forwarder, sid, protocol, req, body).await
            }
            TransportKind::Websocket => {
                tunnel::forward_upgrade(engine, &forwarder, sid, req, body).await
            }
        };
    }
    let is_poll = transport == TransportKind::Polling && req.method() == Method::GET;
    let socket = live_session(engine, sid, is_poll)?;
    match transport {
        TransportKind::Websocket => websocket::upgrade(engine, socket, req, body),
        TransportKind::Polling if socket.transport() != TransportKind::Polling => {
            Err(RequestError::BadRequest)
        }
        TransportKind::Polling => match *req.method() {
            Method::GET => polling::get(&socket, config.max_payload_len()).await,
            Method::POST => polling::post(engine, &socket, req, body).await,
            _ => Err(RequestError::BadRequest),
        },
    }
}

/// The session `sid` names, for a request that is a poll (`is_poll`) or not; whether it came
/// to this node directly or was forwarded. A session whose client stopped answering pings is
/// closed first; a closed session lingers only to answer its client's close to one last poll.
pub(super) fn live_session<H: Handler>(
    engine: &Engine<H>,
    sid: Sid,
    is_poll: bool,
) -> Result<Arc<Socket<H::Data>>, RequestError> {
    let socket = engine.session(sid).ok_or(RequestError::UnknownSid)?;
    if socket.pong_overdue() {
        socket.close(CloseReason::PingTimeout);
    }
    if socket.is_closed() && !is_poll {
        return Err(RequestError::UnknownSid);
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_like_node_reads_it() {
        let q = Query::parse("EIO=4&transport=polling&t=P1x&sid=ab%2Dc+d").unwrap_or_default();
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("ab-c d"));
        assert_eq!(q.b64, None);
        assert!(matches!(q.transport, Some(Cow::Borrowed(_))));
        assert_eq!(Query::parse(""), Some(Query::default()));
        assert_eq!(Query::parse("EIO=4&EIO=3"), None);
        assert_eq!(
            Query::parse("b64=1&EIO").map(|q| (q.b64, q.eio)),
            Some((Some("1".into()), Some("".into())))
        );
    }
}
