//! The page and the Socket.IO client, compiled into the binary: `cargo run` serves a working
//! chat on a machine without npm, and a node's page always matches its server.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};

const INDEX_HTML: &str = include_str!("../static/index.html");
const STYLE_CSS: &str = include_str!("../static/style.css");
const APP_JS: &str = include_str!("../static/app.js");
/// `dist/socket.io.min.js` of npm `socket.io-client@4.8.4`, unchanged (MIT, see
/// `static/socket.io-client.LICENSE`; its banner keeps the notice in the served file too).
const SOCKET_IO_JS: &[u8] = include_bytes!("../static/socket.io.min.js");

/// `/`, `/style.css`, `/app.js` and `/socket.io.min.js`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| file("text/html; charset=utf-8", INDEX_HTML.as_bytes())),
    )
    .route(
        "/style.css",
        web::get().to(|| file("text/css; charset=utf-8", STYLE_CSS.as_bytes())),
    )
    .route(
        "/app.js",
        web::get().to(|| file("text/javascript; charset=utf-8", APP_JS.as_bytes())),
    )
    .route(
        "/socket.io.min.js",
        web::get().to(|| file("text/javascript; charset=utf-8", SOCKET_IO_JS)),
    );
}

/// A static file. `no-cache` (revalidate every time) rather than a long max-age: the files
/// change with the binary, and a page from an older node must not mix with a newer script.
async fn file(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(body)
}
