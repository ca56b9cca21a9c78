//! The part of RESP2 a subscriber connection reads: what Redis sends in subscribed mode
//! (message, pattern and shard messages, subscription confirmations, pongs, errors). A pure,
//! incremental parser: it says when a frame is not complete yet.

/// One value Redis sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Frame>>),
}

/// Bytes that are not RESP2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RESP from Redis: {0}")]
pub(crate) struct RespError(&'static str);

/// Deepest nesting accepted (subscribed mode sends flat arrays).
const MAX_DEPTH: usize = 8;

/// Parses one frame at the start of `buf`: the frame and how many bytes it took, or `None`
/// when more bytes are needed.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Frame, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError("nesting too deep"));
    }
    let Some(kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    Ok(Some(match kind {
        b'+' => (Frame::Simple(text()), next),
        b'-' => (Frame::Error(text()), next),
        b':' => (Frame::Integer(number(line)?), next),
        b'$' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Frame::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| RespError("bulk length"))?;
            let end = next.checked_add(len).ok_or(RespError("bulk length"))?;
            let Some(data) = buf.get(next..end) else {
                return Ok(None);
            };
            match buf.get(end..end + 2) {
                None | Some([b'\r']) => return Ok(None),
                Some(b"\r\n") => (Frame::Bulk(Some(data.to_vec())), end + 2),
                Some(_) => return Err(RespError("bulk string not terminated")),
            }
        }
        b'*' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Frame::Array(None), next)));
            }
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..len {
                let Some((item, after)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            (Frame::Array(Some(items)), at)
        }
        _ => return Err(RespError("unknown type byte")),
    }))
}

/// The line starting at `at` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((rest.get(..end)?, at + end + 2))
}

fn number(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError("not a number"))
}

/// A message published on a channel this connection subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The pattern it matched (`pmessage`): the subscription it came through, which the
    /// channel alone does not always tell (Redis sends one `pmessage` per matching pattern).
    pub(crate) pattern: Option<String>,
    pub(crate) channel: String,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    /// A pub/sub message (`message`, `pmessage` and `smessage`).
    pub(crate) fn into_message(self) -> Option<Published> {
        let Frame::Array(Some(items)) = self else {
            return None;
        };
        let mut items = items.into_iter();
        let kind = match items.next()? {
            Frame::Bulk(Some(kind)) => kind,
            _ => return None,
        };
        let pattern = match kind.as_slice() {
            b"pmessage" => match items.next()? {
                Frame::Bulk(Some(pattern)) => Some(String::from_utf8(pattern).ok()?),
                _ => return None,
            },
            b"message" | b"smessage" => None,
            _ => return None,
        };
        match (items.next()?, items.next()?) {
            (Frame::Bulk(Some(channel)), Frame::Bulk(Some(payload))) => Some(Published {
                pattern,
                channel: String::from_utf8(channel).ok()?,
                payload,
            }),
            _ => None,
        }
    }

    /// Whether this confirms a subscription (`subscribe`, `psubscribe`, `ssubscribe`).
    pub(crate) fn is_subscription(&self) -> bool {
        matches!(self, Frame::Array(Some(items)) if matches!(items.first(),
            Some(Frame::Bulk(Some(kind))) if matches!(kind.as_slice(), b"subscribe" | b"psubscribe" | b"ssubscribe")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_a_subscriber_gets() {
        let msg = b"*4\r\n$8\r\npmessage\r\n$3\r\na#*\r\n$3\r\na#b\r\n$2\r\n\x93\x00\r\n";
        let (frame, used) = parse(msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        assert_eq!(
            frame.into_message(),
            Some(Published {
                pattern: Some("a#*".into()),
                channel: "a#b".into(),
                payload: vec![0x93, 0]
            })
        );
        let confirm = b"*3\r\n$10\r\nssubscribe\r\n$1\r\nx\r\n:1\r\n";
        let (frame, _) = parse(confirm).unwrap().unwrap();
        assert!(frame.is_subscription());
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Frame::Error("ERR no".into()), 9))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Frame::Bulk(None), 5)));
    }

    #[test]
    fn incomplete_frames_wait_for_more() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(msg).unwrap().is_some());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"$x\r\n").is_err());
        assert!(parse(b"$1\r\nabc").is_err());
        assert!(parse(&b"*1\r\n".repeat(20)).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
