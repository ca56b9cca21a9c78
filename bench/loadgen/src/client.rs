//! A minimal Engine.IO v4 / Socket.IO v5 client over a direct websocket (no polling first):
//! text packets, default JSON parser, one namespace per client. Engine.IO pings (`2`) are answered
//! (`3`) wherever packets are read, so a client that is only read from stays connected.
//! In raw mode (the contract's §Raw mode) the same client speaks bare websocket frames instead:
//! no handshake, `e<id>|<payload>` for an echo, `b<payload>` for a broadcast.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// What a client speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    SocketIo,
    Raw,
}

pub struct Client {
    ws: WebSocketStream<TcpStream>,
    mode: Mode,
    /// What follows the packet type for this namespace: empty for `/`, `"/custom,"` otherwise.
    ns_prefix: String,
}

impl Client {
    /// TCP connect, websocket upgrade, Engine.IO open packet, Socket.IO CONNECT to `ns` and its
    /// answer (in raw mode only the upgrade), all within `timeout`.
    pub async fn connect(addr: &str, ns: &str, mode: Mode, timeout: Duration) -> Result<Client> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, ns, mode))
            .await
            .map_err(|_| "connect timed out")?
    }

    async fn connect_inner(addr: &str, ns: &str, mode: Mode) -> Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let url = match mode {
            Mode::SocketIo => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
            Mode::Raw => format!("ws://{addr}/"),
        };
        // tungstenite's default 128 KiB buffers each way would make the load generator, not the
        // server, the memory hog at 10k clients; the contract's packets are small.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096);
        let (ws, _) = client_async_with_config(url, tcp, Some(config)).await?;
        let ns_prefix = ns_prefix(ns);
        let mut client = Client {
            ws,
            mode,
            ns_prefix,
        };
        if mode == Mode::Raw {
            return Ok(client);
        }
        let open = client.next_text().await?;
        if !open.starts_with('0') {
            return Err(format!("expected an Engine.IO open packet, got {:.60}", &*open).into());
        }
        let connect = format!("40{}", client.ns_prefix);
        client.send(connect).await?;
        loop {
            let packet = client.next_text().await?;
            if let Some(rest) = packet.strip_prefix("40") {
                if rest.starts_with(client.ns_prefix.as_str()) {
                    return Ok(client);
                }
            } else if packet.starts_with("44") {
                return Err(format!("CONNECT refused: {:.60}", &*packet).into());
            }
        }
    }

    /// The next text packet that is not an Engine.IO ping (pings are answered on the way).
    pub async fn next_text(&mut self) -> Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if self.mode == Mode::Raw {
                        return Ok(text);
                    } else if &*text == "2" {
                        self.ws.send(Message::text("3")).await?;
                    } else if text.starts_with('1') {
                        return Err("the server closed the Engine.IO session".into());
                    } else {
                        return Ok(text);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err("the server closed the websocket".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Queues a packet without flushing; see [`Client::flush`].
    pub async fn feed(&mut self, packet: String) -> Result<()> {
        Ok(self.ws.feed(Message::text(packet)).await?)
    }

    pub async fn flush(&mut self) -> Result<()> {
        Ok(self.ws.flush().await?)
    }

    pub async fn send(&mut self, packet: String) -> Result<()> {
        Ok(self.ws.send(Message::text(packet)).await?)
    }

    /// An `echo` with ack `id` (`42<id>["echo",<payload>]`; raw: `e<id>|<payload>`).
    pub fn echo(&self, id: u64, payload: &str) -> String {
        match self.mode {
            Mode::SocketIo => socketio_event(&self.ns_prefix, Some(id), "echo", payload),
            Mode::Raw => format!("e{id}|{payload}"),
        }
    }

    /// A `broadcast` (`42["broadcast",<payload>]`; raw: `b<payload>`).
    pub fn broadcast(&self, payload: &str) -> String {
        match self.mode {
            Mode::SocketIo => socketio_event(&self.ns_prefix, None, "broadcast", payload),
            Mode::Raw => format!("b{payload}"),
        }
    }

    /// The id of an echo's answer (`43<id>[...]` of this client's namespace; raw: `e<id>|...`).
    pub fn ack_id(&self, packet: &str) -> Option<u64> {
        match self.mode {
            Mode::SocketIo => socketio_ack_id(&self.ns_prefix, packet),
            Mode::Raw => packet.strip_prefix('e')?.split_once('|')?.0.parse().ok(),
        }
    }

    /// The payload of a broadcast received (`42["bcast",...]` of this client's namespace, the
    /// whole array; raw: what follows the `b`).
    pub fn bcast<'a>(&self, packet: &'a str) -> Option<&'a str> {
        match self.mode {
            Mode::SocketIo => packet
                .strip_prefix("42")?
                .strip_prefix(&*self.ns_prefix)
                .filter(|rest| rest.starts_with("[\"bcast\"")),
            Mode::Raw => packet.strip_prefix('b'),
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// What follows the packet type in a packet of namespace `ns`: empty for `/`, `"/custom,"` for
/// `/custom`.
pub fn ns_prefix(ns: &str) -> String {
    if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    }
}

/// `42[<event>,<arg>]` (with `id`: `42<id>[...]`) in the namespace whose prefix is `ns_prefix`.
pub fn socketio_event(ns_prefix: &str, id: Option<u64>, event: &str, arg: &str) -> String {
    let id = id.map(|id| id.to_string()).unwrap_or_default();
    format!("42{ns_prefix}{id}[\"{event}\",{arg}]")
}

/// The id of an ack packet (`43<id>[...]`) in the namespace whose prefix is `ns_prefix`.
pub fn socketio_ack_id(ns_prefix: &str, packet: &str) -> Option<u64> {
    let rest = packet.strip_prefix("43")?.strip_prefix(ns_prefix)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..digits].parse().ok()
}

/// Microseconds since the Unix epoch: the `t` of the contract's payloads.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The contract's payload `{"t": <µs since the epoch>, "p": "<padding>"}`, stamped now.
pub fn payload(padding: &str) -> String {
    format!("{{\"t\":{},\"p\":\"{padding}\"}}", now_us())
}

/// The `t` of a payload somewhere in `json` (servers may reorder keys or add whitespace).
pub fn payload_t(json: &str) -> Option<u64> {
    let start = json.find("\"t\"")? + 3;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{payload_t, socketio_ack_id, socketio_event};

    #[test]
    fn socketio_packets() {
        assert_eq!(
            socketio_event("", Some(7), "echo", "{}"),
            r#"427["echo",{}]"#
        );
        assert_eq!(
            socketio_event("/custom,", None, "broadcast", "1"),
            r#"42/custom,["broadcast",1]"#
        );
        assert_eq!(socketio_ack_id("", r#"4312[{"t":1}]"#), Some(12));
        assert_eq!(socketio_ack_id("/custom,", r#"43/custom,3[1]"#), Some(3));
        assert_eq!(socketio_ack_id("", r#"42["bcast",1]"#), None);
    }

    #[test]
    fn finds_t_whatever_the_key_order() {
        assert_eq!(payload_t(r#"["bcast",{"t":123,"p":"xx"}]"#), Some(123));
        assert_eq!(payload_t(r#"["bcast",{"p":"xx", "t" : 45}]"#), Some(45));
        assert_eq!(payload_t(r#"["bcast",{"p":"xx"}]"#), None);
    }
}
