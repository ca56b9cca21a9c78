//! The classic protocol of `@socket.io/redis-adapter` (`createAdapter`) and
//! `@socket.io/redis-emitter`: its channels and its messages, as pure functions.
//!
//! * Broadcasts: MessagePack `[uid, {type: 2, data, nsp}, {rooms, except, flags}]` on
//!   `<key>#<nsp>#`, or on `<key>#<nsp>#<room>#` when there is exactly one room.
//! * Requests on `<key>-request#<nsp>#`: JSON objects with a numeric `type` (MessagePack for a
//!   broadcast with acks, type 7).
//! * Responses on `<key>-response#<nsp>#` (or `...#<uid>#`): routed by `requestId`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sio_core::BroadcastOptions;

use crate::message::{Broadcast, Envelope, Request, Response};
use crate::resp::Published;
use crate::wire::{
    self, Format, Message, WireError, ack_from_json, ack_to_json, opts_from_json, opts_to_json,
    packet_from_json, packet_to_json, rooms_at, socket_from_json, socket_to_json, str_field,
};

/// The request type codes of the classic protocol.
mod kind {
    pub(super) const REMOTE_JOIN: u64 = 2;
    pub(super) const REMOTE_LEAVE: u64 = 3;
    pub(super) const REMOTE_DISCONNECT: u64 = 4;
    pub(super) const REMOTE_FETCH: u64 = 5;
    pub(super) const SERVER_SIDE_EMIT: u64 = 6;
    pub(super) const BROADCAST: u64 = 7;
    pub(super) const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub(super) const BROADCAST_ACK: u64 = 9;
}

/// The channel names of one key prefix (`socket.io` by default).
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    key: String,
}

/// What a channel of a namespace carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// Broadcasts; `room` is set on a room channel.
    Broadcast {
        room: Option<String>,
    },
    Request,
    Response,
}

impl Channels {
    pub(crate) fn new(key: impl Into<String>) -> Self {
        Channels { key: key.into() }
    }

    /// Where a broadcast goes: the room's channel when it targets exactly one room.
    pub(crate) fn broadcast(&self, ns: &str, opts: &BroadcastOptions) -> String {
        match opts.rooms.as_slice() {
            [room] => format!("{}#{ns}#{room}#", self.key),
            _ => format!("{}#{ns}#", self.key),
        }
    }

    /// The pattern that matches every broadcast channel of a namespace (the bare one too).
    /// Unlike Node's, the namespace's name is escaped: a dynamic namespace named `/room-*`
    /// must not receive the broadcasts of every `/room-...`.
    pub(crate) fn broadcast_pattern(&self, ns: &str) -> String {
        let mut pattern = String::new();
        for c in format!("{}#{ns}#", self.key).chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    pub(crate) fn request(&self, ns: &str) -> String {
        format!("{}-request#{ns}#", self.key)
    }

    pub(crate) fn response(&self, ns: &str) -> String {
        format!("{}-response#{ns}#", self.key)
    }

    pub(crate) fn response_to(&self, ns: &str, uid: &str) -> String {
        format!("{}-response#{ns}#{uid}#", self.key)
    }

    /// What `channel` carries for namespace `ns`, if it is one of its channels.
    pub(crate) fn kind(&self, ns: &str, channel: &str) -> Option<ChannelKind> {
        if channel == self.request(ns) {
            return Some(ChannelKind::Request);
        }
        let response = self.response(ns);
        if channel == response
            || channel
                .strip_prefix(response.as_str())
                .is_some_and(|rest| rest.ends_with('#'))
        {
            return Some(ChannelKind::Response);
        }
        let rest = channel.strip_prefix(&format!("{}#{ns}#", self.key))?;
        if rest.is_empty() {
            return Some(ChannelKind::Broadcast { room: None });
        }
        let room = rest.strip_suffix('#')?;
        Some(ChannelKind::Broadcast {
            room: Some(room.to_owned()),
        })
    }
}

/// Which namespace each subscription of a node is for. A channel's name alone can be read in
/// more than one way (`#` may be part of namespace and room names, and another namespace's
/// pattern may match it), so a message is resolved by the subscription it came through: its
/// pattern, or its exact channel.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Broadcast patterns, to their namespace.
    patterns: HashMap<String, String>,
    /// Request and response channels, to their namespace.
    channels: HashMap<String, String>,
}

impl Routes {
    /// Records the subscriptions of namespace `ns` of node `uid`.
    pub(crate) fn add(&mut self, channels: &Channels, ns: &str, uid: &str) {
        self.patterns
            .insert(channels.broadcast_pattern(ns), ns.to_owned());
        for channel in [
            channels.request(ns),
            channels.response(ns),
            channels.response_to(ns, uid),
        ] {
            self.channels.insert(channel, ns.to_owned());
        }
    }

    /// The namespace `message` is for, and what it carries.
    pub(crate) fn resolve(
        &self,
        channels: &Channels,
        message: &Published,
    ) -> Option<(String, ChannelKind)> {
        let (ns, broadcast) = match &message.pattern {
            Some(pattern) => (self.patterns.get(pattern)?, true),
            None => (self.channels.get(&message.channel)?, false),
        };
        let kind = channels.kind(ns, &message.channel)?;
        (matches!(kind, ChannelKind::Broadcast { .. }) == broadcast).then(|| (ns.clone(), kind))
    }
}

impl Broadcast {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (packet, attachments) = packet_to_json(&self.packet);
        let flags = if self.volatile {
            json!({"volatile": true})
        } else {
            json!({})
        };
        let value = json!([self.uid, packet, opts_to_json(&self.opts, Some(flags))]);
        wire::encode(&value, attachments, Format::MsgPack)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let Message { value, attachments } = wire::decode(bytes)?;
        let [uid, packet, opts] = value
            .as_array()
            .map(Vec::as_slice)
            .ok_or(WireError::Shape("a broadcast is an array"))?
        else {
            return Err(WireError::Shape("a broadcast has three elements"));
        };
        Ok(Broadcast {
            uid: uid.as_str().unwrap_or_default().to_owned(),
            packet: packet_from_json(packet, &attachments)?,
            opts: opts_from_json(Some(opts)),
            volatile: opts
                .pointer("/flags/volatile")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

impl Envelope {
    /// Encodes in Node's key order: JSON, except a broadcast with acks (MessagePack).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut map = Map::new();
        if let Some(uid) = &self.uid {
            map.insert("uid".into(), json!(uid));
        }
        let mut attachments: &[Bytes] = &[];
        let mut format = Format::Json;
        match &self.request {
            Request::SocketsJoin { opts, rooms } | Request::SocketsLeave { opts, rooms } => {
                let code = match self.request {
                    Request::SocketsJoin { .. } => kind::REMOTE_JOIN,
                    _ => kind::REMOTE_LEAVE,
                };
                map.insert("type".into(), json!(code));
                map.insert("opts".into(), opts_to_json(opts, None));
                map.insert("rooms".into(), json!(rooms));
            }
            Request::DisconnectSockets { opts, close } => {
                map.insert("type".into(), json!(kind::REMOTE_DISCONNECT));
                map.insert("opts".into(), opts_to_json(opts, None));
                map.insert("close".into(), json!(close));
            }
            Request::FetchSockets { request_id, opts } => {
                map.insert("requestId".into(), json!(request_id));
                map.insert("type".into(), json!(kind::REMOTE_FETCH));
                map.insert("opts".into(), opts_to_json(opts, None));
            }
            Request::ServerSideEmit { request_id, args } => {
                if let Some(id) = request_id {
                    map.insert("requestId".into(), json!(id));
                }
                map.insert("type".into(), json!(kind::SERVER_SIDE_EMIT));
                map.insert("data".into(), json!(args));
            }
            Request::BroadcastWithAck {
                request_id,
                packet,
                opts,
                timeout,
            } => {
                let (packet, bins) = packet_to_json(packet);
                attachments = bins;
                format = Format::MsgPack;
                let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                map.insert("requestId".into(), json!(request_id));
                map.insert("type".into(), json!(kind::BROADCAST));
                map.insert("packet".into(), packet);
                map.insert(
                    "opts".into(),
                    opts_to_json(opts, Some(json!({"timeout": timeout}))),
                );
            }
        }
        wire::encode(&Value::Object(map), attachments, format)
    }

    /// Decodes a request; `Ok(None)` for the types sio does not serve (0 and 1, which Node 8
    /// never sends, and responses that were published on the request channel).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Option<Self>, WireError> {
        let Message { value, attachments } = wire::decode(bytes)?;
        let uid = str_field(&value, "uid").map(str::to_owned);
        let request_id = str_field(&value, "requestId").map(str::to_owned);
        let opts = opts_from_json(value.get("opts"));
        let required = |id: Option<String>| id.ok_or(WireError::Shape("requestId"));
        let request = match value.get("type").and_then(Value::as_u64) {
            Some(kind::REMOTE_JOIN) => Request::SocketsJoin {
                opts,
                rooms: rooms_at(&value, "rooms"),
            },
            Some(kind::REMOTE_LEAVE) => Request::SocketsLeave {
                opts,
                rooms: rooms_at(&value, "rooms"),
            },
            Some(kind::REMOTE_DISCONNECT) => Request::DisconnectSockets {
                opts,
                close: value.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            Some(kind::REMOTE_FETCH) => Request::FetchSockets {
                request_id: required(request_id)?,
                opts,
            },
            Some(kind::SERVER_SIDE_EMIT) => Request::ServerSideEmit {
                request_id,
                args: value
                    .get("data")
                    .and_then(Value::as_array)
                    .cloned()
                    .ok_or(WireError::Shape("data"))?,
            },
            Some(kind::BROADCAST) => Request::BroadcastWithAck {
                request_id: required(request_id)?,
                packet: packet_from_json(
                    value.get("packet").ok_or(WireError::Shape("packet"))?,
                    &attachments,
                )?,
                opts,
                timeout: Duration::from_millis(
                    value
                        .pointer("/opts/flags/timeout")
                        .and_then(Value::as_u64)
                        .unwrap_or(5_000),
                ),
            },
            _ => return Ok(None),
        };
        Ok(Some(Envelope { uid, request }))
    }
}

impl Response {
    /// Encodes as Node does: JSON, except acks that carry binary and broadcast acks
    /// (MessagePack).
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Response::Sockets {
                request_id,
                sockets,
            } => {
                let sockets: Vec<Value> = sockets.iter().map(socket_to_json).collect();
                let value = json!({"requestId": request_id, "sockets": sockets});
                wire::encode(&value, &[], Format::Json)
            }
            Response::ServerSideEmit { request_id, ack } => {
                let value = json!({"type": kind::SERVER_SIDE_EMIT, "requestId": request_id, "data": ack_to_json(ack)});
                let format = if ack.attachments.is_empty() {
                    Format::Json
                } else {
                    Format::MsgPack
                };
                wire::encode(&value, &ack.attachments, format)
            }
            Response::ClientCount { request_id, count } => {
                let value = json!({"type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count});
                wire::encode(&value, &[], Format::Json)
            }
            Response::BroadcastAck { request_id, ack } => {
                let value = json!({"type": kind::BROADCAST_ACK, "requestId": request_id, "packet": ack_to_json(ack)});
                wire::encode(&value, &ack.attachments, Format::MsgPack)
            }
        }
    }

    /// Decodes a response; `Ok(None)` for answers sio never asks for (`allRooms`, legacy
    /// join acknowledgements).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Option<Self>, WireError> {
        let Message {
            mut value,
            attachments,
        } = wire::decode(bytes)?;
        let request_id = str_field(&value, "requestId")
            .ok_or(WireError::Shape("requestId"))?
            .to_owned();
        let kind = value.get("type").and_then(Value::as_u64);
        let count = value.get("clientCount").and_then(Value::as_u64);
        let mut take = |key: &str| value.get_mut(key).map(Value::take);
        Ok(Some(match kind {
            Some(kind::SERVER_SIDE_EMIT) => Response::ServerSideEmit {
                request_id,
                ack: ack_from_json(take("data").unwrap_or(Value::Null), attachments),
            },
            Some(kind::BROADCAST_CLIENT_COUNT) => Response::ClientCount {
                request_id,
                count: count.ok_or(WireError::Shape("clientCount"))?,
            },
            Some(kind::BROADCAST_ACK) => Response::BroadcastAck {
                request_id,
                ack: ack_from_json(take("packet").unwrap_or(Value::Null), attachments),
            },
            Some(_) => return Ok(None),
            None => match take("sockets") {
                Some(Value::Array(sockets)) => Response::Sockets {
                    request_id,
                    sockets: sockets.into_iter().filter_map(socket_from_json).collect(),
                },
                _ => return Ok(None),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes captured from Node's `@socket.io/redis-adapter` 8.3 and
    //! `@socket.io/redis-emitter` 5.1 (`tests/fixtures/classic.json`): sio reads every one and
    //! writes the adapter's byte for byte.

    use super::*;

    struct Fixture {
        key: String,
        channel: String,
        bytes: Vec<u8>,
    }

    fn fixtures() -> Vec<Fixture> {
        let file: Value =
            serde_json::from_str(include_str!("../tests/fixtures/classic.json")).unwrap();
        file["fixtures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["cmd"] == "PUBLISH")
            .map(|f| Fixture {
                key: f["key"].as_str().unwrap().to_owned(),
                channel: f["channel"].as_str().unwrap().to_owned(),
                bytes: unhex(f["hex"].as_str().unwrap()),
            })
            .collect()
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fixture(key: &str) -> Fixture {
        fixtures()
            .into_iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("no fixture {key}"))
    }

    #[test]
    fn every_captured_message_decodes() {
        let channels = Channels::new("socket.io");
        let fixtures = fixtures();
        assert_eq!(fixtures.len(), 19);
        for f in fixtures {
            match channels.kind("/", &f.channel) {
                Some(ChannelKind::Broadcast { room }) => {
                    let b = Broadcast::decode(&f.bytes).unwrap();
                    assert_eq!(b.packet.ns, "/", "{}", f.key);
                    assert_eq!(room.is_some(), b.opts.rooms.len() == 1, "{}", f.key);
                    assert_eq!(channels.broadcast("/", &b.opts), f.channel, "{}", f.key);
                }
                Some(ChannelKind::Request) => {
                    assert!(Envelope::decode(&f.bytes).unwrap().is_some(), "{}", f.key);
                }
                Some(ChannelKind::Response) => {
                    assert!(Response::decode(&f.bytes).unwrap().is_some(), "{}", f.key);
                }
                None => panic!("unknown channel {}", f.channel),
            }
        }
    }

    #[test]
    fn broadcasts_are_written_like_node() {
        for key in [
            "PUBLISH classic-broadcast msgpack ",
            "PUBLISH classic-broadcast msgpack room-or-private-channel",
            "PUBLISH classic-broadcast msgpack volatile",
            "PUBLISH classic-broadcast msgpack binary",
        ] {
            let f = fixture(key);
            let b = Broadcast::decode(&f.bytes).unwrap();
            assert_eq!(b.encode(), f.bytes, "{key}");
        }
        let binary =
            Broadcast::decode(&fixture("PUBLISH classic-broadcast msgpack binary").bytes).unwrap();
        let sio_core::parser::PacketData::Event { attachments, .. } = &binary.packet.data else {
            panic!("not an event");
        };
        assert_eq!(attachments[0].as_ref(), [0, 1, 2, 3, 0xfd, 0xfe, 0xff]);
        let volatile =
            Broadcast::decode(&fixture("PUBLISH classic-broadcast msgpack volatile").bytes)
                .unwrap();
        assert!(volatile.volatile);
    }

    #[test]
    fn emitter_broadcasts_are_read() {
        let f = fixture("PUBLISH classic-broadcast msgpack emitter+room-or-private-channel");
        let b = Broadcast::decode(&f.bytes).unwrap();
        assert_eq!(b.uid, "emitter");
        assert_eq!(b.opts.rooms, vec!["even"]);
        let f = fixture("PUBLISH classic-broadcast msgpack volatile+emitter");
        assert!(Broadcast::decode(&f.bytes).unwrap().volatile);
        let f = fixture("PUBLISH classic-request SERVER_SIDE_EMIT json emitter");
        let e = Envelope::decode(&f.bytes).unwrap().unwrap();
        assert_eq!(e.uid.as_deref(), Some("emitter"));
        assert!(matches!(
            e.request,
            Request::ServerSideEmit {
                request_id: None,
                ..
            }
        ));
    }

    #[test]
    fn requests_are_written_like_node() {
        for key in [
            "PUBLISH classic-request BROADCAST msgpack with-ack",
            "PUBLISH classic-request REMOTE_FETCH json ",
            "PUBLISH classic-request REMOTE_JOIN json ",
            "PUBLISH classic-request REMOTE_LEAVE json ",
            "PUBLISH classic-request SERVER_SIDE_EMIT json ",
            "PUBLISH classic-request SERVER_SIDE_EMIT json with-ack",
            "PUBLISH classic-request SERVER_SIDE_EMIT json emitter",
            "PUBLISH classic-request REMOTE_DISCONNECT json ",
        ] {
            let f = fixture(key);
            let envelope = Envelope::decode(&f.bytes).unwrap().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&envelope.encode()),
                String::from_utf8_lossy(&f.bytes),
                "{key}"
            );
            assert_eq!(envelope.encode(), f.bytes, "{key}");
        }
        let f = fixture("PUBLISH classic-request BROADCAST msgpack with-ack");
        let Some(Envelope {
            request: Request::BroadcastWithAck { timeout, .. },
            ..
        }) = Envelope::decode(&f.bytes).unwrap()
        else {
            panic!("not a broadcast with acks");
        };
        assert_eq!(timeout, Duration::from_millis(2500));
    }

    #[test]
    fn responses_are_written_like_node() {
        for key in [
            "PUBLISH classic-request BROADCAST_CLIENT_COUNT json ",
            "PUBLISH classic-request BROADCAST_ACK msgpack ",
            "PUBLISH classic-response json ",
        ] {
            let f = fixture(key);
            let response = Response::decode(&f.bytes).unwrap().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&response.encode()),
                String::from_utf8_lossy(&f.bytes),
                "{key}"
            );
        }
        let f = fixture("PUBLISH classic-response json ");
        let Some(Response::Sockets { sockets, .. }) = Response::decode(&f.bytes).unwrap() else {
            panic!("not a fetch answer");
        };
        assert_eq!(sockets[0].data["node"], "B");
        assert_eq!(sockets[0].auth()["name"], "B0");
        assert!(sockets[0].rooms.contains(&"room #1 ü".to_owned()));
    }

    #[test]
    fn channels_of_a_namespace() {
        let channels = Channels::new("socket.io");
        assert_eq!(channels.broadcast_pattern("/"), "socket.io#/#*");
        assert_eq!(channels.request("/other"), "socket.io-request#/other#");
        assert_eq!(
            channels.kind("/", "socket.io-response#/#0G-NSw#"),
            Some(ChannelKind::Response)
        );
        assert_eq!(
            channels.kind("/", "socket.io#/#room #1 ü#"),
            Some(ChannelKind::Broadcast {
                room: Some("room #1 ü".into())
            })
        );
        assert_eq!(channels.kind("/", "socket.io#/other#"), None);
        assert_eq!(channels.kind("/other", "socket.io#/#"), None);
        assert_eq!(
            Channels::new("a*").broadcast_pattern("/r-[1]?\\"),
            "a\\*#/r-\\[1\\]\\?\\\\#*"
        );
    }

    /// `#` in names: `socket.io#/a#b#` is `/a#b`'s main channel, and also what `/a`'s pattern
    /// sees as its room `b`; the pattern a message came through tells them apart.
    #[test]
    fn messages_are_routed_by_their_subscription() {
        let channels = Channels::new("socket.io");
        let mut routes = Routes::default();
        routes.add(&channels, "/a", "uidA");
        routes.add(&channels, "/a#b", "uidA");
        routes.add(&channels, "/room-*", "uidA");
        let message = |pattern: Option<&str>, channel: &str| Published {
            pattern: pattern.map(str::to_owned),
            channel: channel.to_owned(),
            payload: Vec::new(),
        };
        let bare = "socket.io#/a#b#";
        assert_eq!(
            routes.resolve(&channels, &message(Some("socket.io#/a#b#*"), bare)),
            Some(("/a#b".into(), ChannelKind::Broadcast { room: None }))
        );
        assert_eq!(
            routes.resolve(&channels, &message(Some("socket.io#/a#*"), bare)),
            Some((
                "/a".into(),
                ChannelKind::Broadcast {
                    room: Some("b".into())
                }
            ))
        );
        assert_eq!(
            routes.resolve(
                &channels,
                &message(Some("socket.io#/room-\\*#*"), "socket.io#/room-*#")
            ),
            Some(("/room-*".into(), ChannelKind::Broadcast { room: None }))
        );
        assert_eq!(
            routes.resolve(&channels, &message(None, "socket.io-response#/a#b#")),
            Some(("/a#b".into(), ChannelKind::Response))
        );
        assert_eq!(
            routes.resolve(&channels, &message(None, "socket.io-request#/a#")),
            Some(("/a".into(), ChannelKind::Request))
        );
        // A broadcast channel is never a plain subscription, nor a request a pattern's.
        assert_eq!(routes.resolve(&channels, &message(None, bare)), None);
    }

    proptest::proptest! {
        /// Whatever another process publishes, reading it gives a message or an error.
        #[test]
        fn any_bytes_decode_or_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = Broadcast::decode(&bytes);
            let _ = Envelope::decode(&bytes);
            let _ = Response::decode(&bytes);
            let _ = crate::sharded::decode(&bytes);
        }

        /// Broadcasts survive a round trip, whatever the rooms and arguments.
        #[test]
        fn broadcasts_round_trip(
            rooms in proptest::collection::vec("[a-z #ü]{0,8}", 0..3),
            text in ".{0,16}",
            n in proptest::prelude::any::<i64>(),
            volatile in proptest::prelude::any::<bool>(),
        ) {
            let broadcast = Broadcast {
                uid: "abcdef".into(),
                packet: sio_core::parser::Packet::event("/", "e", &(text, n), vec![]).unwrap(),
                opts: BroadcastOptions { rooms, ..Default::default() },
                volatile,
            };
            proptest::prop_assert_eq!(Broadcast::decode(&broadcast.encode()).unwrap(), broadcast);
        }
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(Broadcast::decode(b"\x92\xa1a\xa1b").is_err());
        assert!(Broadcast::decode(b"\x93\xa1a\x80\x80").is_err());
        assert!(Envelope::decode(br#"{"type":5}"#).is_err());
        assert!(Envelope::decode(br#"{"type":6,"data":1}"#).is_err());
        assert!(Response::decode(br#"{"type":8,"requestId":"x"}"#).is_err());
        assert_eq!(
            Envelope::decode(br#"{"type":1,"requestId":"x"}"#).unwrap(),
            None
        );
    }
}
