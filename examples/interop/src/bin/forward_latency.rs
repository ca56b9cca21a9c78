//! Measures what sticky-free forwarding costs: the median latency of polling POSTs and GETs sent
//! to the session's own node (direct) and to another node (forwarded over Redis), and the median
//! round trip of a WebSocket message on the session's own node (direct) and through a tunnel
//! (the upgrade landed on another node: each way crosses one relay hop over Redis).
//!
//! usage: forward_latency REDIS_URL [ROUNDS]   (prints one line per kind of request)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use awc::ws::{Frame, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use sio_core::SocketIo;
use sio_redis::RedisAdapter;

fn node(url: String) -> std::io::Result<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let started = async {
                let adapter = RedisAdapter::from_url(&url).map_err(std::io::Error::other)?;
                let io = SocketIo::builder().adapter(adapter.clone()).build();
                let _ = tokio::time::timeout(Duration::from_secs(10), adapter.ready()).await;
                let server = HttpServer::new(move || App::new().service(io.service()))
                    .workers(1)
                    .bind(("127.0.0.1", 0))?;
                Ok::<_, std::io::Error>(server)
            };
            match started.await {
                Ok(server) => {
                    let _ = tx.send(Ok(server.addrs()[0]));
                    let _ = server.run().await;
                }
                Err(err) => {
                    let _ = tx.send(Err(err));
                }
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(20))
        .map_err(std::io::Error::other)?
}

fn http(addr: SocketAddr, method: &str, sid: Option<&str>, body: &str) -> std::io::Result<String> {
    let mut path = "/socket.io/?EIO=4&transport=polling".to_owned();
    if let Some(sid) = sid {
        path = format!("{path}&sid={sid}");
    }
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// A WebSocket to `addr`: a session of its own (no `sid`), or the upgrade of session `sid`
/// (probed and completed).
async fn websocket(addr: SocketAddr, sid: Option<&str>) -> std::io::Result<Ws> {
    let mut url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    if let Some(sid) = sid {
        url = format!("{url}&sid={sid}");
    }
    let (_, mut ws) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    if sid.is_none() {
        next_text(&mut ws).await?; // the open packet
        return Ok(ws);
    }
    send(&mut ws, "2probe").await?;
    if next_text(&mut ws).await? != "3probe" {
        return Err(std::io::Error::other("probe not answered"));
    }
    send(&mut ws, "5").await?;
    Ok(ws)
}

async fn send(ws: &mut Ws, text: &'static str) -> std::io::Result<()> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|err| std::io::Error::other(err.to_string()))
}

/// The next text frame (10 s at most).
async fn next_text(ws: &mut Ws) -> std::io::Result<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(std::io::Error::other)?;
        match frame {
            Some(Ok(Frame::Text(text))) => return Ok(String::from_utf8_lossy(&text).into_owned()),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(std::io::Error::other(err.to_string())),
            None => return Err(std::io::Error::other("WebSocket closed")),
        }
    }
}

/// Round trips of a ping (v3-style, answered with a pong by the session's engine).
async fn round_trips(ws: &mut Ws, rounds: usize) -> std::io::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        send(ws, "2").await?;
        // The server's own heartbeat pings may come in between; only the pong counts.
        while next_text(ws).await? != "3" {}
        times.push(t.elapsed());
    }
    Ok(times)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or_else(|| std::io::Error::other("usage: forward_latency REDIS_URL [ROUNDS]"))?;
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(500);
    let a = node(url.clone())?;
    let b = node(url)?;
    let open = http(a, "GET", None, "")?;
    let json: serde_json::Value =
        serde_json::from_str(open.get(1..).unwrap_or_default()).map_err(std::io::Error::other)?;
    let sid = json["sid"].as_str().unwrap_or_default().to_owned();
    for (label, addr) in [("direct", a), ("forwarded", b)] {
        let (mut posts, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            // A ping (v3-style, answered with a pong) makes the next poll return at once.
            let t = Instant::now();
            http(addr, "POST", Some(&sid), "2")?;
            posts.push(t.elapsed());
            let t = Instant::now();
            http(addr, "GET", Some(&sid), "")?;
            gets.push(t.elapsed());
        }
        println!(
            "{label}: POST median {:?}, GET median {:?} ({rounds} rounds)",
            median(posts),
            median(gets)
        );
    }
    // Another session of A's, upgraded through B: its messages cross the tunnel.
    let open = http(a, "GET", None, "")?;
    let json: serde_json::Value =
        serde_json::from_str(open.get(1..).unwrap_or_default()).map_err(std::io::Error::other)?;
    let tunnelled_sid = json["sid"].as_str().unwrap_or_default().to_owned();
    actix_web::rt::System::new().block_on(async move {
        let mut direct = websocket(a, None).await?;
        let direct = median(round_trips(&mut direct, rounds).await?);
        let mut tunnelled = websocket(b, Some(&tunnelled_sid)).await?;
        let tunnelled = median(round_trips(&mut tunnelled, rounds).await?);
        println!(
            "websocket: round trip median {direct:?} direct, {tunnelled:?} tunnelled, so {:?} per relay hop ({rounds} rounds)",
            tunnelled.saturating_sub(direct) / 2
        );
        Ok(())
    })
}
