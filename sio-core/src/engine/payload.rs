//! Engine.IO v4 polling payloads: packets joined by the record separator `\x1e`, binary packets
//! as `b` + base64. Pure functions over one request or response body.

use bytes::Bytes;
use bytestring::ByteString;

use super::packet::{DecodeError, Frame, Packet, decode_base64, decode_text, encode_base64_into};

/// Separates the packets of one polling payload.
pub const SEPARATOR: char = '\x1e';

/// Decodes the body of a polling POST into its packets, in order.
///
/// The whole body is checked first: one bad record rejects the payload, so a handler never sees
/// half of a malformed batch.
pub fn decode(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let text = ByteString::try_from(body).map_err(|_| DecodeError::Utf8)?;
    text.split(SEPARATOR)
        .map(|record| match record.strip_prefix('b') {
            Some(base64) => decode_base64(base64),
            None => decode_text(&text.slice_ref(record)),
        })
        .collect()
}

/// Encodes frames as the body of a polling GET answer.
pub fn encode<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> String {
    let mut out = String::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.push_str(text),
            Frame::Binary(data) => {
                out.push('b');
                encode_base64_into(data, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::encode as encode_packet;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_suite_payloads() {
        assert_eq!(
            decode(Bytes::from_static(b"4test1\x1e4test2\x1e4test3")),
            Ok(vec![
                Packet::Message("test1".into()),
                Packet::Message("test2".into()),
                Packet::Message("test3".into()),
            ])
        );
        assert_eq!(
            decode(Bytes::from_static(b"4hello\x1ebAQIDBA==")),
            Ok(vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ])
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(
            decode(Bytes::from_static(b"abc")),
            Err(DecodeError::UnknownType('a'))
        );
        assert_eq!(
            decode(Bytes::from_static(b"4a\x1e")),
            Err(DecodeError::Empty)
        );
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(decode(Bytes::from_static(b"b!!")), Err(DecodeError::Base64));
        assert_eq!(decode(Bytes::from_static(b"4\xff")), Err(DecodeError::Utf8));
    }

    #[test]
    fn encodes_text_and_binary() {
        let frames = [
            Frame::message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::Text("6".into()),
        ];
        assert_eq!(encode(&frames), "4hello\x1ebAQIDBA==\x1e6");
        assert_eq!(
            encode(&frames).len(),
            frames.iter().map(Frame::payload_len).sum::<usize>() + 2
        );
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            Just(Packet::Close),
            Just(Packet::Pong),
            Just(Packet::Noop),
            "[^\x1e]*".prop_map(|s| Packet::Message(s.into())),
            any::<Vec<u8>>().prop_map(|b| Packet::Binary(b.into())),
        ]
    }

    proptest! {
        #[test]
        fn payloads_round_trip(packets in prop::collection::vec(any_packet(), 1..8)) {
            let frames: Vec<Frame> = packets.iter().map(encode_packet).collect();
            prop_assert_eq!(decode(encode(&frames).into()), Ok(packets));
        }

        #[test]
        fn any_bytes_decode_or_error(body in any::<Vec<u8>>()) {
            let _ = decode(body.into());
        }
    }
}
