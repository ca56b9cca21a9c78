//! The cluster protocol over Redis streams, as `@socket.io/redis-streams-adapter` 0.3 speaks
//! it, as pure functions.
//!
//! Messages that must survive a short disconnection (broadcasts without acks, room changes,
//! disconnections) are entries of one stream shared by every namespace:
//! `XADD <key> MAXLEN ~ <max> * uid <uid> nsp <nsp> type <code> data <data>`, `data` being the
//! cluster protocol's `data` as JSON text, or base64 of MessagePack when it carries binary.
//! Every other message goes over pub/sub like the sharded protocol's, always in MessagePack.
//! An entry's id is the recovery offset of a broadcast; sessions are kept at
//! `sio:session:<pid>` as base64 of MessagePack `{sid, pid, rooms, data}`, so Node and sio
//! nodes take back each other's (see [`sessions`](crate::sessions)).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sio_core::RecoverableSession;

use crate::message::Request;
use crate::sharded::{self, Incoming, Parts};
use crate::wire::{self, Format, Message, WireError};

/// The key prefix of recovery sessions (`sessionKeyPrefix` in Node).
pub(crate) const SESSION_PREFIX: &str = "sio:session:";

/// Whether a request goes to the stream (Node's `isEphemeral`, negated): the ones that ask
/// for answers are only meaningful to the nodes that are there now.
pub(crate) fn is_durable(request: &Request) -> bool {
    matches!(
        request,
        Request::SocketsJoin { .. }
            | Request::SocketsLeave { .. }
            | Request::DisconnectSockets { .. }
    )
}

/// The fields of a stream entry, in Node's order.
pub(crate) fn entry_fields(
    (kind, data, attachments): Parts<'_>,
    uid: &str,
    ns: &str,
) -> Vec<(&'static str, Vec<u8>)> {
    let data = if attachments.is_empty() {
        wire::encode(&data, &[], Format::Json)
    } else {
        STANDARD
            .encode(wire::encode(&data, attachments, Format::MsgPack))
            .into_bytes()
    };
    vec![
        ("uid", uid.as_bytes().to_vec()),
        ("nsp", ns.as_bytes().to_vec()),
        ("type", kind.to_string().into_bytes()),
        ("data", data),
    ]
}

/// A message sent over pub/sub: always MessagePack.
pub(crate) fn pubsub_message(parts: Parts<'_>, uid: &str, ns: &str) -> Vec<u8> {
    sharded::envelope_as(parts, uid, ns, Format::MsgPack)
}

/// One entry read from the stream: its id and its fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The namespace the entry is for, if it says.
    pub(crate) fn nsp(&self) -> Option<&str> {
        std::str::from_utf8(self.field("nsp")?).ok()
    }

    /// Whether the entry is a broadcast (type `"3"`), before decoding it.
    pub(crate) fn is_broadcast(&self) -> bool {
        self.field("type") == Some(b"3")
    }
}

/// Decodes an entry; `Ok(None)` for types sio does not act on.
pub(crate) fn decode_entry(entry: &Entry) -> Result<Option<Incoming>, WireError> {
    let text = |name: &'static str| {
        entry
            .field(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or(WireError::Shape(name))
    };
    let kind: u64 = text("type")?
        .parse()
        .map_err(|_| WireError::Shape("type"))?;
    let Message {
        value: data,
        attachments,
    } = match entry.field("data") {
        None => Message {
            value: Value::Null,
            attachments: Vec::new(),
        },
        Some(data) if data.first() == Some(&b'{') => wire::decode(data)?,
        Some(data) => {
            let bytes = STANDARD
                .decode(data)
                .map_err(|err| WireError::Syntax(err.to_string()))?;
            wire::decode(&bytes)?
        }
    };
    let value = json!({"type": kind, "data": data, "uid": text("uid")?, "nsp": text("nsp")?});
    sharded::decode_message(Message { value, attachments })
}

/// The entries of an `XRANGE` answer (`[[id, [field, value, ...]], ...]`); malformed ones are
/// left out.
pub(crate) fn range_entries(reply: redis::Value) -> Vec<Entry> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items.into_iter().filter_map(entry).collect()
}

/// The entries of an `XREAD` answer on one stream (`[[name, entries]]`, or a map in RESP3);
/// none when it timed out (nil).
pub(crate) fn read_entries(reply: redis::Value) -> Vec<Entry> {
    let entries = match reply {
        redis::Value::Array(streams) => streams.into_iter().next().and_then(|s| match s {
            redis::Value::Array(pair) => pair.into_iter().nth(1),
            _ => None,
        }),
        redis::Value::Map(streams) => streams.into_iter().next().map(|(_, v)| v),
        _ => None,
    };
    entries.map(range_entries).unwrap_or_default()
}

fn entry(item: redis::Value) -> Option<Entry> {
    let redis::Value::Array(parts) = item else {
        return None;
    };
    let mut parts = parts.into_iter();
    let id = String::from_utf8(bulk(parts.next()?)?).ok()?;
    let redis::Value::Array(flat) = parts.next()? else {
        return None;
    };
    let mut fields = Vec::new();
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        fields.push((bulk(k)?, bulk(v)?));
    }
    Some(Entry { id, fields })
}

fn bulk(value: redis::Value) -> Option<Vec<u8>> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes),
        redis::Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// Whether `offset` is a stream id (`<ms>-<seq>`), as Node checks before using one.
pub(crate) fn is_offset(offset: &str) -> bool {
    offset.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The smallest id after `offset`, so that `XRANGE` can start after it on any Redis version
/// (exclusive ranges need 6.2); `None` for ids that are not ones.
pub(crate) fn next_offset(offset: &str) -> Option<String> {
    let (ms, seq) = offset.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}

/// A session as Node's streams adapter stores it: base64 of MessagePack `{sid, pid, rooms,
/// data}`, plus the namespace it belongs to (`nsp`, which Node does not read).
pub(crate) fn encode_session(session: &RecoverableSession, ns: &str) -> String {
    let value = json!({
        "sid": session.sid,
        "pid": session.pid,
        "rooms": session.rooms,
        "data": session.data,
        "nsp": ns,
    });
    STANDARD.encode(wire::encode(&value, &[], Format::MsgPack))
}

/// A stored session and its namespace (none in the sessions Node writes); `None` when the
/// value is not one.
pub(crate) fn decode_session(text: &[u8]) -> Option<(RecoverableSession, Option<String>)> {
    let bytes = STANDARD.decode(text).ok()?;
    let Message { value, .. } = wire::decode(&bytes).ok()?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let session = RecoverableSession::new(
        field("sid")?,
        field("pid")?,
        wire::rooms_at(&value, "rooms"),
        value.get("data").cloned().unwrap_or(Value::Null),
    );
    Some((session, field("nsp")))
}

#[cfg(test)]
mod tests {
    //! Golden entries captured from Node's `@socket.io/redis-streams-adapter` 0.3.1
    //! (`tests/fixtures/streams.json`).

    use super::*;
    use crate::message::Broadcast;
    use crate::sharded::Kind;
    use bytes::Bytes;

    fn fixtures(cmd: &str) -> Vec<Value> {
        let file: Value =
            serde_json::from_str(include_str!("../tests/fixtures/streams.json")).unwrap();
        file["fixtures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["cmd"] == cmd)
            .cloned()
            .collect()
    }

    fn captured_entry(f: &Value) -> Entry {
        let fields = ["uid", "nsp", "type", "data"]
            .iter()
            .map(|k| {
                (
                    k.as_bytes().to_vec(),
                    f["fields"][k].as_str().unwrap().as_bytes().to_vec(),
                )
            })
            .collect();
        Entry {
            id: "1795368780491-0".into(),
            fields,
        }
    }

    #[test]
    fn every_captured_entry_is_read_and_written_back_byte_for_byte() {
        let captured = fixtures("XADD");
        assert_eq!(captured.len(), 5);
        for f in captured {
            let entry = captured_entry(&f);
            let incoming = decode_entry(&entry).unwrap().unwrap();
            let parts = match &incoming.message {
                Kind::Broadcast(b) => sharded::broadcast_parts(b),
                Kind::Request(r) => {
                    assert!(is_durable(r), "{}", f["key"]);
                    sharded::request_parts(r)
                }
                Kind::Response(_) => panic!("a response in the stream"),
            };
            let written = entry_fields(parts, &incoming.uid, &incoming.nsp);
            let written: Vec<(Vec<u8>, Vec<u8>)> = written
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect();
            assert_eq!(written, entry.fields, "{}", f["key"]);
        }
    }

    #[test]
    fn binary_broadcasts_keep_their_bytes() {
        let f = fixtures("XADD")
            .into_iter()
            .find(|f| f["key"].as_str().unwrap().contains("base64"))
            .unwrap();
        let Some(Incoming {
            message: Kind::Broadcast(Broadcast { packet, .. }),
            ..
        }) = decode_entry(&captured_entry(&f)).unwrap()
        else {
            panic!("not a broadcast");
        };
        let sio_core::parser::PacketData::Event { attachments, .. } = packet.data else {
            panic!("not an event");
        };
        assert_eq!(
            attachments,
            vec![Bytes::from_static(&[0, 1, 2, 3, 0xfd, 0xfe, 0xff])]
        );
    }

    #[test]
    fn captured_pubsub_messages_are_written_back_byte_for_byte() {
        for f in fixtures("PUBLISH") {
            let hex = f["hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let incoming = sharded::decode(&bytes).unwrap().unwrap();
            let parts = match &incoming.message {
                Kind::Broadcast(b) => sharded::broadcast_parts(b),
                Kind::Request(r) => {
                    assert!(!is_durable(r));
                    sharded::request_parts(r)
                }
                Kind::Response(r) => sharded::response_parts(r),
            };
            let written = pubsub_message(parts, &incoming.uid, &incoming.nsp);
            assert_eq!(written, bytes, "{}", f["key"]);
        }
    }

    #[test]
    fn replies_are_read() {
        use redis::Value::{Array, BulkString, Nil};
        let b = |s: &str| BulkString(s.as_bytes().to_vec());
        let one = Array(vec![
            b("1-0"),
            Array(vec![b("uid"), b("u"), b("nsp"), b("/")]),
        ]);
        let read = Array(vec![Array(vec![b("socket.io"), Array(vec![one.clone()])])]);
        let entries = read_entries(read);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].nsp(), Some("/"));
        assert!(read_entries(Nil).is_empty());
        assert_eq!(range_entries(Array(vec![one, b("junk")])).len(), 1);
    }

    #[test]
    fn offsets() {
        assert!(is_offset("1795368780491-0"));
        assert!(!is_offset("1795368780491"));
        assert!(!is_offset("-1"));
        assert!(!is_offset("1-a"));
        assert_eq!(next_offset("5-9").as_deref(), Some("5-10"));
        assert_eq!(
            next_offset(&format!("5-{}", u64::MAX)).as_deref(),
            Some("6-0")
        );
        assert_eq!(next_offset("x"), None);
    }

    #[test]
    fn sessions_round_trip_and_garbage_is_none() {
        let s = RecoverableSession::new(
            "sid".into(),
            "pid".into(),
            vec!["sid".into(), "r".into()],
            json!({"name": "ada", "n": 1}),
        );
        assert_eq!(
            decode_session(encode_session(&s, "/admin").as_bytes()),
            Some((s.clone(), Some("/admin".to_owned())))
        );
        // As Node writes it: no namespace.
        let node = STANDARD.encode(wire::encode(
            &json!({"sid": "sid", "pid": "pid", "rooms": ["sid", "r"], "data": {"name": "ada", "n": 1}}),
            &[],
            Format::MsgPack,
        ));
        assert_eq!(decode_session(node.as_bytes()), Some((s, None)));
        assert_eq!(decode_session(b"!!"), None);
        assert_eq!(decode_session(b"AAAA"), None);
    }

    #[test]
    fn hostile_entries_are_errors() {
        let entry = |fields: &[(&str, &str)]| Entry {
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        };
        assert!(decode_entry(&entry(&[("uid", "u"), ("nsp", "/")])).is_err());
        let bad = entry(&[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", "%%")]);
        assert!(decode_entry(&bad).is_err());
        let no_packet = entry(&[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", "{}")]);
        assert!(decode_entry(&no_packet).is_err());
    }
}
