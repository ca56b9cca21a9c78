//! A minimal Engine.IO v4 long-polling client for `echo`, hand-written on two keep-alive
//! HTTP/1.1 connections like a browser's: one long-polls (GET), the other sends (POST, packets
//! separated by `\x1e`). Engine.IO pings (`2`) are left to the caller, who answers `3`.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{Result, ns_prefix};

/// The Engine.IO v4 packet separator in a polling payload.
const SEPARATOR: char = '\x1e';

/// One keep-alive HTTP/1.1 connection: one request at a time, `Content-Length` bodies.
struct Http {
    stream: BufReader<TcpStream>,
}

impl Http {
    async fn connect(addr: &str) -> Result<Http> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(tcp),
        })
    }

    /// Sends a request and reads the whole response; its body, if the status is 200.
    async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<String> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all((head + body).as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err("the server closed the HTTP connection".into());
            }
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break; // the blank line that ends the headers
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("{method}: chunked responses are not supported").into());
            }
        }
        let mut body = vec![0; length.ok_or_else(|| format!("{method}: no Content-Length"))?];
        self.stream.read_exact(&mut body).await?;
        let body = String::from_utf8(body)?;
        if status != "200" {
            return Err(format!("{method} answered {status}: {body:.60}").into());
        }
        Ok(body)
    }
}

/// The sending half: POSTs packets to the session.
pub struct Sender {
    http: Http,
    path: String,
}

impl Sender {
    /// One POST with `packets` separated by `\x1e`.
    pub async fn send(&mut self, packets: &[String]) -> Result<()> {
        let body = packets.join(&SEPARATOR.to_string());
        self.http.request("POST", &self.path, &body).await?;
        Ok(())
    }
}

/// The receiving half: long-polls the session.
pub struct Receiver {
    http: Http,
    path: String,
}

impl Receiver {
    /// The packets of the next GET, once the server has some.
    pub async fn poll(&mut self) -> Result<Vec<String>> {
        let body = self.http.request("GET", &self.path, "").await?;
        Ok(body.split(SEPARATOR).map(str::to_owned).collect())
    }
}

/// A connected session.
pub struct Session {
    pub sender: Sender,
    pub receiver: Receiver,
    /// Its namespace's prefix in packets (see [`ns_prefix`]).
    pub ns_prefix: String,
}

/// Engine.IO handshake (GET), Socket.IO CONNECT to `ns` (POST `40`) and its answer (GET).
pub async fn connect(addr: &str, ns: &str) -> Result<Session> {
    let mut get = Http::connect(addr).await?;
    let open = get
        .request("GET", "/socket.io/?EIO=4&transport=polling", "")
        .await?;
    let sid = open_sid(&open).ok_or_else(|| format!("expected an open packet, got {open:.60}"))?;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let prefix = ns_prefix(ns);
    let mut sender = Sender {
        http: Http::connect(addr).await?,
        path: path.clone(),
    };
    sender.send(&[format!("40{prefix}")]).await?;
    let mut receiver = Receiver { http: get, path };
    loop {
        for packet in receiver.poll().await? {
            if packet
                .strip_prefix("40")
                .is_some_and(|rest| rest.starts_with(&prefix))
            {
                return Ok(Session {
                    sender,
                    receiver,
                    ns_prefix: prefix,
                });
            } else if packet.starts_with("44") {
                return Err(format!("CONNECT refused: {packet:.60}").into());
            }
        }
    }
}

/// The session id of an Engine.IO open packet (`0{"sid":"…",…}`).
fn open_sid(packet: &str) -> Option<&str> {
    let json = packet.split(SEPARATOR).next()?.strip_prefix('0')?;
    let start = json.find("\"sid\"")? + 5;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split_once('"').map(|(sid, _)| sid)
}

#[cfg(test)]
mod tests {
    use super::open_sid;

    #[test]
    fn finds_the_sid() {
        let open =
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(open_sid(open), Some("lv_VI97HAXpY6yYWAAAC"));
        assert_eq!(
            open_sid("0{\"upgrades\":[], \"sid\" : \"a-b\"}\x1e40"),
            Some("a-b")
        );
        assert_eq!(open_sid(r#"40{"sid":"x"}"#), None);
    }
}
