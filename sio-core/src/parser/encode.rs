//! Packet to text (and binary attachments).

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;

use super::{Packet, PacketData, kind};

/// Encodes a packet: its text message, and the binary messages that follow it, in order.
///
/// ```
/// use sio_core::parser::{Packet, PacketData, encode};
/// use serde_json::json;
///
/// let packet = Packet {
///     ns: "/custom".into(),
///     data: PacketData::Connect(Some(json!({"sid": "x"}))),
/// };
/// assert_eq!(encode(&packet), (r#"0/custom,{"sid":"x"}"#.to_string(), vec![]));
/// ```
pub fn encode(packet: &Packet) -> (String, Vec<Bytes>) {
    encode_after(String::new(), packet)
}

/// Encodes a packet as the text of its Engine.IO message frame (`4` then the packet), so that
/// the frame is built in one buffer instead of being copied behind its prefix.
pub(crate) fn encode_message(packet: &Packet) -> (String, Vec<Bytes>) {
    encode_after(String::from("4"), packet)
}

/// Appends the packet's text to `out`: the JSON is serialized into the same buffer.
fn encode_after(mut out: String, packet: &Packet) -> (String, Vec<Bytes>) {
    let (kind, payload, id, attachments): (u8, Option<&Value>, Option<u64>, &[Bytes]) =
        match &packet.data {
            PacketData::Connect(payload) => (kind::CONNECT, payload.as_ref(), None, &[]),
            PacketData::Disconnect => (kind::DISCONNECT, None, None, &[]),
            PacketData::Event {
                args,
                id,
                attachments,
            } => {
                let kind = if attachments.is_empty() {
                    kind::EVENT
                } else {
                    kind::BINARY_EVENT
                };
                (kind, Some(args), *id, attachments)
            }
            PacketData::Ack {
                args,
                id,
                attachments,
            } => {
                let kind = if attachments.is_empty() {
                    kind::ACK
                } else {
                    kind::BINARY_ACK
                };
                (kind, Some(args), Some(*id), attachments)
            }
            PacketData::ConnectError(payload) => (kind::CONNECT_ERROR, Some(payload), None, &[]),
        };
    // Room for a small event without growing; a larger one doubles from there.
    out.reserve(64 + packet.ns.len());
    out.push(char::from(kind));
    // Writing to a String cannot fail.
    if !attachments.is_empty() {
        let _ = write!(out, "{}-", attachments.len());
    }
    if packet.ns != "/" {
        out.push_str(&packet.ns);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
    if let Some(payload) = payload {
        let mut bytes = out.into_bytes();
        // A `Value` always serializes, and as UTF-8: the check below never fails.
        let _ = serde_json::to_writer(&mut bytes, payload);
        out = String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
    }
    (out, attachments.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(ns: &str, data: PacketData) -> String {
        encode(&Packet {
            ns: ns.into(),
            data,
        })
        .0
    }

    #[test]
    fn the_message_frame_is_the_packet_behind_its_prefix() {
        let packet = Packet {
            ns: "/chat".into(),
            data: PacketData::Event {
                args: json!(["message", {"text": "hé", "n": [1, 2]}]),
                id: Some(12),
                attachments: vec![],
            },
        };
        let (frame, _) = encode_message(&packet);
        assert_eq!(frame, format!("4{}", encode(&packet).0));
        assert_eq!(frame, r#"42/chat,12["message",{"text":"hé","n":[1,2]}]"#);
    }

    #[test]
    fn encodes_the_suite_frames() {
        assert_eq!(
            text("/", PacketData::Connect(Some(json!({"sid": "x"})))),
            r#"0{"sid":"x"}"#
        );
        assert_eq!(
            text(
                "/random",
                PacketData::ConnectError(json!({"message": "Invalid namespace"}))
            ),
            r#"4/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            text(
                "/",
                PacketData::Ack {
                    args: json!([1, "2", {"3": [false]}]),
                    id: 456,
                    attachments: vec![]
                }
            ),
            r#"3456[1,"2",{"3":[false]}]"#
        );
        let placeholders =
            json!([{"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}]);
        let (t, bins) = encode(&Packet {
            ns: "/".into(),
            data: PacketData::Ack {
                args: placeholders,
                id: 789,
                attachments: vec![
                    Bytes::from_static(&[1, 2, 3]),
                    Bytes::from_static(&[4, 5, 6]),
                ],
            },
        });
        assert_eq!(
            t,
            r#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(bins.len(), 2);
        assert_eq!(text("/chat", PacketData::Disconnect), "1/chat,");
        assert_eq!(
            text(
                "/",
                PacketData::Event {
                    args: json!(["message-back", 1, "2", {"3": [true]}]),
                    id: None,
                    attachments: vec![]
                }
            ),
            r#"2["message-back",1,"2",{"3":[true]}]"#
        );
    }
}
