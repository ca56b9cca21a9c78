//! The errors a client's HTTP request can get, as Node's engine.io answers them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Why a request was refused. Each variant maps to the Engine.IO error code and message that
/// Node's server sends in its JSON body (`{"code":1,"message":"Session ID unknown"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The `transport` query parameter is missing, unknown, or not enabled.
    #[error("Transport unknown")]
    UnknownTransport,
    /// The `sid` does not name an open session.
    #[error("Session ID unknown")]
    UnknownSid,
    /// A request without `sid` that is not a `GET`.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// The request does not fit the session's state (a poll after an upgrade, two concurrent
    /// polls, a malformed query or body).
    #[error("Bad request")]
    BadRequest,
    /// The `allow_request` hook refused the handshake.
    #[error("Forbidden")]
    Forbidden,
    /// `EIO` is missing or names a protocol version this server does not speak.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// A polling body larger than `max_payload`.
    #[error("Payload too large")]
    PayloadTooLarge,
    /// The process holds `max_sessions` sessions already.
    #[error("Too many sessions")]
    TooManySessions,
    /// Handshakes arrive faster than `max_handshakes_per_second`.
    #[error("Too many handshakes")]
    TooManyHandshakes,
}

impl RequestError {
    /// The Engine.IO error code of the JSON body.
    pub fn code(self) -> u8 {
        match self {
            RequestError::UnknownTransport => 0,
            RequestError::UnknownSid => 1,
            RequestError::BadHandshakeMethod => 2,
            RequestError::BadRequest
            | RequestError::PayloadTooLarge
            | RequestError::TooManySessions
            | RequestError::TooManyHandshakes => 3,
            RequestError::Forbidden => 4,
            RequestError::UnsupportedProtocolVersion => 5,
        }
    }
}

impl ResponseError for RequestError {
    fn status_code(&self) -> StatusCode {
        match self {
            RequestError::Forbidden => StatusCode::FORBIDDEN,
            RequestError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::TooManySessions => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::TooManyHandshakes => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn answers_with_node_s_json() {
        let res = RequestError::UnknownSid.error_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = to_bytes(res.into_body()).await.unwrap();
        assert_eq!(body, r#"{"code":1,"message":"Session ID unknown"}"#);
        let res = RequestError::Forbidden.error_response();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
}
