//! The engine's side of adopting a dead owner's POST (see [`Handler::adopt`]): a POST whose
//! owner the forwarder found dead, before any of the request reached it, runs here against a
//! session the handler restores for it alone, instead of being answered "Session ID unknown".
//!
//! Dead means the cluster backend says no one listens on the owner's node channel (a killed
//! node, or one whose backend connection is gone), either before the request was sent or
//! when it was sent. A request that did reach the owner (then the owner vanished) is never
//! adopted: its packets may have run there already, and running them twice is worse than
//! the client's retry. A frozen owner still listens, so its requests time out instead.
//!
//! The forwarder's word only starts an adoption: the handler restores a session only if the
//! store that keeps it agrees that its node is gone (Redis: its owner channel has no
//! subscriber), so a node the edge merely failed to reach keeps its sessions.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::socket::{CloseReason, Protocol, RequestInfo, Socket, TransportKind};
use super::{Engine, Handler, RequestError, Sid, polling};

/// Runs the POST `req` for the session `sid` of a dead owner against a session the handler
/// adopts for it; "Session ID unknown" when it adopts nothing (`body`, which reads the POST's
/// body, is not awaited then: a forged sid costs the store's answer, never a body read).
pub(super) async fn adopt_post<H: Handler>(
    engine: &Engine<H>,
    sid: Sid,
    protocol: Protocol,
    req: &HttpRequest,
    body: impl Future<Output = Result<Bytes, RequestError>>,
) -> Result<HttpResponse, RequestError> {
    let socket = Arc::new(Socket::new(
        sid,
        TransportKind::Polling,
        engine.config().max_buffer_size,
        RequestInfo::new(req),
        protocol,
        H::Data::default(),
        engine.inner.traffic.clone(),
    ));
    if !engine.handler().adopt(&socket).await {
        return Err(RequestError::UnknownSid);
    }
    let posted = async {
        let body = body.await?;
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.as_bytes());
        polling::post_body(engine, &socket, body, content_type).await
    }
    .await;
    // Whatever the POST did, the adopted session ends with it: the client's next poll finds
    // the session unknown and it reconnects, to recover what was released here.
    socket.close(CloseReason::TransportClose);
    engine
        .handler()
        .on_close(&socket, CloseReason::TransportClose);
    posted.map(|()| polling::posted())
}
