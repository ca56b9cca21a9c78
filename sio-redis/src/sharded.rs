//! The cluster protocol of `socket.io-adapter` over Redis sharded pub/sub, as
//! `createShardedAdapter` (`@socket.io/redis-adapter` 8.3, `subscriptionMode: "dynamic"`)
//! speaks it, as pure functions.
//!
//! Every message is one object `{type, data, uid, nsp}`, JSON unless it carries binary
//! (MessagePack then). Requests and broadcasts go to `<key>#<nsp>#`, a broadcast to exactly one
//! room to `<key>#<nsp>#<room>#`, answers to `<key>#<nsp>#<requester uid>#`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sio_core::parser::Packet;

use crate::message::{Broadcast, Envelope, Request, Response};
use crate::wire::{
    self, Format, Message, WireError, ack_from_json, ack_to_json, opts_from_json, opts_to_json,
    packet_from_json, packet_to_json, rooms_at, socket_from_json, socket_to_json, str_field,
};

/// The message type codes of the cluster protocol.
mod kind {
    pub(super) const BROADCAST: u64 = 3;
    pub(super) const SOCKETS_JOIN: u64 = 4;
    pub(super) const SOCKETS_LEAVE: u64 = 5;
    pub(super) const DISCONNECT_SOCKETS: u64 = 6;
    pub(super) const FETCH_SOCKETS: u64 = 7;
    pub(super) const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub(super) const SERVER_SIDE_EMIT: u64 = 9;
    pub(super) const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub(super) const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub(super) const BROADCAST_ACK: u64 = 12;
}

/// Node's guess that a room is a socket id (its ids have 20 characters): such rooms are not
/// subscribed to, so a broadcast to one goes to the main channel.
const NODE_SOCKET_ID_LEN: usize = 20;

/// The channel names of one key prefix.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    key: String,
}

impl Channels {
    pub(crate) fn new(key: impl Into<String>) -> Self {
        Channels { key: key.into() }
    }

    /// Requests and most broadcasts.
    pub(crate) fn main(&self, ns: &str) -> String {
        format!("{}#{ns}#", self.key)
    }

    /// Broadcasts to one room; also where answers to node `uid` go (same naming).
    pub(crate) fn room(&self, ns: &str, room: &str) -> String {
        format!("{}#{ns}#{room}#", self.key)
    }

    /// Where a broadcast without acks goes: its room's channel when it targets exactly one
    /// room that does not look like a Node socket id.
    pub(crate) fn broadcast(&self, ns: &str, broadcast: &Broadcast) -> String {
        match broadcast.opts.rooms.as_slice() {
            [room] if room.chars().count() != NODE_SOCKET_ID_LEN => self.room(ns, room),
            _ => self.main(ns),
        }
    }
}

/// A message of the cluster protocol, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incoming {
    pub(crate) uid: String,
    pub(crate) nsp: String,
    pub(crate) message: Kind,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Broadcast(Broadcast),
    Request(Request),
    Response(Response),
}

/// A message before its envelope: its type code, its `data` and the binary values `data`'s
/// placeholders refer to.
pub(crate) type Parts<'a> = (u64, Value, &'a [Bytes]);

/// `{type, data, uid, nsp}`: MessagePack when there is binary, JSON otherwise.
fn envelope((kind, data, attachments): Parts<'_>, uid: &str, ns: &str) -> Vec<u8> {
    let format = if attachments.is_empty() {
        Format::Json
    } else {
        Format::MsgPack
    };
    envelope_as((kind, data, attachments), uid, ns, format)
}

/// `{type, data, uid, nsp}` in `format`.
pub(crate) fn envelope_as(
    (kind, data, attachments): Parts<'_>,
    uid: &str,
    ns: &str,
    format: Format,
) -> Vec<u8> {
    let value = json!({"type": kind, "data": data, "uid": uid, "nsp": ns});
    wire::encode(&value, attachments, format)
}

/// The packet object without its namespace (the envelope has it).
fn packet_json(packet: &Packet) -> (Value, &[Bytes]) {
    let (mut value, attachments) = packet_to_json(packet);
    if let Some(map) = value.as_object_mut() {
        map.remove("nsp");
    }
    (value, attachments)
}

pub(crate) fn broadcast_parts(broadcast: &Broadcast) -> Parts<'_> {
    let (packet, attachments) = packet_json(&broadcast.packet);
    let flags = if broadcast.volatile {
        json!({"volatile": true})
    } else {
        json!({})
    };
    let data = json!({"packet": packet, "opts": opts_to_json(&broadcast.opts, Some(flags))});
    (kind::BROADCAST, data, attachments)
}

pub(crate) fn encode_broadcast(broadcast: &Broadcast, ns: &str) -> Vec<u8> {
    envelope(broadcast_parts(broadcast), &broadcast.uid, ns)
}

pub(crate) fn request_parts(request: &Request) -> Parts<'_> {
    let no_flags = |opts| opts_to_json(opts, Some(json!({})));
    let mut attachments: &[Bytes] = &[];
    let (code, data) = match request {
        Request::SocketsJoin { opts, rooms } => (
            kind::SOCKETS_JOIN,
            json!({"opts": no_flags(opts), "rooms": rooms}),
        ),
        Request::SocketsLeave { opts, rooms } => (
            kind::SOCKETS_LEAVE,
            json!({"opts": no_flags(opts), "rooms": rooms}),
        ),
        Request::DisconnectSockets { opts, close } => (
            kind::DISCONNECT_SOCKETS,
            json!({"opts": no_flags(opts), "close": close}),
        ),
        Request::FetchSockets { request_id, opts } => (
            kind::FETCH_SOCKETS,
            json!({"opts": no_flags(opts), "requestId": request_id}),
        ),
        Request::ServerSideEmit { request_id, args } => {
            let mut data = Map::new();
            if let Some(id) = request_id {
                data.insert("requestId".into(), json!(id));
            }
            data.insert("packet".into(), json!(args));
            (kind::SERVER_SIDE_EMIT, Value::Object(data))
        }
        Request::BroadcastWithAck {
            request_id,
            packet,
            opts,
            timeout,
        } => {
            let (packet, bins) = packet_json(packet);
            attachments = bins;
            let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            (
                kind::BROADCAST,
                json!({"packet": packet, "requestId": request_id, "opts": opts_to_json(opts, Some(json!({"timeout": timeout})))}),
            )
        }
    };
    (code, data, attachments)
}

pub(crate) fn encode_request(envelope_: &Envelope, ns: &str) -> Vec<u8> {
    let uid = envelope_.uid.as_deref().unwrap_or_default();
    envelope(request_parts(&envelope_.request), uid, ns)
}

pub(crate) fn response_parts(response: &Response) -> Parts<'_> {
    match response {
        Response::Sockets {
            request_id,
            sockets,
        } => {
            let sockets: Vec<Value> = sockets.iter().map(socket_to_json).collect();
            let data = json!({"requestId": request_id, "sockets": sockets});
            (kind::FETCH_SOCKETS_RESPONSE, data, &[])
        }
        Response::ServerSideEmit { request_id, ack } => {
            let data = json!({"requestId": request_id, "packet": ack_to_json(ack)});
            (kind::SERVER_SIDE_EMIT_RESPONSE, data, &ack.attachments)
        }
        Response::ClientCount { request_id, count } => {
            let data = json!({"requestId": request_id, "clientCount": count});
            (kind::BROADCAST_CLIENT_COUNT, data, &[])
        }
        Response::BroadcastAck { request_id, ack } => {
            let data = json!({"requestId": request_id, "packet": ack_to_json(ack)});
            (kind::BROADCAST_ACK, data, &ack.attachments)
        }
    }
}

/// An answer from node `uid`.
pub(crate) fn encode_response(response: &Response, uid: &str, ns: &str) -> Vec<u8> {
    envelope(response_parts(response), uid, ns)
}

/// Decodes a message; `Ok(None)` for types sio does not act on (heartbeats, adapter close).
pub(crate) fn decode(bytes: &[u8]) -> Result<Option<Incoming>, WireError> {
    decode_message(wire::decode(bytes)?)
}

/// [`decode`] for a message already read as JSON (and its attachments).
pub(crate) fn decode_message(message: Message) -> Result<Option<Incoming>, WireError> {
    let Message {
        mut value,
        attachments,
    } = message;
    let uid = str_field(&value, "uid").unwrap_or_default().to_owned();
    let nsp = str_field(&value, "nsp").unwrap_or("/").to_owned();
    let code = value.get("type").and_then(Value::as_u64);
    let mut data = value
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null);
    let request_id = str_field(&data, "requestId").map(str::to_owned);
    let required = |id: Option<String>| id.ok_or(WireError::Shape("requestId"));
    let opts = opts_from_json(data.get("opts"));
    let packet = |data: &Value| -> Result<Packet, WireError> {
        let mut packet = packet_from_json(
            data.get("packet").ok_or(WireError::Shape("packet"))?,
            &attachments,
        )?;
        packet.ns.clone_from(&nsp);
        Ok(packet)
    };
    let message = match code {
        Some(kind::BROADCAST) => match request_id {
            None => Kind::Broadcast(Broadcast {
                uid: uid.clone(),
                packet: packet(&data)?,
                volatile: data
                    .pointer("/opts/flags/volatile")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                opts,
            }),
            Some(request_id) => Kind::Request(Request::BroadcastWithAck {
                request_id,
                packet: packet(&data)?,
                timeout: Duration::from_millis(
                    data.pointer("/opts/flags/timeout")
                        .and_then(Value::as_u64)
                        .unwrap_or(5_000),
                ),
                opts,
            }),
        },
        Some(kind::SOCKETS_JOIN) => Kind::Request(Request::SocketsJoin {
            rooms: rooms_at(&data, "rooms"),
            opts,
        }),
        Some(kind::SOCKETS_LEAVE) => Kind::Request(Request::SocketsLeave {
            rooms: rooms_at(&data, "rooms"),
            opts,
        }),
        Some(kind::DISCONNECT_SOCKETS) => Kind::Request(Request::DisconnectSockets {
            close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
            opts,
        }),
        Some(kind::FETCH_SOCKETS) => Kind::Request(Request::FetchSockets {
            request_id: required(request_id)?,
            opts,
        }),
        Some(kind::SERVER_SIDE_EMIT) => Kind::Request(Request::ServerSideEmit {
            request_id,
            args: data
                .get("packet")
                .and_then(Value::as_array)
                .cloned()
                .ok_or(WireError::Shape("packet"))?,
        }),
        Some(kind::FETCH_SOCKETS_RESPONSE) => Kind::Response(Response::Sockets {
            request_id: required(request_id)?,
            sockets: match data.get_mut("sockets").map(Value::take) {
                Some(Value::Array(sockets)) => {
                    sockets.into_iter().filter_map(socket_from_json).collect()
                }
                _ => Vec::new(),
            },
        }),
        Some(kind::SERVER_SIDE_EMIT_RESPONSE) => Kind::Response(Response::ServerSideEmit {
            request_id: required(request_id)?,
            ack: ack_from_json(
                data.get_mut("packet").map(Value::take).unwrap_or_default(),
                attachments,
            ),
        }),
        Some(kind::BROADCAST_CLIENT_COUNT) => Kind::Response(Response::ClientCount {
            request_id: required(request_id)?,
            count: data
                .get("clientCount")
                .and_then(Value::as_u64)
                .ok_or(WireError::Shape("clientCount"))?,
        }),
        Some(kind::BROADCAST_ACK) => Kind::Response(Response::BroadcastAck {
            request_id: required(request_id)?,
            ack: ack_from_json(
                data.get_mut("packet").map(Value::take).unwrap_or_default(),
                attachments,
            ),
        }),
        _ => return Ok(None),
    };
    Ok(Some(Incoming { uid, nsp, message }))
}

#[cfg(test)]
mod tests {
    //! Golden bytes captured from Node's `createShardedAdapter` (`tests/fixtures/sharded.json`).

    use super::*;

    fn fixtures() -> Vec<(String, String, Vec<u8>)> {
        let file: Value =
            serde_json::from_str(include_str!("../tests/fixtures/sharded.json")).unwrap();
        file["fixtures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["cmd"] == "SPUBLISH")
            .map(|f| {
                let hex = f["hex"].as_str().unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (
                    f["key"].as_str().unwrap().to_owned(),
                    f["channel"].as_str().unwrap().to_owned(),
                    bytes,
                )
            })
            .collect()
    }

    #[test]
    fn every_captured_message_is_read_and_written_back_byte_for_byte() {
        let channels = Channels::new("socket.io");
        let fixtures = fixtures();
        assert_eq!(fixtures.len(), 15);
        for (key, channel, bytes) in fixtures {
            let incoming = decode(&bytes).unwrap().unwrap();
            assert_eq!(incoming.nsp, "/");
            let written = match &incoming.message {
                Kind::Broadcast(b) => {
                    assert_eq!(channels.broadcast("/", b), channel, "{key}");
                    encode_broadcast(b, "/")
                }
                Kind::Request(request) => {
                    assert_eq!(channel, channels.main("/"), "{key}");
                    let envelope = Envelope {
                        uid: Some(incoming.uid.clone()),
                        request: request.clone(),
                    };
                    encode_request(&envelope, "/")
                }
                Kind::Response(response) => encode_response(response, &incoming.uid, "/"),
            };
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&bytes),
                "{key}"
            );
            assert_eq!(written, bytes, "{key}");
        }
    }

    #[test]
    fn socket_id_rooms_go_to_the_main_channel() {
        let channels = Channels::new("socket.io");
        let to = |room: &str| Broadcast {
            uid: "u".into(),
            packet: Packet::event("/", "e", &(), vec![]).unwrap(),
            opts: sio_core::BroadcastOptions {
                rooms: vec![room.into()],
                ..Default::default()
            },
            volatile: false,
        };
        assert_eq!(
            channels.broadcast("/", &to("xCGgxS3ah-bo5mSWAAAA")),
            "socket.io#/#"
        );
        assert_eq!(channels.broadcast("/", &to("even")), "socket.io#/#even#");
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(decode(br#"{"type":3,"data":{},"uid":"x","nsp":"/"}"#).is_err());
        assert!(decode(br#"{"type":7,"data":{},"uid":"x","nsp":"/"}"#).is_err());
        assert_eq!(decode(br#"{"type":2,"uid":"x","nsp":"/"}"#).unwrap(), None);
    }
}
