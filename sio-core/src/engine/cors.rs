//! CORS for polling requests from pages on other origins (Node's `cors` option).

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

/// Which origins may use the server from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowOrigin {
    /// Every origin (`origin: "*"`).
    Any,
    /// Only these origins (`origin: ["https://a.example", ...]`).
    List(Vec<String>),
}

/// CORS settings for the polling transport.
///
/// ```
/// use sio_core::engine::{Cors, EngineConfig};
///
/// let config = EngineConfig::builder()
///     .cors(Cors::origins(["https://chat.example"]).credentials(true))
///     .build();
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    origin: AllowOrigin,
    credentials: bool,
}

impl Cors {
    /// Allows every origin.
    pub fn any() -> Self {
        Cors {
            origin: AllowOrigin::Any,
            credentials: false,
        }
    }

    /// Allows only the given origins.
    pub fn origins<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Self {
        Cors {
            origin: AllowOrigin::List(origins.into_iter().map(Into::into).collect()),
            credentials: false,
        }
    }

    /// Lets browsers send cookies (`credentials: true`). With [`Cors::any`] the request's own
    /// origin is echoed, since browsers refuse `*` together with credentials.
    pub fn credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// The `Access-Control-Allow-Origin` value for a request, or `None` when its origin is not
    /// allowed (or it has none and the list is explicit).
    fn allowed_origin(&self, req: &HttpRequest) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN);
        match (&self.origin, origin) {
            (AllowOrigin::Any, Some(origin)) if self.credentials => Some(origin.clone()),
            (AllowOrigin::Any, _) => Some(HeaderValue::from_static("*")),
            (AllowOrigin::List(list), Some(origin)) => list
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
            (AllowOrigin::List(_), None) => None,
        }
    }

    /// Adds the CORS headers for `req` to a response's headers.
    pub(crate) fn apply(&self, req: &HttpRequest, headers: &mut HeaderMap) {
        let Some(origin) = self.allowed_origin(req) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if matches!(self.origin, AllowOrigin::List(_)) || self.credentials {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// The answer to a preflight `OPTIONS` request.
    pub(crate) fn preflight(&self, req: &HttpRequest) -> HttpResponse {
        let mut res = HttpResponse::NoContent().finish();
        let headers = res.headers_mut();
        self.apply(req, headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn any_origin_is_a_star_unless_credentials() {
        let req = TestRequest::default()
            .insert_header((header::ORIGIN, "https://a.example"))
            .to_http_request();
        let mut headers = HeaderMap::new();
        Cors::any().apply(&req, &mut headers);
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "*"
        );
        let mut headers = HeaderMap::new();
        Cors::any().credentials(true).apply(&req, &mut headers);
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://a.example"
        );
        assert_eq!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .unwrap(),
            "true"
        );
    }

    #[test]
    fn listed_origins_only() {
        let cors = Cors::origins(["https://a.example"]);
        let ok = TestRequest::default()
            .insert_header((header::ORIGIN, "https://a.example"))
            .to_http_request();
        let bad = TestRequest::default()
            .insert_header((header::ORIGIN, "https://evil.example"))
            .to_http_request();
        let mut headers = HeaderMap::new();
        cors.apply(&ok, &mut headers);
        assert!(headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let mut headers = HeaderMap::new();
        cors.apply(&bad, &mut headers);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}
