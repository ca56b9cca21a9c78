//! The value layer shared by every message of Node's Redis adapters: JSON or MessagePack
//! (told apart by the first byte, as Node's receivers do), packets as `{type, data, nsp}`
//! objects, and broadcast options as `{rooms, except, flags}`.
//!
//! Messages are handled as sio's JSON shape: binary values become attachments with
//! placeholders on decoding and binary values again on encoding, so packets move between Redis
//! and sockets without another representation.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sio_core::parser::{Limits, Packet, PacketData, json_to_msgpack, msgpack_to_json};
use sio_core::{AckResponse, BroadcastOptions, RemoteSocket, Room};

/// Deepest nesting accepted in a MessagePack message, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Why a message from Redis could not be read. Such messages are skipped (and logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is neither JSON nor MessagePack.
    #[error("undecodable message: {0}")]
    Syntax(String),
    /// The message decodes but lacks a field its type needs, or has one of the wrong type.
    #[error("malformed message: {0}")]
    Shape(&'static str),
}

/// How a message is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    MsgPack,
}

/// A decoded message: its JSON shape and the binary values its placeholders refer to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) value: Value,
    pub(crate) attachments: Vec<Bytes>,
}

/// Decodes a message, JSON when it starts with `{` and MessagePack otherwise (Node's rule).
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.first() == Some(&b'{') {
        let value =
            serde_json::from_slice(bytes).map_err(|err| WireError::Syntax(err.to_string()))?;
        return Ok(Message {
            value,
            attachments: Vec::new(),
        });
    }
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|err| WireError::Syntax(err.to_string()))?;
    if !reader.is_empty() {
        return Err(WireError::Syntax("trailing bytes".into()));
    }
    // Other nodes are trusted with any number of attachments; Redis bounds message sizes.
    let limits = Limits::default()
        .max_attachments(usize::MAX)
        .max_attachment_bytes(usize::MAX);
    let mut attachments = Vec::new();
    let value = msgpack_to_json(value, &mut attachments, &limits)
        .map_err(|err| WireError::Syntax(err.to_string()))?;
    Ok(Message { value, attachments })
}

/// Encodes a message. JSON cannot carry binary, so callers choose MessagePack when
/// `attachments` is not empty.
pub(crate) fn encode(value: &Value, attachments: &[Bytes], format: Format) -> Vec<u8> {
    match format {
        // A `serde_json::Value` always serializes.
        Format::Json => serde_json::to_vec(value).unwrap_or_default(),
        Format::MsgPack => {
            let mut out = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut out, &json_to_msgpack(value, attachments));
            out
        }
    }
}

/// `{type: 2, data, nsp}`: an event packet as the adapters carry it (no ack id; binary inline).
pub(crate) fn packet_to_json(packet: &Packet) -> (Value, &[Bytes]) {
    match &packet.data {
        PacketData::Event {
            args, attachments, ..
        } => (
            json!({"type": 2, "data": args, "nsp": packet.ns}),
            attachments.as_slice(),
        ),
        // Only events travel between nodes.
        _ => (json!({"type": 2, "data": [], "nsp": packet.ns}), &[]),
    }
}

/// Reads an event packet object; `nsp` defaults to `/` as in Node.
pub(crate) fn packet_from_json(value: &Value, attachments: &[Bytes]) -> Result<Packet, WireError> {
    let args = value.get("data").ok_or(WireError::Shape("packet.data"))?;
    if !args
        .as_array()
        .and_then(|a| a.first())
        .is_some_and(Value::is_string)
    {
        return Err(WireError::Shape(
            "packet.data must start with an event name",
        ));
    }
    let ns = value.get("nsp").and_then(Value::as_str).unwrap_or("/");
    Ok(Packet {
        ns: ns.to_owned(),
        data: PacketData::Event {
            args: args.clone(),
            id: None,
            attachments: attachments.to_vec(),
        },
    })
}

/// `{rooms, except}` and, when given, `flags`: the options of a broadcast or a request. A
/// socket excluded by id is an excluded room, since every socket is in the room of its id.
pub(crate) fn opts_to_json(opts: &BroadcastOptions, flags: Option<Value>) -> Value {
    let mut except: Vec<Room> = opts.except.clone();
    if let Some(sid) = opts.except_sid {
        let sid = sid.to_string();
        if !except.contains(&sid) {
            except.push(sid);
        }
    }
    let mut map = Map::new();
    map.insert("rooms".into(), json!(opts.rooms));
    map.insert("except".into(), json!(except));
    if let Some(flags) = flags {
        map.insert("flags".into(), flags);
    }
    Value::Object(map)
}

/// Reads `{rooms, except}`; either may be missing. Rooms written as numbers by JavaScript
/// become their JavaScript text (`1`, `1.5`).
pub(crate) fn opts_from_json(value: Option<&Value>) -> BroadcastOptions {
    BroadcastOptions {
        rooms: value.map(|v| rooms_at(v, "rooms")).unwrap_or_default(),
        except: value.map(|v| rooms_at(v, "except")).unwrap_or_default(),
        except_sid: None,
    }
}

/// The room names in the array at `key` of an object (none when it is missing).
pub(crate) fn rooms_at(value: &Value, key: &str) -> Vec<Room> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|rooms| rooms.iter().filter_map(room_name).collect())
        .unwrap_or_default()
}

/// A room name as JavaScript would write it.
pub(crate) fn room_name(value: &Value) -> Option<Room> {
    match value {
        Value::String(room) => Some(room.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An ack as one value: Node's adapters carry only the first argument of an answer.
pub(crate) fn ack_to_json(ack: &AckResponse) -> Value {
    ack.args.first().cloned().unwrap_or(Value::Null)
}

/// One ack value back into an answer with one argument.
pub(crate) fn ack_from_json(value: Value, attachments: Vec<Bytes>) -> AckResponse {
    AckResponse {
        args: vec![value],
        attachments,
    }
}

/// A socket of a fetch answer (`{id, handshake, rooms, data}`); `None` without an id.
pub(crate) fn socket_from_json(mut value: Value) -> Option<RemoteSocket> {
    let id = str_field(&value, "id")?.to_owned();
    let rooms = rooms_at(&value, "rooms");
    let mut take = |key: &str| value.get_mut(key).map(Value::take).unwrap_or(Value::Null);
    Some(RemoteSocket {
        id,
        rooms,
        handshake: take("handshake"),
        data: take("data"),
    })
}

/// A socket as fetch answers carry it, in Node's key order.
pub(crate) fn socket_to_json(socket: &RemoteSocket) -> Value {
    json!({"id": socket.id, "handshake": socket.handshake, "rooms": socket.rooms, "data": socket.data})
}

/// The string field `key` of an object.
pub(crate) fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_json_and_msgpack() {
        let json = decode(br#"{"type":8,"requestId":"x","clientCount":0}"#).unwrap();
        assert_eq!(json.value["clientCount"], 0);
        let mp = encode(&json!({"a": [1, 1.5, "x", null]}), &[], Format::MsgPack);
        assert_eq!(mp.first(), Some(&0x81));
        assert_eq!(
            decode(&mp).unwrap().value,
            json!({"a": [1, 1.5, "x", null]})
        );
    }

    #[test]
    fn binary_becomes_attachments_and_back() {
        let value = json!({"bin": {"_placeholder": true, "num": 0}});
        let data = Bytes::from_static(&[0, 1, 2, 0xff]);
        let bytes = encode(&value, std::slice::from_ref(&data), Format::MsgPack);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.value, value);
        assert_eq!(decoded.attachments, vec![data]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"{",
            b"\xd9",
            b"\x93\xa1",
            b"\x81\xa1a\x01trailing",
        ] {
            assert!(decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn numeric_rooms_read_like_javascript() {
        let opts = opts_from_json(Some(&json!({"rooms": [1, 1.5, "a"], "except": [true]})));
        assert_eq!(opts.rooms, vec!["1", "1.5", "a"]);
        assert!(opts.except.is_empty());
    }
}
