//! Engine.IO v4 polling payloads: packets joined by the record separator `\x1e`, binary packets
//! as `b` + base64. Pure functions over one request or response body.

use bytes::Bytes;
use bytestring::ByteString;

use super::packet::{DecodeError, Frame, Packet, decode_base64, decode_text, encode_base64_into};

/// Separates the packets of one polling payload.
pub const SEPARATOR: char = '\x1e';

/// Why a polling POST body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// A record is not an Engine.IO packet, or the body is not framed as a payload.
    #[error(transparent)]
    Packet(#[from] DecodeError),
    /// More records than the limit given (`max_packets_per_batch`); decoding stopped at the
    /// first one past it.
    #[error("more than {0} packets in one payload")]
    TooManyPackets(usize),
}

/// A polling POST body whose records all decode, at most the limit it was checked against.
///
/// The packets are decoded again, one at a time, as [`packets`](Self::packets) yields them:
/// a body of many tiny records never exists as a list of packets, which takes about 40 times
/// the body's size (a 2-byte `6\x1e` record becomes an 80-byte `Packet`).
///
/// ```
/// use bytes::Bytes;
/// use sio_core::engine::Packet;
/// use sio_core::engine::payload::{self, PayloadError};
///
/// let payload = payload::decode(Bytes::from_static(b"4hi\x1e6"), 8).unwrap();
/// assert_eq!(payload.len(), 2);
/// assert_eq!(payload.packets().last(), Some(Packet::Noop));
/// let many = Bytes::from_static(b"6\x1e6\x1e6");
/// assert_eq!(payload::decode(many, 2).unwrap_err(), PayloadError::TooManyPackets(2));
/// ```
#[derive(Debug, Clone)]
pub struct Payload {
    body: Body,
    len: usize,
}

/// A payload's body, in its framing.
#[derive(Debug, Clone)]
enum Body {
    V4(ByteString),
    V3Text(ByteString),
    V3Binary(Bytes),
}

impl Payload {
    /// Checks every record of `body` and counts them, stopping at the first record past `max`.
    fn check(body: Body, max: usize) -> Result<Self, PayloadError> {
        let mut payload = Payload { body, len: 0 };
        let mut len = 0;
        for record in payload.records() {
            record?;
            len += 1;
            if len > max {
                return Err(PayloadError::TooManyPackets(max));
            }
        }
        if len == 0 {
            return Err(DecodeError::Empty.into());
        }
        payload.len = len;
        Ok(payload)
    }

    /// The number of packets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no packet (never: an empty body is refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packets, in order, each decoded when it is taken.
    pub fn packets(&self) -> impl Iterator<Item = Packet> + '_ {
        // Every record decoded when the payload was checked, and decodes the same again.
        self.records().map_while(Result::ok)
    }

    fn records(&self) -> Records<'_> {
        match &self.body {
            Body::V4(text) => Records::V4 {
                text,
                records: text.split(SEPARATOR),
            },
            Body::V3Text(text) => Records::V3Text { text, rest: text },
            Body::V3Binary(body) => Records::V3Binary { body, rest: body },
        }
    }
}

/// The records of a payload, decoded one by one. A v3 payload's framing is lost after a bad
/// record, so its iterator ends there.
enum Records<'a> {
    V4 {
        text: &'a ByteString,
        records: std::str::Split<'a, char>,
    },
    V3Text {
        text: &'a ByteString,
        rest: &'a str,
    },
    V3Binary {
        body: &'a Bytes,
        rest: &'a [u8],
    },
}

impl Iterator for Records<'_> {
    type Item = Result<Packet, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Records::V4 { text, records } => {
                let record = records.next()?;
                Some(match record.strip_prefix('b') {
                    Some(base64) => decode_base64(base64),
                    None => decode_text(&text.slice_ref(record)),
                })
            }
            Records::V3Text { text, rest } => {
                if rest.is_empty() {
                    return None;
                }
                Some(match v3::next_text_record(text, rest) {
                    Ok((packet, after)) => {
                        *rest = after;
                        Ok(packet)
                    }
                    Err(err) => {
                        *rest = "";
                        Err(err)
                    }
                })
            }
            Records::V3Binary { body, rest } => {
                if rest.is_empty() {
                    return None;
                }
                Some(match v3::next_binary_record(body, rest) {
                    Ok((packet, after)) => {
                        *rest = after;
                        Ok(packet)
                    }
                    Err(err) => {
                        *rest = &[];
                        Err(err)
                    }
                })
            }
        }
    }
}

/// Decodes the body of a polling POST: checks that every record is a packet and that there are
/// at most `max_packets` of them, stopping at the first record past the limit.
///
/// The whole body is checked first: one bad record rejects the payload, so a handler never sees
/// half of a malformed batch.
pub fn decode(body: Bytes, max_packets: usize) -> Result<Payload, PayloadError> {
    let text = ByteString::try_from(body).map_err(|_| DecodeError::Utf8)?;
    Payload::check(Body::V4(text), max_packets)
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

    /// Decodes a text payload, as [`decode`] does a v4 one.
    pub fn decode_text_payload(body: Bytes, max_packets: usize) -> Result<Payload, PayloadError> {
        let text = ByteString::try_from(body).map_err(|_| DecodeError::Utf8)?;
        Payload::check(Body::V3Text(text), max_packets)
    }

    /// Decodes a binary payload, as [`decode`] does a v4 one.
    pub fn decode_binary_payload(body: Bytes, max_packets: usize) -> Result<Payload, PayloadError> {
        Payload::check(Body::V3Binary(body), max_packets)
    }

    /// The first record of `rest` (a non-empty tail of `text`) and what follows it.
    pub(super) fn next_text_record<'a>(
        text: &ByteString,
        rest: &'a str,
    ) -> Result<(Packet, &'a str), DecodeError> {
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
        Ok((decode_record(text, record)?, next))
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

    /// The first record of `rest` (a non-empty tail of `body`) and what follows it. Packets
    /// share `body`'s buffer.
    pub(super) fn next_binary_record<'a>(
        body: &Bytes,
        rest: &'a [u8],
    ) -> Result<(Packet, &'a [u8]), DecodeError> {
        let (&kind, after) = rest.split_first().ok_or(DecodeError::Empty)?;
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
        let next = after.get(len..).ok_or(DecodeError::Length)?;
        let packet = match kind {
            0 => {
                let text =
                    ByteString::try_from(body.slice_ref(record)).map_err(|_| DecodeError::Utf8)?;
                decode_text(&text)?
            }
            1 => match record.split_first() {
                Some((4, data)) => Packet::Binary(body.slice_ref(data)),
                _ => return Err(DecodeError::UnknownType('b')),
            },
            _ => return Err(DecodeError::Length),
        };
        Ok((packet, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::encode as encode_packet;
    use proptest::prelude::*;

    /// The packets of a checked payload.
    fn packets(payload: Result<Payload, PayloadError>) -> Result<Vec<Packet>, PayloadError> {
        payload.map(|payload| payload.packets().collect())
    }

    fn v4(body: &'static [u8]) -> Result<Vec<Packet>, PayloadError> {
        packets(decode(Bytes::from_static(body), usize::MAX))
    }

    #[test]
    fn decodes_the_suite_payloads() {
        assert_eq!(
            v4(b"4test1\x1e4test2\x1e4test3"),
            Ok(vec![
                Packet::Message("test1".into()),
                Packet::Message("test2".into()),
                Packet::Message("test3".into()),
            ])
        );
        assert_eq!(
            v4(b"4hello\x1ebAQIDBA=="),
            Ok(vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ])
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        let refused = |e: DecodeError| Err(PayloadError::Packet(e));
        assert_eq!(v4(b"abc"), refused(DecodeError::UnknownType('a')));
        assert_eq!(v4(b"4a\x1e"), refused(DecodeError::Empty));
        assert_eq!(v4(b""), refused(DecodeError::Empty));
        assert_eq!(v4(b"b!!"), refused(DecodeError::Base64));
        assert_eq!(v4(b"4\xff"), refused(DecodeError::Utf8));
    }

    /// 1 MB of `6\x1e` is half a million packets: decoding stops at the first record past the
    /// limit, before the bad record that follows it (a decoder that went on would report that
    /// one), and nothing of the body is ever a list of packets.
    #[test]
    fn a_batch_over_the_limit_is_refused_at_the_first_record_past_it() {
        let max = 1024;
        let mut body = "6\x1e".repeat(max + 1);
        body.push('x');
        assert_eq!(
            decode(Bytes::from(body.clone()), max).map(|p| p.len()),
            Err(PayloadError::TooManyPackets(max))
        );
        assert_eq!(
            decode(Bytes::from(body), max + 2).map(|p| p.len()),
            Err(PayloadError::Packet(DecodeError::UnknownType('x')))
        );
        let megabyte = Bytes::from("6\x1e".repeat(500_000) + "6");
        assert_eq!(
            decode(megabyte.clone(), max).map(|p| p.len()),
            Err(PayloadError::TooManyPackets(max))
        );
        let all = decode(megabyte, usize::MAX).unwrap();
        assert_eq!(all.len(), 500_001);
        assert_eq!(
            all.packets().filter(|p| *p == Packet::Noop).count(),
            500_001
        );
        for max in [0, 1] {
            let two = || Bytes::from_static(b"3\x1e6");
            assert_eq!(
                decode(two(), max).map(|p| p.len()),
                Err(PayloadError::TooManyPackets(max))
            );
            let three = "2:403:4ab";
            assert_eq!(
                v3::decode_text_payload(Bytes::from(three), max).map(|p| p.len()),
                Err(PayloadError::TooManyPackets(max))
            );
            let binary = Bytes::from_static(&[0, 1, 255, b'6', 0, 1, 255, b'6']);
            assert_eq!(
                v3::decode_binary_payload(binary, max).map(|p| p.len()),
                Err(PayloadError::TooManyPackets(max))
            );
        }
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
        assert_eq!(
            packets(v3::decode_text_payload(text, 3)),
            Ok(expected.clone())
        );
        let mut binary = v3::encode_binary(&frames);
        binary.extend([0, 3, 255, b'4', 0xc3, 0xa9]);
        assert_eq!(
            packets(v3::decode_binary_payload(binary.into(), 3)),
            Ok(expected)
        );
        for bad in ["", "abc", "9:4hello", "2:4hello", "x:4", "2:4a1:"] {
            assert!(
                v3::decode_text_payload(Bytes::from(bad), usize::MAX).is_err(),
                "{bad:?}"
            );
        }
        for bad in [
            &[0u8][..],
            &[0, 10, 255],
            &[2, 1, 255, 52],
            &[0, 5, 255, 52],
            &[0, 1, 255, 0xff],
        ] {
            let body = Bytes::copy_from_slice(bad);
            assert!(
                v3::decode_binary_payload(body, usize::MAX).is_err(),
                "{bad:?}"
            );
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
        fn payloads_round_trip(sent in prop::collection::vec(any_packet(), 1..8)) {
            let frames: Vec<Frame> = sent.iter().map(encode_packet).collect();
            let max = sent.len();
            prop_assert_eq!(packets(decode(encode(&frames).into(), max)), Ok(sent));
        }

        #[test]
        fn any_bytes_decode_or_error(body in any::<Vec<u8>>()) {
            for max in [0, 3, usize::MAX] {
                let _ = packets(decode(body.clone().into(), max));
                let _ = packets(v3::decode_text_payload(body.clone().into(), max));
                let _ = packets(v3::decode_binary_payload(body.clone().into(), max));
            }
        }
    }
}
