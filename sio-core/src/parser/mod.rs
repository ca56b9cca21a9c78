//! Socket.IO v5 packets: the pure codec between packets and Engine.IO messages.
//!
//! A packet is one text message, `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, followed
//! by one binary message per attachment. The namespace is left out when it is `/`; binary
//! attachments are replaced in the JSON by placeholders `{"_placeholder":true,"num":i}`.
//!
//! ```
//! use sio_core::parser::{Decoder, Limits, Packet, PacketData, encode};
//! use serde_json::json;
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let packet = decoder.decode_text(r#"2/chat,7["hi",1]"#).unwrap().unwrap();
//! assert_eq!(packet.ns, "/chat");
//! assert_eq!(encode(&packet).0, r#"2/chat,7["hi",1]"#);
//! ```

mod decode;
mod encode;
#[cfg(feature = "msgpack")]
mod msgpack;

use bytes::Bytes;
use serde_json::Value;

pub use decode::{Decoder, Limits, ParseError, RESERVED_EVENTS};
pub use encode::encode;
#[cfg(feature = "msgpack")]
pub use msgpack::{json_to_msgpack, msgpack_to_json};

/// The packet format a server speaks; every client must use the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Parser {
    /// The default format: text packets with JSON, binary attachments as extra messages.
    #[default]
    Json,
    /// `socket.io-msgpack-parser`: one MessagePack binary message per packet (feature
    /// `msgpack`).
    #[cfg(feature = "msgpack")]
    MsgPack,
}

/// The messages that carry one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A text message followed by binary attachments (JSON parser).
    Text(String, Vec<Bytes>),
    /// One binary message (MessagePack parser).
    Binary(Bytes),
}

impl Parser {
    /// Encodes a packet in this format.
    ///
    /// ```
    /// use sio_core::parser::{Encoded, Packet, PacketData, Parser};
    ///
    /// let packet = Packet { ns: "/".into(), data: PacketData::Disconnect };
    /// assert_eq!(Parser::Json.encode(&packet), Encoded::Text("1".into(), vec![]));
    /// ```
    pub fn encode(self, packet: &Packet) -> Encoded {
        self.encode_with(packet, encode)
    }

    /// [`Parser::encode`], except that a text comes as its whole Engine.IO message frame
    /// (`4` then the packet), built in one buffer.
    pub(crate) fn encode_message(self, packet: &Packet) -> Encoded {
        self.encode_with(packet, encode::encode_message)
    }

    /// The packet in this format, its text (JSON) made by `text`.
    fn encode_with(self, packet: &Packet, text: fn(&Packet) -> (String, Vec<Bytes>)) -> Encoded {
        match self {
            Parser::Json => {
                let (text, attachments) = text(packet);
                Encoded::Text(text, attachments)
            }
            #[cfg(feature = "msgpack")]
            Parser::MsgPack => Encoded::Binary(msgpack::encode(packet)),
        }
    }
}

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The namespace, starting with `/`.
    pub ns: String,
    /// What the packet carries.
    pub data: PacketData,
}

/// The kinds of Socket.IO packets and what each carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PacketData {
    /// `0`: joins a namespace (client: optional auth payload; server: `{"sid": ...}`).
    Connect(Option<Value>),
    /// `1`: leaves a namespace.
    Disconnect,
    /// `2` (`5` with attachments): an event; `args` is a JSON array whose first element is the
    /// event's name.
    Event {
        /// The event name followed by its arguments.
        args: Value,
        /// The ack id, when the sender wants an answer.
        id: Option<u64>,
        /// The binary attachments the placeholders in `args` refer to.
        attachments: Vec<Bytes>,
    },
    /// `3` (`6` with attachments): the answer to an event that had an ack id.
    Ack {
        /// The answer's arguments (a JSON array).
        args: Value,
        /// The ack id being answered.
        id: u64,
        /// The binary attachments the placeholders in `args` refer to.
        attachments: Vec<Bytes>,
    },
    /// `4`: a namespace refused the connection (`{"message": ..., "data": ...}`).
    ConnectError(Value),
}

/// The packet type digits.
mod kind {
    pub(super) const CONNECT: u8 = b'0';
    pub(super) const DISCONNECT: u8 = b'1';
    pub(super) const EVENT: u8 = b'2';
    pub(super) const ACK: u8 = b'3';
    pub(super) const CONNECT_ERROR: u8 = b'4';
    pub(super) const BINARY_EVENT: u8 = b'5';
    pub(super) const BINARY_ACK: u8 = b'6';
}
