//! `#[on]`: registered with `service`, still callable, return value as the ack.

use serde::Deserialize;
use sio_core::{Data, Namespace, SocketRef, on};

#[derive(Deserialize)]
struct Msg {
    room: String,
    text: String,
}

/// Relays a message to its room and answers with its length.
#[on("chat")]
async fn chat(socket: SocketRef, Data(msg): Data<Msg>) -> Result<usize, String> {
    socket
        .to(msg.room)
        .emit("chat", &msg.text)
        .map_err(|err| err.to_string())?;
    Ok(msg.text.len())
}

#[on("add")]
async fn add(Data((a, b)): Data<(i64, i64)>) -> Result<i64, &'static str> {
    a.checked_add(b).ok_or("overflow")
}

#[on("noop")]
async fn noop() {}

fn main() {
    let ns = Namespace::new("/").service(chat).service(add).service(noop);
    let _ = ns;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(add(Data((2, 3)))), Ok(5));
    assert_eq!(runtime.block_on(add(Data((i64::MAX, 1)))), Err("overflow"));
    runtime.block_on(noop());
    // Copy, Clone and Debug, like a function item.
    let copy = add;
    let _ = (copy, format!("{add:?}"));
}
