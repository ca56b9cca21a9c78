//! Runtime behaviour of the macro DSL, against a raw WebSocket client: handlers registered
//! with `#[namespace]`, `#[on]`, `#[middleware]`... run, and a handler's return value answers
//! the ack when (and only when) the client asked for one.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::web::ServiceConfig;
use awc::ws::Message;
use futures_util::SinkExt as _;
use sio_core::{SocketIo, namespace};

use common::{Ws, next_text, ws_open};

#[namespace("/chat")]
mod chat {
    use serde_json::{Value, json};
    use sio_core::{
        AckSender, Auth, ConnectError, Data, SocketRef, middleware, on, on_connect, on_server_event,
    };

    #[middleware]
    async fn authorize(Auth(auth): Auth<Value>) -> Result<(), ConnectError> {
        if auth["token"] == "secret" {
            Ok(())
        } else {
            Err(ConnectError::new("not authorized").with_data(json!({ "retry": false })))
        }
    }

    #[on_connect]
    async fn welcome(socket: SocketRef) {
        let _ = socket.emit("welcome", &());
    }

    #[on("add")]
    pub(crate) async fn add(Data((a, b)): Data<(i64, i64)>) -> Result<i64, String> {
        a.checked_add(b).ok_or_else(|| "overflow".to_owned())
    }

    /// Answers with its AckSender first: the return value must not be a second answer.
    #[on("manual")]
    async fn manual(ack: AckSender) -> Result<&'static str, String> {
        let _ = ack.send("first");
        Ok("second")
    }

    #[on_server_event("count")]
    async fn count() -> Result<u32, String> {
        Ok(1)
    }
}

fn server() -> String {
    let addr = common::start(|| {
        let io = SocketIo::builder().namespace(chat::namespace()).build();
        move |cfg: &mut ServiceConfig| {
            cfg.service(io.service());
        }
    });
    format!("{addr}")
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

/// Connects to `/chat` with the right token; the connect handler greets.
async fn connected(addr: &str) -> Ws {
    let mut ws = ws_open(addr).await;
    send(&mut ws, r#"40/chat,{"token":"secret"}"#).await;
    let connect = next_text(&mut ws).await;
    assert!(connect.starts_with(r#"40/chat,{"sid""#), "{connect}");
    assert_eq!(next_text(&mut ws).await, r#"42/chat,["welcome"]"#);
    ws
}

#[actix_web::test]
async fn return_values_answer_acks_only_when_asked() {
    let addr = server();
    let mut ws = connected(&addr).await;

    send(&mut ws, r#"42/chat,1["add",1,2]"#).await;
    assert_eq!(next_text(&mut ws).await, "43/chat,1[3]");

    send(&mut ws, r#"42/chat,2["add",9223372036854775807,1]"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"43/chat,2[{"error":"overflow"}]"#
    );

    // Without an ack id the result goes nowhere; the AckSender's answer is the only one. The
    // next frame being the answer to 4 shows that neither sent anything else.
    send(&mut ws, r#"42/chat,["add",1,1]"#).await;
    send(&mut ws, r#"42/chat,3["manual"]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"43/chat,3["first"]"#);
    send(&mut ws, r#"42/chat,4["add",2,2]"#).await;
    assert_eq!(next_text(&mut ws).await, "43/chat,4[4]");
}

#[actix_web::test]
async fn a_middleware_error_refuses_with_its_data() {
    let addr = server();
    let mut ws = ws_open(&addr).await;
    send(&mut ws, r#"40/chat,{"token":"wrong"}"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/chat,{"message":"not authorized","data":{"retry":false}}"#
    );
}

#[actix_web::test]
async fn handlers_stay_callable() {
    assert_eq!(chat::add(sio_core::Data((2, 3))).await, Ok(5));
}
