//! The bench-server contract's raw mode (`shared/protocol/bench-server.md` §Raw mode) on bare
//! tokio-tungstenite: no Engine.IO or Socket.IO framing, no handshake packets, no heartbeats,
//! any path. A text frame `e<id>|…` goes back to its sender, `b…` to every connected socket,
//! sender included. What sio pays on top of this is the cost of the protocol and the framework.
//!
//! `PORT` (default 3000) picks the port on 127.0.0.1; `TCP_NODELAY` on accepted sockets. One
//! thread (the bench pins the server to one core anyway). Exits on SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, accept_async_with_config};

/// Every connected socket's queue of broadcast frames, by connection number.
type Peers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Utf8Bytes>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let peers = Peers::default();
    let mut term = signal(SignalKind::terminate())?;
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (e.g. out of descriptors) concerns that one connection.
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                next_id += 1;
                tokio::spawn(serve(tcp, next_id, peers.clone()));
            }
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// One connection, from the upgrade until it closes or fails.
async fn serve(tcp: TcpStream, id: u64, peers: Peers) {
    // The same small buffers as the load generator's clients: tungstenite's 128 KiB defaults
    // would make memory per connection a matter of configuration, not of the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let Ok(mut ws) = accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Ok(mut peers) = peers.lock() {
        peers.insert(id, tx);
    }
    let _ = run(&mut ws, &peers, &mut rx).await;
    if let Ok(mut peers) = peers.lock() {
        peers.remove(&id);
    }
}

async fn run(
    ws: &mut WebSocketStream<TcpStream>,
    peers: &Peers,
    rx: &mut mpsc::UnboundedReceiver<Utf8Bytes>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    loop {
        tokio::select! {
            incoming = ws.next() => {
                let Some(message) = incoming else { return Ok(()) };
                handle(ws, peers, message?).await?;
                // Whatever else has already arrived is answered in the same write.
                while let Some(Some(message)) = ws.next().now_or_never() {
                    handle(ws, peers, message?).await?;
                }
                ws.flush().await?;
            }
            Some(frame) = rx.recv() => {
                ws.feed(Message::Text(frame)).await?;
                while let Ok(frame) = rx.try_recv() {
                    ws.feed(Message::Text(frame)).await?;
                }
                ws.flush().await?;
            }
        }
    }
}

/// Queues the answer to one frame (not flushed).
async fn handle(
    ws: &mut WebSocketStream<TcpStream>,
    peers: &Peers,
    message: Message,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let Message::Text(text) = message else {
        // Pings are answered by tungstenite itself; binary frames are not in the contract.
        return Ok(());
    };
    if text.starts_with('e') {
        ws.feed(Message::Text(text)).await?;
    } else if text.starts_with('b') {
        // The sender's own copy goes through its queue like everyone else's.
        if let Ok(peers) = peers.lock() {
            for peer in peers.values() {
                let _ = peer.send(text.clone());
            }
        }
    }
    Ok(())
}
