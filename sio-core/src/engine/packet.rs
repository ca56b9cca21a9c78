//! Engine.IO v4 packets: the pure codec between one packet and one transport frame.
//!
//! A text packet is its type digit followed by its data (`4hello`); a binary message travels as a
//! raw binary WebSocket frame, or as `b` + base64 inside a polling payload (see
//! [`payload`](super::payload)).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet {
    /// `0`: the handshake, sent by the server when a session opens.
    Open(OpenPacket),
    /// `1`: the session is closing.
    Close,
    /// `2`: heartbeat request (server to client in v4).
    Ping,
    /// `3`: heartbeat answer.
    Pong,
    /// `2probe`: the client tests a WebSocket before upgrading to it.
    PingProbe,
    /// `3probe`: the server's answer to [`Packet::PingProbe`].
    PongProbe,
    /// `4`: a text message.
    Message(ByteString),
    /// A binary message (no type digit on the wire).
    Binary(Bytes),
    /// `5`: the client switches to the probed WebSocket.
    Upgrade,
    /// `6`: nothing; ends a long-poll that must return without data.
    Noop,
}

/// The data of the handshake packet, with the field names the clients expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to.
    pub upgrades: Vec<String>,
    /// Milliseconds between two pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer a ping.
    pub ping_timeout: u64,
    /// The largest payload, in bytes, the server accepts in one request or message.
    pub max_payload: u64,
}

/// One transport-level unit: a WebSocket frame, or one record of a polling payload.
///
/// Frames are what the outbound queue holds: a packet is encoded once, and a broadcast shares the
/// same bytes with every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame holding an encoded packet (`4hello`).
    Text(ByteString),
    /// A binary frame holding the raw bytes of a binary message.
    Binary(Bytes),
}

impl Frame {
    /// The frame of a text message: `4` followed by `data`.
    pub fn message(data: &str) -> Self {
        let mut s = String::with_capacity(data.len() + 1);
        s.push('4');
        s.push_str(data);
        Frame::Text(s.into())
    }

    /// The number of bytes this frame takes in a polling payload.
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        }
    }
}

/// Why bytes from a client are not an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty frame or an empty record in a polling payload.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A packet type that carries no data (or only `probe`) came with other data.
    #[error("packet type {0} carries unexpected data")]
    UnexpectedData(char),
    /// A `b`-prefixed polling record is not valid base64.
    #[error("invalid base64 in a binary packet")]
    Base64,
    /// A polling payload is not valid UTF-8.
    #[error("payload is not valid UTF-8")]
    Utf8,
    /// The handshake packet's JSON is malformed.
    #[error("invalid open packet")]
    Open,
    /// A record length of an Engine.IO v3 payload is missing or wrong.
    #[error("invalid record length")]
    Length,
}

/// Decodes one text packet (a text WebSocket frame, or a record of a polling payload that is not
/// binary). `Message` data shares `text`'s buffer.
pub fn decode_text(text: &ByteString) -> Result<Packet, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    let no_data = |p: Packet| {
        if data.is_empty() {
            Ok(p)
        } else {
            Err(DecodeError::UnexpectedData(kind))
        }
    };
    match kind {
        '0' => serde_json::from_str(data)
            .map(Packet::Open)
            .map_err(|_| DecodeError::Open),
        '1' => no_data(Packet::Close),
        '2' if data == "probe" => Ok(Packet::PingProbe),
        '2' => no_data(Packet::Ping),
        '3' if data == "probe" => Ok(Packet::PongProbe),
        '3' => no_data(Packet::Pong),
        '4' => Ok(Packet::Message(text.slice_ref(data))),
        '5' => no_data(Packet::Upgrade),
        '6' => no_data(Packet::Noop),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Decodes the base64 data of a `b`-prefixed polling record (without the `b`).
pub fn decode_base64(data: &str) -> Result<Packet, DecodeError> {
    BASE64
        .decode(data)
        .map(|b| Packet::Binary(b.into()))
        .map_err(|_| DecodeError::Base64)
}

/// Encodes a packet as the frame a WebSocket carries (and a polling payload records).
pub fn encode(packet: &Packet) -> Frame {
    let text = |s: &'static str| Frame::Text(ByteString::from_static(s));
    match packet {
        Packet::Open(open) => {
            // Serializing a struct of strings and integers cannot fail.
            let json = serde_json::to_string(open).unwrap_or_default();
            Frame::Text(format!("0{json}").into())
        }
        Packet::Close => text("1"),
        Packet::Ping => text("2"),
        Packet::Pong => text("3"),
        Packet::PingProbe => text("2probe"),
        Packet::PongProbe => text("3probe"),
        Packet::Message(data) => Frame::message(data),
        Packet::Binary(data) => Frame::Binary(data.clone()),
        Packet::Upgrade => text("5"),
        Packet::Noop => text("6"),
    }
}

/// Appends the base64 form of binary data to a polling payload (after its `b`).
pub(crate) fn encode_base64_into(data: &[u8], out: &mut String) {
    BASE64.encode_string(data, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(s: &str) -> Result<Packet, DecodeError> {
        decode_text(&ByteString::from(s))
    }

    #[test]
    fn decodes_every_client_packet() {
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("2"), Ok(Packet::Ping));
        assert_eq!(decode("3"), Ok(Packet::Pong));
        assert_eq!(decode("2probe"), Ok(Packet::PingProbe));
        assert_eq!(decode("3probe"), Ok(Packet::PongProbe));
        assert_eq!(decode("4hello"), Ok(Packet::Message("hello".into())));
        assert_eq!(decode("4"), Ok(Packet::Message("".into())));
        assert_eq!(decode("5"), Ok(Packet::Upgrade));
        assert_eq!(decode("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("abc"), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(decode("1x"), Err(DecodeError::UnexpectedData('1')));
        assert_eq!(decode("2ping"), Err(DecodeError::UnexpectedData('2')));
        assert_eq!(decode("0{"), Err(DecodeError::Open));
        assert_eq!(decode_base64("!!"), Err(DecodeError::Base64));
    }

    #[test]
    fn encodes_the_handshake_with_the_expected_keys_in_order() {
        let open = Packet::Open(OpenPacket {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 300,
            ping_timeout: 200,
            max_payload: 1_000_000,
        });
        assert_eq!(
            encode(&open),
            Frame::Text(
                r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
                    .into()
            )
        );
    }

    #[test]
    fn message_data_shares_the_frame_buffer() {
        let frame = ByteString::from("4shared");
        let Ok(Packet::Message(data)) = decode_text(&frame) else {
            panic!("not a message")
        };
        assert_eq!(data.as_bytes().as_ptr(), frame.as_bytes()[1..].as_ptr());
    }

    #[test]
    fn payload_len_matches_the_base64_form() {
        for n in 0..10 {
            let data = vec![7u8; n];
            let mut s = String::from("b");
            encode_base64_into(&data, &mut s);
            assert_eq!(Frame::Binary(data.into()).payload_len(), s.len());
        }
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            Just(Packet::Close),
            Just(Packet::Ping),
            Just(Packet::Pong),
            Just(Packet::PingProbe),
            Just(Packet::PongProbe),
            Just(Packet::Upgrade),
            Just(Packet::Noop),
            any::<String>().prop_map(|s| Packet::Message(s.into())),
            (any::<String>(), 0u64..u64::MAX).prop_map(|(sid, n)| Packet::Open(OpenPacket {
                sid,
                upgrades: vec![],
                ping_interval: n,
                ping_timeout: n / 2,
                max_payload: n / 3,
            })),
        ]
    }

    proptest! {
        #[test]
        fn text_packets_round_trip(packet in any_packet()) {
            let Frame::Text(text) = encode(&packet) else { panic!("text packet gave a binary frame") };
            prop_assert_eq!(decode_text(&text), Ok(packet));
        }

        #[test]
        fn any_text_decodes_or_errors(s in any::<String>()) {
            let _ = decode(&s);
        }

        #[test]
        fn any_base64_text_decodes_or_errors(s in "[A-Za-z0-9+/=!]{0,64}") {
            let _ = decode_base64(&s);
        }
    }
}
