//! The incoming half of a WebSocket accepted on this node: the bytes the connection reads are
//! decoded into messages with actix-http's frame codec, fragmented messages put together, and
//! every message bounded by `max_payload`.
//!
//! actix-ws did this before, but its `handle` also makes a `Session` whose channel (1.8 KB)
//! and response body every connection paid for while sio writes through
//! [`Outbound`](super::outbound::Outbound). Here the decoder owns nothing but the bytes of a
//! frame that has not fully arrived: an idle connection holds no buffer.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Decoder as _;
use actix_http::ws::{CloseCode, Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

use super::websocket::Incoming;

/// Decodes a client's WebSocket frames from the bytes of its connection.
#[derive(Debug)]
pub(super) struct Decoder {
    codec: Codec,
    /// Bytes read and not decoded yet: at most one frame's worth.
    buf: BytesMut,
    /// The fragments of a message that has not ended yet.
    partial: Option<Partial>,
    max: usize,
    /// The message that failed the connection: nothing is decoded after it.
    failed: bool,
}

#[derive(Debug)]
struct Partial {
    text: bool,
    data: BytesMut,
}

impl Decoder {
    /// A decoder of a client's frames (masked, as RFC 6455 requires), refusing messages of
    /// more than `max` bytes, whole or put together.
    pub(super) fn new(max: usize) -> Self {
        Decoder {
            codec: Codec::new().max_size(max),
            buf: BytesMut::new(),
            partial: None,
            max,
            failed: false,
        }
    }

    /// Takes bytes the connection read.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete message in what was fed, if there is one.
    pub(super) fn decode(&mut self) -> Option<Incoming> {
        if self.failed {
            return None;
        }
        loop {
            // actix-http's codec checks a frame's length against the limit only once the whole
            // frame is in: a client announcing a huge frame could make it buffer without end.
            if announced_len(&self.buf).is_some_and(|len| len > self.max as u64) {
                tracing::debug!("WebSocket frame announced over max_payload");
                return Some(self.fail(CloseCode::Size));
            }
            let frame = match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if self.buf.is_empty() {
                        // What a frame left behind goes back to the allocator: an idle
                        // connection keeps no buffer.
                        self.buf = BytesMut::new();
                    }
                    return None;
                }
                Err(err) => {
                    tracing::debug!(%err, "WebSocket protocol error");
                    return Some(self.fail(match err {
                        ProtocolError::Overflow => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    }));
                }
            };
            let message = match frame {
                Frame::Text(data) => text(data),
                Frame::Binary(data) => Incoming::Binary(data),
                Frame::Ping(data) => Incoming::Ping(data),
                Frame::Pong(_) => Incoming::Pong,
                Frame::Close(_) => Incoming::Closed,
                Frame::Continuation(item) => match self.continuation(item) {
                    Some(message) => message,
                    None => continue,
                },
            };
            if let Incoming::Failed(code) = message {
                return Some(self.fail(code));
            }
            return Some(message);
        }
    }

    /// Adds a fragment to the message under way; the message once it is whole.
    fn continuation(&mut self, item: Item) -> Option<Incoming> {
        let (first, data, last) = match item {
            Item::FirstText(data) => (Some(true), data, false),
            Item::FirstBinary(data) => (Some(false), data, false),
            Item::Continue(data) => (None, data, false),
            Item::Last(data) => (None, data, true),
        };
        // The codec refuses a first fragment while another message is under way, and a
        // continuation without one; the checks here are for what it lets through.
        let partial = match (first, &mut self.partial) {
            (Some(text), None) => self.partial.insert(Partial {
                text,
                data: BytesMut::new(),
            }),
            (None, Some(partial)) => partial,
            _ => return Some(Incoming::Failed(CloseCode::Protocol)),
        };
        if partial.data.len() + data.len() > self.max {
            return Some(Incoming::Failed(CloseCode::Size));
        }
        partial.data.extend_from_slice(&data);
        if !last {
            return None;
        }
        let Partial {
            text: is_text,
            data,
        } = self.partial.take()?;
        Some(if is_text {
            text(data.freeze())
        } else {
            Incoming::Binary(data.freeze())
        })
    }

    /// Fails the connection: nothing is decoded or kept after this.
    fn fail(&mut self, code: CloseCode) -> Incoming {
        self.failed = true;
        self.buf = BytesMut::new();
        self.partial = None;
        Incoming::Failed(code)
    }
}

/// The payload length the frame at the start of `buf` announces, once its header has come
/// that far (RFC 6455 §5.2: 7 bits, or 16 or 64 more).
fn announced_len(buf: &[u8]) -> Option<u64> {
    let len = buf.get(1)? & 0x7f;
    match len {
        126 => Some(u64::from(u16::from_be_bytes(
            buf.get(2..4)?.try_into().ok()?,
        ))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        len => Some(u64::from(len)),
    }
}

/// A text message, or the failure RFC 6455 asks for when it is not UTF-8 (1007).
fn text(data: Bytes) -> Incoming {
    match ByteString::try_from(data) {
        Ok(text) => Incoming::Text(text),
        Err(_) => Incoming::Failed(CloseCode::Invalid),
    }
}

/// A client's WebSocket messages, read from the request's payload: the bytes actix-http's
/// dispatcher (or, on `server::Server`, sio's upgraded connection) read from the socket.
pub(super) struct Inbound<S> {
    payload: S,
    decoder: Decoder,
    ended: bool,
}

impl<S, E> Inbound<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub(super) fn new(payload: S, max: usize) -> Self {
        Inbound {
            payload,
            decoder: Decoder::new(max),
            ended: false,
        }
    }

    /// The next message; `Closed` once the connection is gone.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        loop {
            if let Some(message) = self.decoder.decode() {
                return Poll::Ready(message);
            }
            if self.ended {
                return Poll::Ready(Incoming::Closed);
            }
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => self.decoder.feed(&bytes),
                Poll::Ready(Some(Err(err))) => {
                    tracing::debug!(%err, "WebSocket connection failed");
                    self.ended = true;
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The next message (cancel-safe: nothing is lost when the future is dropped).
    pub(super) async fn next(&mut self) -> Incoming {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::Encoder as _;
    use actix_http::ws::Message;

    use super::*;

    /// `message` as a client puts it on the wire (masked).
    fn client_frame(message: Message) -> BytesMut {
        let mut buf = BytesMut::new();
        Codec::new()
            .client_mode()
            .encode(message, &mut buf)
            .unwrap();
        buf
    }

    // Opcodes as on the wire (RFC 6455 §5.2); `| FIN` marks a message's last frame.
    const CONTINUE: u8 = 0x0;
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const PING: u8 = 0x9;
    const FIN: u8 = 0x80;

    /// A raw masked frame (zero mask) with the given first byte.
    fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut frame = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    fn decoded(decoder: &mut Decoder) -> Vec<Incoming> {
        std::iter::from_fn(|| decoder.decode()).collect()
    }

    #[test]
    fn messages_split_anywhere_come_out_whole_and_in_order() {
        let mut wire = client_frame(Message::Text("40".into()));
        wire.extend_from_slice(&client_frame(Message::Binary(Bytes::from_static(
            b"\x01\x02",
        ))));
        wire.extend_from_slice(&client_frame(Message::Ping(Bytes::from_static(b"p"))));
        for split in 0..wire.len() {
            let mut decoder = Decoder::new(100);
            decoder.feed(&wire[..split]);
            let mut out = decoded(&mut decoder);
            decoder.feed(&wire[split..]);
            out.extend(decoded(&mut decoder));
            assert!(
                matches!(&out[..], [
                    Incoming::Text(t),
                    Incoming::Binary(b),
                    Incoming::Ping(p),
                ] if t == "40" && &b[..] == b"\x01\x02" && &p[..] == b"p"),
                "split at {split}: {out:?}"
            );
        }
    }

    #[test]
    fn fragments_are_put_together_around_control_frames() {
        let mut decoder = Decoder::new(100);
        decoder.feed(&raw_frame(TEXT, b"4h"));
        decoder.feed(&raw_frame(FIN | PING, b""));
        decoder.feed(&raw_frame(CONTINUE, b"el"));
        decoder.feed(&raw_frame(FIN | CONTINUE, b"lo"));
        let out = decoded(&mut decoder);
        assert!(
            matches!(&out[..], [Incoming::Ping(_), Incoming::Text(t)] if t == "4hello"),
            "{out:?}"
        );
    }

    #[test]
    fn a_message_over_the_limit_fails_with_1009_whole_or_in_fragments() {
        let mut decoder = Decoder::new(3);
        decoder.feed(&client_frame(Message::Text("4abc".into())));
        assert!(matches!(
            decoded(&mut decoder)[..],
            [Incoming::Failed(CloseCode::Size)]
        ));
        let mut decoder = Decoder::new(3);
        decoder.feed(&raw_frame(BINARY, b"ab"));
        decoder.feed(&raw_frame(FIN | CONTINUE, b"cd"));
        decoder.feed(&client_frame(Message::Text("4".into())));
        // Nothing is decoded after the failure.
        assert!(matches!(
            decoded(&mut decoder)[..],
            [Incoming::Failed(CloseCode::Size)]
        ));
    }

    #[test]
    fn a_frame_announcing_more_than_the_limit_fails_before_its_payload_comes() {
        for header in [
            vec![FIN | TEXT, 0x80 | 126, 0x01, 0x00, 0, 0, 0, 0],
            vec![FIN | BINARY, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![
                TEXT,
                0x80 | 127,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
            ],
        ] {
            let mut decoder = Decoder::new(255);
            decoder.feed(&header);
            assert!(
                matches!(
                    decoded(&mut decoder)[..],
                    [Incoming::Failed(CloseCode::Size)]
                ),
                "{header:?}"
            );
            // What follows is not kept.
            decoder.feed(&[0; 4096]);
            assert!(decoded(&mut decoder).is_empty());
            assert_eq!(decoder.buf.capacity(), 0);
        }
        // Exactly at the limit, and a header that has not fully come, are not failures.
        let mut decoder = Decoder::new(255);
        decoder.feed(&[FIN | TEXT, 0x80 | 126, 0x00]);
        assert!(decoded(&mut decoder).is_empty());
        decoder.feed(&[0xff, 0, 0, 0, 0]);
        decoder.feed(&[b'4'; 255]);
        assert!(matches!(decoded(&mut decoder)[..], [Incoming::Text(_)]));
    }

    #[test]
    fn text_that_is_not_utf8_fails_with_1007() {
        let mut decoder = Decoder::new(100);
        decoder.feed(&raw_frame(FIN | TEXT, b"4\xff"));
        assert!(matches!(
            decoded(&mut decoder)[..],
            [Incoming::Failed(CloseCode::Invalid)]
        ));
    }

    #[test]
    fn broken_frames_fail_with_1002() {
        // Unmasked, a continuation without a start, a reserved opcode.
        for wire in [
            vec![0x81, 0x01, b'4'],
            raw_frame(FIN | CONTINUE, b"x"),
            raw_frame(FIN | 0x3, b""),
        ] {
            let mut decoder = Decoder::new(100);
            decoder.feed(&wire);
            assert!(
                matches!(
                    decoded(&mut decoder)[..],
                    [Incoming::Failed(CloseCode::Protocol)]
                ),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn a_close_frame_ends_the_messages_and_no_buffer_is_kept_when_idle() {
        let mut decoder = Decoder::new(100);
        decoder.feed(&client_frame(Message::Text("2".into())));
        assert!(matches!(decoded(&mut decoder)[..], [Incoming::Text(_)]));
        assert_eq!(decoder.buf.capacity(), 0);
        decoder.feed(&client_frame(Message::Close(None)));
        assert!(matches!(decoded(&mut decoder)[..], [Incoming::Closed]));
    }

    #[tokio::test]
    async fn the_payload_ending_closes() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(client_frame(Message::Text("4a".into())).freeze()),
            Ok(Bytes::from_static(&[0x81])),
        ];
        let mut inbound = Inbound::new(futures_util::stream::iter(chunks), 100);
        assert!(matches!(inbound.next().await, Incoming::Text(t) if t == "4a"));
        assert!(matches!(inbound.next().await, Incoming::Closed));
    }
}
