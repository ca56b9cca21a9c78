//! Text (and binary attachments) to packets, with the checks of socket.io-parser's
//! `isPacketValid` and explicit limits on attachments.

use bytes::Bytes;
use serde_json::Value;

use super::{Packet, PacketData, kind};

/// Event names the protocol reserves: clients may not send them, and servers do not emit
/// them as events.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Limits on what one packet may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Binary attachments in one packet. Default 10.
    pub max_attachments: usize,
    /// Bytes of all attachments of one packet together. Default 10 MB.
    pub max_attachment_bytes: usize,
    /// Bytes of a namespace or event name. Default 256 (Node: no limit). JSON nesting is
    /// bounded too, at 128 levels, by the JSON and MessagePack readers.
    pub max_name_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: 10,
            max_attachment_bytes: 10_000_000,
            max_name_len: 256,
        }
    }
}

impl Limits {
    /// Limits with the given maximum number of attachments per packet.
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }

    /// Limits with the given maximum attachment bytes per packet.
    pub fn max_attachment_bytes(mut self, n: usize) -> Self {
        self.max_attachment_bytes = n;
        self
    }

    /// Limits with the given maximum length of namespace and event names, in bytes.
    pub fn max_name_len(mut self, n: usize) -> Self {
        self.max_name_len = n;
        self
    }

    /// Checks the namespace and event name of a decoded packet against `max_name_len`.
    pub(super) fn check_names(&self, packet: &Packet) -> Result<(), ParseError> {
        let event = match &packet.data {
            PacketData::Event { args, .. } => args
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str),
            _ => None,
        };
        if packet.ns.len() > self.max_name_len || event.is_some_and(|e| e.len() > self.max_name_len)
        {
            return Err(ParseError::NameTooLong);
        }
        Ok(())
    }
}

/// Why a message is not a valid Socket.IO packet. The connection that sent it is closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// An empty text message.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count of a binary packet is missing, malformed, zero or over the limit.
    #[error("invalid attachment count")]
    Attachments,
    /// The ack id is not a number that fits in 64 bits.
    #[error("invalid ack id")]
    AckId,
    /// The JSON payload does not parse.
    #[error("invalid JSON payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload does not fit the packet type (e.g. an event that is not an array).
    #[error("invalid payload for the packet type")]
    Payload,
    /// A binary message arrived when no attachment was expected.
    #[error("unexpected binary message")]
    UnexpectedBinary,
    /// A text packet arrived while attachments of the previous one were still expected.
    #[error("text packet while attachments were expected")]
    PendingAttachments,
    /// The attachments are larger than the limit.
    #[error("attachments too large")]
    AttachmentsTooLarge,
    /// A placeholder refers to an attachment that does not exist.
    #[error("invalid attachment placeholder")]
    Placeholder,
    /// A text message reached a parser that only takes binary ones (MessagePack).
    #[error("unexpected text message")]
    UnexpectedText,
    /// A namespace or event name longer than [`Limits::max_name_len`].
    #[error("namespace or event name too long")]
    NameTooLong,
    /// A binary message is not a MessagePack packet map.
    #[error("invalid MessagePack packet")]
    MsgPack,
}

/// Decodes the packets of one connection. Binary packets span several messages, so the decoder
/// keeps the packet whose attachments are still arriving.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    parser: super::Parser,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            parser: super::Parser::Json,
            pending: None,
        }
    }

    /// The same decoder for another packet format.
    pub fn with_parser(mut self, parser: super::Parser) -> Self {
        self.parser = parser;
        self
    }

    /// Decodes a text message. `Ok(None)`: a binary packet whose attachments come next.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        if self.parser != super::Parser::Json {
            return Err(ParseError::UnexpectedText);
        }
        if self.pending.is_some() {
            self.pending = None;
            return Err(ParseError::PendingAttachments);
        }
        let (packet, expected) = parse(text, &self.limits)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Pending {
            packet,
            expected,
            attachments: Vec::with_capacity(expected),
            bytes: 0,
        });
        Ok(None)
    }

    /// Decodes a binary message: the next attachment of the pending binary packet. Returns the
    /// packet once its last attachment is in.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, ParseError> {
        #[cfg(feature = "msgpack")]
        if self.parser == super::Parser::MsgPack {
            return super::msgpack::decode(&data, &self.limits).map(Some);
        }
        let mut pending = self.pending.take().ok_or(ParseError::UnexpectedBinary)?;
        pending.bytes += data.len();
        if pending.bytes > self.limits.max_attachment_bytes {
            return Err(ParseError::AttachmentsTooLarge);
        }
        pending.attachments.push(data);
        if pending.attachments.len() < pending.expected {
            self.pending = Some(pending);
            return Ok(None);
        }
        let mut packet = pending.packet;
        match &mut packet.data {
            PacketData::Event { attachments, .. } | PacketData::Ack { attachments, .. } => {
                *attachments = pending.attachments;
            }
            _ => return Err(ParseError::Attachments),
        }
        Ok(Some(packet))
    }
}

/// Parses the text of a packet; returns it with the number of attachments to wait for.
fn parse(text: &str, limits: &Limits) -> Result<(Packet, usize), ParseError> {
    let kind = *text.as_bytes().first().ok_or(ParseError::Empty)?;
    let mut rest = text.get(1..).ok_or(ParseError::UnknownType)?;
    if !(kind::CONNECT..=kind::BINARY_ACK).contains(&kind) {
        return Err(ParseError::UnknownType);
    }
    let binary = kind == kind::BINARY_EVENT || kind == kind::BINARY_ACK;
    let mut expected = 0;
    if binary {
        let (count, after) = rest.split_once('-').ok_or(ParseError::Attachments)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Attachments);
        }
        expected = count.parse().map_err(|_| ParseError::Attachments)?;
        if expected == 0 || expected > limits.max_attachments {
            return Err(ParseError::Attachments);
        }
        rest = after;
    }
    let mut ns = "/";
    if rest.starts_with('/') {
        match rest.split_once(',') {
            Some((name, after)) => {
                ns = name;
                rest = after;
            }
            None => {
                ns = rest;
                rest = "";
            }
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, payload) = rest.split_at(digits);
    let id = if id.is_empty() {
        None
    } else {
        Some(id.parse::<u64>().map_err(|_| ParseError::AckId)?)
    };
    let payload: Option<Value> = if payload.is_empty() {
        None
    } else {
        Some(serde_json::from_str(payload)?)
    };
    let data = match (kind, payload) {
        (kind::CONNECT, None) if id.is_none() => PacketData::Connect(None),
        (kind::CONNECT, Some(p @ Value::Object(_))) if id.is_none() => PacketData::Connect(Some(p)),
        (kind::DISCONNECT, None) if id.is_none() => PacketData::Disconnect,
        (kind::CONNECT_ERROR, Some(p @ (Value::Object(_) | Value::String(_)))) => {
            PacketData::ConnectError(p)
        }
        (kind::EVENT | kind::BINARY_EVENT, Some(args)) if is_event(&args) => PacketData::Event {
            args,
            id,
            attachments: Vec::new(),
        },
        (kind::ACK | kind::BINARY_ACK, Some(args @ Value::Array(_))) => PacketData::Ack {
            args,
            id: id.ok_or(ParseError::AckId)?,
            attachments: Vec::new(),
        },
        _ => return Err(ParseError::Payload),
    };
    if binary {
        let args = match &data {
            PacketData::Event { args, .. } | PacketData::Ack { args, .. } => args,
            _ => return Err(ParseError::Payload),
        };
        if !placeholders_in_range(args, expected) {
            return Err(ParseError::Placeholder);
        }
    }
    let packet = Packet {
        ns: ns.to_owned(),
        data,
    };
    limits.check_names(&packet)?;
    Ok((packet, expected))
}

/// An event payload: an array whose first element is a name a client may send, or a number.
pub(super) fn is_event(args: &Value) -> bool {
    match args.as_array().and_then(|a| a.first()) {
        Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

/// Whether every placeholder refers to one of the `count` attachments.
fn placeholders_in_range(value: &Value, count: usize) -> bool {
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => map
            .get("num")
            .and_then(Value::as_u64)
            .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n < count)),
        Value::Object(map) => map.values().all(|v| placeholders_in_range(v, count)),
        Value::Array(items) => items.iter().all(|v| placeholders_in_range(v, count)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::encode;
    use proptest::prelude::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Option<Packet>, ParseError> {
        Decoder::new(Limits::default()).decode_text(text)
    }

    fn packet(text: &str) -> Packet {
        decode(text).unwrap().unwrap()
    }

    #[test]
    fn decodes_the_suite_frames() {
        assert_eq!(packet("0").data, PacketData::Connect(None));
        assert_eq!(packet("0").ns, "/");
        assert_eq!(
            packet(r#"0{"token":"123"}"#).data,
            PacketData::Connect(Some(json!({"token": "123"})))
        );
        let custom = packet("0/custom,");
        assert_eq!(
            (custom.ns.as_str(), custom.data),
            ("/custom", PacketData::Connect(None))
        );
        assert_eq!(packet("0/random").ns, "/random");
        assert_eq!(packet("1/custom").data, PacketData::Disconnect);
        assert_eq!(
            packet(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#).data,
            PacketData::Event {
                args: json!(["message-with-ack", 1, "2", {"3": [false]}]),
                id: Some(456),
                attachments: vec![]
            }
        );
    }

    #[test]
    fn names_and_nesting_are_bounded() {
        let long = "x".repeat(257);
        assert!(matches!(
            decode(&format!(r#"2["{long}"]"#)),
            Err(ParseError::NameTooLong)
        ));
        assert!(matches!(
            decode(&format!("0/{long}")),
            Err(ParseError::NameTooLong)
        ));
        assert!(decode(&format!(r#"2["{}"]"#, "x".repeat(256))).is_ok());
        let deep = format!(r#"2["e",{}{}]"#, "[".repeat(200), "]".repeat(200));
        assert!(matches!(decode(&deep), Err(ParseError::Json(_))));
    }

    #[test]
    fn decodes_engine_message_data() {
        // The decoder gets the Engine.IO message data: `4abc` on the wire is `abc` here.
        assert!(matches!(decode("abc"), Err(ParseError::UnknownType)));
    }

    #[test]
    fn binary_packets_wait_for_their_attachments() {
        let mut d = Decoder::new(Limits::default());
        let text = r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert!(d.decode_text(text).unwrap().is_none());
        assert!(
            d.decode_binary(Bytes::from_static(&[1, 2, 3]))
                .unwrap()
                .is_none()
        );
        let p = d
            .decode_binary(Bytes::from_static(&[4, 5, 6]))
            .unwrap()
            .unwrap();
        let (again, bins) = encode(&p);
        assert_eq!(again, text);
        assert_eq!(
            bins,
            vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4, 5, 6])
            ]
        );
    }

    #[test]
    fn rejects_invalid_packets() {
        let bad = [
            "",
            "7",
            "abc",
            "2{}",
            "2[]",
            "2abc[\"x\"]",
            "2[\"connect\"]",
            "2[true]",
            "0[1]",
            "01",
            "1{}",
            "3[1]",
            "3{}",
            "4[1]",
            "5[\"x\"]",
            "50-[\"x\"]",
            "511-[\"x\"]",
            "5a-[\"x\"]",
            "51-[\"x\",{\"_placeholder\":true,\"num\":1}]",
            "299999999999999999999999[\"x\"]",
        ];
        for text in bad {
            assert!(decode(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn stray_and_missing_attachments_are_errors() {
        let mut d = Decoder::new(Limits::default());
        assert!(matches!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(ParseError::UnexpectedBinary)
        ));
        assert!(
            d.decode_text(r#"51-["x",{"_placeholder":true,"num":0}]"#)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            d.decode_text("0"),
            Err(ParseError::PendingAttachments)
        ));
        let mut d = Decoder::new(Limits::default().max_attachment_bytes(2));
        assert!(
            d.decode_text(r#"51-["x",{"_placeholder":true,"num":0}]"#)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            d.decode_binary(Bytes::from_static(b"abc")),
            Err(ParseError::AttachmentsTooLarge)
        ));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9 ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        let ns = prop_oneof![Just("/".to_string()), "/[a-z0-9_-]{1,8}"];
        let data = prop_oneof![
            Just(PacketData::Connect(None)),
            prop::collection::btree_map("[a-z]{1,4}", any_json(), 0..3)
                .prop_map(|m| PacketData::Connect(Some(Value::Object(m.into_iter().collect())))),
            Just(PacketData::Disconnect),
            (
                "[a-z]{1,8}",
                prop::collection::vec(any_json(), 0..3),
                any::<Option<u64>>()
            )
                .prop_map(|(name, mut rest, id)| {
                    rest.insert(0, Value::from(name));
                    PacketData::Event {
                        args: Value::from(rest),
                        id,
                        attachments: vec![],
                    }
                }),
            (
                prop::collection::vec(any_json(), 0..3),
                any::<u64>(),
                0usize..3
            )
                .prop_map(|(mut args, id, n)| {
                    for num in 0..n {
                        args.push(json!({"_placeholder": true, "num": num}));
                    }
                    let attachments = (0..n).map(|i| Bytes::from(vec![i as u8; i])).collect();
                    PacketData::Ack {
                        args: Value::from(args),
                        id,
                        attachments,
                    }
                }),
            "[a-z ]{0,10}".prop_map(|m| PacketData::ConnectError(json!({"message": m}))),
        ];
        (ns, data).prop_map(|(ns, data)| Packet { ns, data })
    }

    proptest! {
        #[test]
        fn packets_round_trip(p in any_packet()) {
            let (text, bins) = encode(&p);
            let mut d = Decoder::new(Limits::default());
            let mut out = d.decode_text(&text).unwrap();
            for bin in bins {
                prop_assert!(out.is_none());
                out = d.decode_binary(bin).unwrap();
            }
            prop_assert_eq!(out, Some(p));
        }

        #[test]
        fn any_text_decodes_or_errors(s in any::<String>()) {
            let _ = decode(&s);
        }

        #[test]
        fn any_frames_decode_or_error(frames in prop::collection::vec(
            prop_oneof![
                any::<String>().prop_map(Ok),
                "5[0-9]-\\[\"x\"(,\\{\"_placeholder\":true,\"num\":[0-9]\\})*\\]".prop_map(Ok),
                any::<Vec<u8>>().prop_map(Err),
            ], 0..8)) {
            let mut d = Decoder::new(Limits::default());
            for frame in frames {
                let _ = match frame {
                    Ok(text) => d.decode_text(&text),
                    Err(bin) => d.decode_binary(bin.into()),
                };
            }
        }
    }
}
