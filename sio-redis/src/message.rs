//! The messages nodes exchange, whatever the protocol carrying them (classic or sharded):
//! broadcasts, requests and their answers.

use std::time::Duration;

use serde_json::Value;
use sio_core::parser::Packet;
use sio_core::{AckResponse, BroadcastOptions, RemoteSocket, Room};

/// A broadcast as it travels between nodes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Broadcast {
    /// The sending node (`"emitter"` for `@socket.io/redis-emitter`).
    pub(crate) uid: String,
    pub(crate) packet: Packet,
    pub(crate) opts: BroadcastOptions,
    pub(crate) volatile: bool,
}

/// A request to the other nodes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    SocketsJoin {
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    },
    SocketsLeave {
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    },
    DisconnectSockets {
        opts: BroadcastOptions,
        close: bool,
    },
    FetchSockets {
        request_id: String,
        opts: BroadcastOptions,
    },
    /// `requestId` is present iff the sender waits for answers.
    ServerSideEmit {
        request_id: Option<String>,
        args: Vec<Value>,
    },
    BroadcastWithAck {
        request_id: String,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Duration,
    },
}

/// A request and who sent it (the emitter leaves `uid` out of types 2 to 4).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) uid: Option<String>,
    pub(crate) request: Request,
}

/// An answer on a response channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Response {
    /// The answer to a fetch (no `type` on the wire).
    Sockets {
        request_id: String,
        sockets: Vec<RemoteSocket>,
    },
    /// One node's answer to a server-side emit with ack (its handler's first ack argument).
    ServerSideEmit {
        request_id: String,
        ack: AckResponse,
    },
    /// How many clients one node sent a broadcast with acks to.
    ClientCount { request_id: String, count: u64 },
    /// One client's ack of a broadcast.
    BroadcastAck {
        request_id: String,
        ack: AckResponse,
    },
}

impl Response {
    pub(crate) fn request_id(&self) -> &str {
        match self {
            Response::Sockets { request_id, .. }
            | Response::ServerSideEmit { request_id, .. }
            | Response::ClientCount { request_id, .. }
            | Response::BroadcastAck { request_id, .. } => request_id,
        }
    }
}
