//! The MessagePack parser, wire-compatible with `socket.io-msgpack-parser`: every packet is one
//! binary message holding a map `{type, nsp, data, id?}`; binary data travels inline.
//!
//! Inside sio packets keep one shape whatever the parser: binary values become attachments with
//! placeholders in the JSON arguments on decoding, and placeholders become binary values again on
//! encoding. Handlers and `Bin` work the same with both parsers.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};

use super::decode::{Limits, ParseError};
use super::{Packet, PacketData};

/// Deepest nesting accepted, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Decodes one binary message into a packet.
pub(super) fn decode(data: &[u8], limits: &Limits) -> Result<Packet, ParseError> {
    let mut reader = data;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|_| ParseError::MsgPack)?;
    if !reader.is_empty() {
        return Err(ParseError::MsgPack);
    }
    let Mp::Map(fields) = value else {
        return Err(ParseError::MsgPack);
    };
    let (mut kind, mut ns, mut data, mut id) = (None, None, None, None);
    for (key, value) in fields {
        match key.as_str() {
            Some("type") => kind = value.as_u64(),
            Some("nsp") => ns = value.as_str().map(str::to_owned),
            Some("data") => data = Some(value),
            Some("id") if !value.is_nil() => {
                id = Some(value.as_u64().ok_or(ParseError::AckId)?);
            }
            _ => {}
        }
    }
    let ns = ns
        .filter(|ns| ns.starts_with('/'))
        .ok_or(ParseError::Payload)?;
    let mut attachments = Vec::new();
    let data = data
        .filter(|d| !d.is_nil() && !is_undefined(d))
        .map(|d| msgpack_to_json(d, &mut attachments, limits))
        .transpose()?;
    let data = match (kind.ok_or(ParseError::UnknownType)?, data) {
        (0, None) => PacketData::Connect(None),
        (0, Some(p @ Value::Object(_))) => PacketData::Connect(Some(p)),
        (1, None) => PacketData::Disconnect,
        (2, Some(args)) if super::decode::is_event(&args) => PacketData::Event {
            args,
            id,
            attachments,
        },
        (3, Some(args @ Value::Array(_))) => PacketData::Ack {
            args,
            id: id.ok_or(ParseError::AckId)?,
            attachments,
        },
        (4, Some(p @ (Value::Object(_) | Value::String(_)))) => PacketData::ConnectError(p),
        (0..=4, _) => return Err(ParseError::Payload),
        _ => return Err(ParseError::UnknownType),
    };
    let packet = Packet { ns, data };
    limits.check_names(&packet)?;
    Ok(packet)
}

/// Encodes a packet as one binary message.
pub(super) fn encode(packet: &Packet) -> Bytes {
    let (kind, data, id, attachments): (u64, Option<&Value>, Option<u64>, &[Bytes]) =
        match &packet.data {
            PacketData::Connect(data) => (0, data.as_ref(), None, &[]),
            PacketData::Disconnect => (1, None, None, &[]),
            PacketData::Event {
                args,
                id,
                attachments,
            } => (2, Some(args), *id, attachments),
            PacketData::Ack {
                args,
                id,
                attachments,
            } => (3, Some(args), Some(*id), attachments),
            PacketData::ConnectError(data) => (4, Some(data), None, &[]),
        };
    let mut fields = vec![(Mp::from("type"), Mp::from(kind))];
    if let Some(data) = data {
        fields.push((Mp::from("data"), json_to_msgpack(data, attachments)));
    }
    fields.push((Mp::from("nsp"), Mp::from(packet.ns.as_str())));
    if let Some(id) = id {
        fields.push((Mp::from("id"), Mp::from(id)));
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &Mp::Map(fields));
    out.into()
}

/// Turns a MessagePack value into sio's JSON shape: binary values move into `attachments` and
/// leave placeholders behind. Used by the MessagePack parser and by cluster backends whose
/// messages carry packets as MessagePack (the Redis adapter).
///
/// ```
/// use sio_core::parser::{msgpack_to_json, Limits};
///
/// let value = rmpv::Value::Array(vec!["file".into(), rmpv::Value::Binary(vec![1, 2])]);
/// let mut attachments = Vec::new();
/// let json = msgpack_to_json(value, &mut attachments, &Limits::default()).unwrap();
/// assert_eq!(json, serde_json::json!(["file", {"_placeholder": true, "num": 0}]));
/// assert_eq!(attachments, [vec![1u8, 2]]);
/// ```
pub fn msgpack_to_json(
    value: Mp,
    attachments: &mut Vec<Bytes>,
    limits: &Limits,
) -> Result<Value, ParseError> {
    Ok(match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            (None, None) => return Err(ParseError::MsgPack),
        },
        Mp::F32(f) => float(f64::from(f))?,
        Mp::F64(f) => float(f)?,
        Mp::String(s) => Value::String(s.into_str().ok_or(ParseError::MsgPack)?),
        Mp::Binary(data) => {
            let total: usize = attachments.iter().map(Bytes::len).sum::<usize>() + data.len();
            if attachments.len() >= limits.max_attachments {
                return Err(ParseError::Attachments);
            }
            if total > limits.max_attachment_bytes {
                return Err(ParseError::AttachmentsTooLarge);
            }
            let num = attachments.len();
            attachments.push(data.into());
            placeholder(num)
        }
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| msgpack_to_json(v, attachments, limits))
                .collect::<Result<_, _>>()?,
        ),
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let Mp::String(key) = key else {
                    return Err(ParseError::MsgPack);
                };
                let key = key.into_str().ok_or(ParseError::MsgPack)?;
                // A property set to `undefined` is left out, as `JSON.stringify` does.
                if !is_undefined(&value) {
                    map.insert(key, msgpack_to_json(value, attachments, limits)?);
                }
            }
            Value::Object(map)
        }
        // JavaScript's `undefined` in an array reads as `null`, as `JSON.stringify` does.
        Mp::Ext(..) if is_undefined(&value) => Value::Null,
        Mp::Ext(..) => return Err(ParseError::MsgPack),
    })
}

/// notepack writes JavaScript's `undefined` as the extension value `d4 00 00`.
fn is_undefined(value: &Mp) -> bool {
    matches!(value, Mp::Ext(0, data) if data.as_slice() == [0])
}

fn float(f: f64) -> Result<Value, ParseError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or(ParseError::MsgPack)
}

fn placeholder(num: usize) -> Value {
    let mut map = Map::new();
    map.insert("_placeholder".into(), Value::Bool(true));
    map.insert("num".into(), num.into());
    Value::Object(map)
}

/// Turns sio's JSON shape back into MessagePack: placeholders become the binary values of
/// `attachments` they refer to. The inverse of [`msgpack_to_json`].
///
/// ```
/// use sio_core::parser::json_to_msgpack;
///
/// let json = serde_json::json!(["file", {"_placeholder": true, "num": 0}]);
/// let value = json_to_msgpack(&json, &[bytes::Bytes::from_static(&[1, 2])]);
/// assert_eq!(value, rmpv::Value::Array(vec!["file".into(), rmpv::Value::Binary(vec![1, 2])]));
/// ```
pub fn json_to_msgpack(value: &Value, attachments: &[Bytes]) -> Mp {
    match value {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Mp::from(u),
            (None, Some(i), _) => Mp::from(i),
            (None, None, Some(f)) => Mp::F64(f),
            _ => Mp::Nil,
        },
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(
            items
                .iter()
                .map(|v| json_to_msgpack(v, attachments))
                .collect(),
        ),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true))
                && let Some(data) = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| attachments.get(n))
            {
                return Mp::Binary(data.to_vec());
            }
            Mp::Map(
                map.iter()
                    .map(|(k, v)| (Mp::from(k.as_str()), json_to_msgpack(v, attachments)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn binary_values_become_attachments_and_back() {
        let packet = Packet {
            ns: "/chat".into(),
            data: PacketData::Event {
                args: json!(["file", {"name": "a", "body": {"_placeholder": true, "num": 0}}, 1.5]),
                id: Some(3),
                attachments: vec![Bytes::from_static(&[1, 2, 3])],
            },
        };
        let bytes = encode(&packet);
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), packet);
    }

    #[test]
    fn rejects_what_the_js_parser_rejects() {
        let limits = Limits::default();
        let bad = [
            json!({"type": 9, "nsp": "/"}),
            json!({"type": 2, "nsp": "/", "data": {}}),
            json!({"type": 2, "nsp": "/", "data": ["connect"]}),
            json!({"type": 3, "nsp": "/", "data": []}),
            json!({"type": 1, "nsp": "/", "data": 1}),
            json!({"type": 0, "nsp": 5}),
            json!([0, "/"]),
        ];
        for value in bad {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &json_to_msgpack(&value, &[])).unwrap();
            assert!(decode(&out, &limits).is_err(), "{value} was accepted");
        }
        assert!(decode(&[0xc1], &limits).is_err());
        // What socket.io-client sends to connect without auth: `data: undefined`.
        let connect = [
            0x83, 0xa4, b't', b'y', b'p', b'e', 0x00, 0xa3, b'n', b's', b'p', 0xa1, b'/', 0xa4,
            b'd', b'a', b't', b'a', 0xd4, 0x00, 0x00,
        ];
        assert_eq!(
            decode(&connect, &limits).unwrap(),
            Packet {
                ns: "/".into(),
                data: PacketData::Connect(None)
            }
        );
        assert!(decode(&[], &limits).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_error(bytes in any::<Vec<u8>>()) {
            let _ = decode(&bytes, &Limits::default());
        }
    }
}
