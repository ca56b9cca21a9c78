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

/// Engine.IO v3 payloads (`allow_eio3`): length-prefixed records, as text (`6:4hello`, binary
/// as `b4` + base64) or, for clients that take binary bodies, as a binary body where each record
/// is `[0 | 1] <length digits> 0xff <bytes>`.
pub mod v3 {
    use super::*;
    use crate::engine::packet::{decode_base64, decode_text};

    /// Encodes frames as a text payload; lengths count UTF-16 code units, as JavaScript does.
    pub fn encode_text<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> String {
        let mut out = String::new();
        for frame in frames {
            let record = match frame {
                Frame::Text(text) => text.to_string(),
                Frame::Binary(data) => {
                    let mut record = String::from("b4");
                    encode_base64_into(data, &mut record);
                    record
                }
            };
            out.push_str(&record.encode_utf16().count().to_string());
            out.push(':');
            out.push_str(&record);
        }
        out
    }

    /// Encodes frames as a binary payload (lengths count bytes; binary records carry their
    /// packet type byte).
    pub fn encode_binary<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            let (kind, head, body): (u8, &[u8], &[u8]) = match frame {
                Frame::Text(text) => (0, &[], text.as_bytes()),
                Frame::Binary(data) => (1, &[4], data),
            };
            out.push(kind);
            let len = head.len() + body.len();
            out.extend(len.to_string().bytes().map(|d| d - b'0'));
            out.push(0xff);
            out.extend_from_slice(head);
            out.extend_from_slice(body);
        }
        out
    }

    /// Decodes a text payload.
    pub fn decode_text_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
        let text = ByteString::try_from(body).map_err(|_| DecodeError::Utf8)?;
        let mut rest: &str = &text;
        let mut packets = Vec::new();
        while !rest.is_empty() {
            let (len, after) = rest.split_once(':').ok_or(DecodeError::Length)?;
            let len: usize = len.parse().map_err(|_| DecodeError::Length)?;
            // `len` counts UTF-16 code units: find the byte offset where they end.
            let mut units = 0;
            let end = after
                .char_indices()
                .find_map(|(i, c)| {
                    let at = (units >= len).then_some(i);
                    units += c.len_utf16();
                    at
                })
                .or((units == len).then_some(after.len()))
                .ok_or(DecodeError::Length)?;
            let (record, next) = after.split_at(end);
            packets.push(decode_record(&text, record)?);
            rest = next;
        }
        if packets.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(packets)
    }

    fn decode_record(text: &ByteString, record: &str) -> Result<Packet, DecodeError> {
        match record.strip_prefix('b') {
            Some(typed) => match typed.strip_prefix('4') {
                Some(base64) => decode_base64(base64),
                None => Err(DecodeError::UnknownType('b')),
            },
            None => decode_text(&text.slice_ref(record)),
        }
    }

    /// Decodes a binary payload.
    pub fn decode_binary_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
        let mut rest = body;
        let mut packets = Vec::new();
        while let Some((&kind, after)) = rest.split_first() {
            let digits = after
                .iter()
                .position(|&b| b == 0xff)
                .ok_or(DecodeError::Length)?;
            let (len_digits, after) = after.split_at(digits);
            if len_digits.is_empty() || len_digits.len() > 9 || len_digits.iter().any(|&d| d > 9) {
                return Err(DecodeError::Length);
            }
            let len = len_digits
                .iter()
                .fold(0usize, |n, &d| n * 10 + usize::from(d));
            let after = after.get(1..).ok_or(DecodeError::Length)?;
            let record = after.get(..len).ok_or(DecodeError::Length)?;
            rest = after.get(len..).ok_or(DecodeError::Length)?;
            packets.push(match kind {
                0 => {
                    let text = std::str::from_utf8(record).map_err(|_| DecodeError::Utf8)?;
                    decode_text(&ByteString::from(text))?
                }
                1 => match record.split_first() {
                    Some((4, data)) => Packet::Binary(Bytes::copy_from_slice(data)),
                    _ => return Err(DecodeError::UnknownType('b')),
                },
                _ => return Err(DecodeError::Length),
            });
        }
        if packets.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(packets)
    }
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
    fn v3_payloads_match_the_suite() {
        let frames = [
            Frame::message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(v3::encode_text(&frames), "6:4hello10:b4AQIDBA==");
        assert_eq!(
            v3::encode_binary(&frames),
            [
                0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4
            ]
        );
        let text = Bytes::from_static("6:4hello10:b4AQIDBA==2:4é".as_bytes());
        let expected = vec![
            Packet::Message("hello".into()),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Packet::Message("é".into()),
        ];
        assert_eq!(v3::decode_text_payload(text), Ok(expected.clone()));
        let mut binary = v3::encode_binary(&frames);
        binary.extend([0, 3, 255, b'4', 0xc3, 0xa9]);
        assert_eq!(v3::decode_binary_payload(&binary), Ok(expected));
        for bad in ["", "abc", "9:4hello", "2:4hello", "x:4"] {
            assert!(
                v3::decode_text_payload(Bytes::from(bad)).is_err(),
                "{bad:?}"
            );
        }
        for bad in [
            &[0u8][..],
            &[0, 10, 255],
            &[2, 1, 255, 52],
            &[0, 5, 255, 52],
        ] {
            assert!(v3::decode_binary_payload(bad).is_err(), "{bad:?}");
        }
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
            let _ = decode(body.clone().into());
            let _ = v3::decode_text_payload(body.clone().into());
            let _ = v3::decode_binary_payload(&body);
        }
    }
}
