//! The floor of actix-web + actix-ws: a websocket that answers the two frames of an
//! Engine.IO / Socket.IO connect (open packet, CONNECT) and nothing else.
use actix_web::{App, HttpRequest, HttpServer, web};
use futures_util::StreamExt as _;

async fn ws(req: HttpRequest, body: web::Payload) -> actix_web::Result<actix_web::HttpResponse> {
    let (res, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let _ = session
            .text(r#"0{"sid":"AAAAAAAAAAAAAAAAAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
            .await;
        while let Some(Ok(msg)) = stream.next().await {
            if let actix_ws::Message::Text(t) = msg {
                if t.starts_with("40") {
                    let _ = session.text(r#"40{"sid":"BBBBBBBBBBBBBBBBBBBB"}"#).await;
                }
            }
        }
    });
    Ok(res)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    HttpServer::new(|| App::new().route("/socket.io/", web::get().to(ws)))
        .tcp_nodelay(true)
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
