//! Turning a Socket.IO packet into the Engine.IO frames that carry it.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::args::to_args;
use crate::engine::{Frame, SendError};
use crate::parser::{Encoded, Packet, PacketData, Parser};

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The data does not serialize to JSON.
    #[error("cannot serialize the data: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The socket's session is closed, or its outbound buffer is full (see
    /// [`EngineConfig::max_buffer_size`](crate::engine::EngineConfig::max_buffer_size)).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The cluster backend could not carry the operation.
    #[error(transparent)]
    Adapter(#[from] crate::adapter::AdapterError),
}

impl Packet {
    /// An EVENT packet, as `emit` builds it: `data` becomes the arguments (a tuple is several,
    /// `()` none, anything else one; see [`Args`](crate::Args)) and `attachments` binary
    /// arguments. For sending events from outside a server, such as a Redis emitter.
    ///
    /// ```
    /// use sio_core::parser::{Packet, encode};
    ///
    /// let packet = Packet::event("/", "score", &(1, "two"), vec![]).unwrap();
    /// assert_eq!(encode(&packet).0, r#"2["score",1,"two"]"#);
    /// ```
    pub fn event<T: Serialize + ?Sized>(
        ns: &str,
        event: &str,
        data: &T,
        attachments: Vec<Bytes>,
    ) -> Result<Packet, serde_json::Error> {
        let mut args = vec![Value::String(event.to_owned())];
        args.extend(with_placeholders(to_args(data)?, &attachments));
        Ok(Packet {
            ns: ns.to_owned(),
            data: PacketData::Event {
                args: Value::Array(args),
                id: None,
                attachments,
            },
        })
    }
}

/// The frames of one packet: its text then its binary attachments (JSON), or one binary
/// message (MessagePack).
pub(crate) fn frames(parser: Parser, packet: &Packet) -> Vec<Frame> {
    match parser.encode_message(packet) {
        Encoded::Text(frame, attachments) => {
            let mut frames = Vec::with_capacity(1 + attachments.len());
            frames.push(Frame::Text(frame.into()));
            frames.extend(attachments.into_iter().map(Frame::Binary));
            frames
        }
        Encoded::Binary(data) => vec![Frame::Binary(data)],
    }
}

/// Arguments for a packet with `attachments`: when the arguments hold no placeholder (the
/// attachments were added with `.bin(...)`), one placeholder argument per attachment is
/// appended, so the client receives each as an argument; arguments that already reference
/// them (an event being forwarded) are kept as they are.
pub(crate) fn with_placeholders(mut args: Vec<Value>, attachments: &[Bytes]) -> Vec<Value> {
    if !attachments.is_empty() && !args.iter().any(has_placeholder) {
        args.extend((0..attachments.len()).map(|num| {
            let mut placeholder = serde_json::Map::new();
            placeholder.insert("_placeholder".into(), Value::Bool(true));
            placeholder.insert("num".into(), num.into());
            Value::Object(placeholder)
        }));
    }
    args
}

fn has_placeholder(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.get("_placeholder") == Some(&Value::Bool(true)) || map.values().any(has_placeholder)
        }
        Value::Array(items) => items.iter().any(has_placeholder),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_added_only_when_missing() {
        let bin = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(
            with_placeholders(vec![json!("x")], &bin),
            vec![
                json!("x"),
                json!({"_placeholder": true, "num": 0}),
                json!({"_placeholder": true, "num": 1})
            ]
        );
        let forwarded = vec![json!({"f": {"_placeholder": true, "num": 0}})];
        assert_eq!(with_placeholders(forwarded.clone(), &bin), forwarded);
        assert_eq!(with_placeholders(vec![json!(1)], &[]), vec![json!(1)]);
    }
}
