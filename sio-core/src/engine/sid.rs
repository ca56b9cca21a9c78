//! Session ids: random, URL-safe, and carrying the id of the node that owns the session, so that
//! any node of a cluster can tell where a request for a session belongs.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const NODE_LEN: usize = 4;
const LEN: usize = 16;
/// Length of the text form: 16 bytes in unpadded base64url.
const TEXT_LEN: usize = 22;
/// Node's socket and private session ids: 15 random bytes in base64url, 20 characters.
const PEER_LEN: usize = 15;
const PEER_TEXT_LEN: usize = 20;

/// A session (or socket) id: 4 bytes of node id followed by 12 random bytes, written as 22
/// characters of unpadded base64url.
///
/// ```
/// use sio_core::engine::Sid;
///
/// let sid = Sid::new(7);
/// assert_eq!(sid.node_id(), 7);
/// assert_eq!(sid.to_string().parse::<Sid>(), Ok(sid));
/// ```
///
/// A socket that a Node server made and a sio server recovered (connection state recovery
/// across a mixed cluster) keeps Node's id, of 20 characters; such ids are never session ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    bytes: [u8; LEN],
    /// A Node server's id: the first 15 bytes are its.
    peer: bool,
}

impl Sid {
    /// A new random id owned by `node_id`.
    pub fn new(node_id: u32) -> Self {
        let mut bytes: [u8; LEN] = rand::random();
        bytes[..NODE_LEN].copy_from_slice(&node_id.to_be_bytes());
        Sid { bytes, peer: false }
    }

    /// The id of the node that created this id.
    pub fn node_id(&self) -> u32 {
        let [a, b, c, d, ..] = self.bytes;
        u32::from_be_bytes([a, b, c, d])
    }

    /// A socket or private session id as sio or a Node server writes it (Node's have 20
    /// characters).
    pub(crate) fn parse_socket_id(text: &str) -> Result<Self, InvalidSid> {
        if text.len() != PEER_TEXT_LEN {
            return text.parse();
        }
        let mut bytes = [0u8; LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(PEER_LEN) => Ok(Sid { bytes, peer: true }),
            _ => Err(InvalidSid),
        }
    }
}

/// The text is not a sid this server could have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id")]
pub struct InvalidSid;

impl FromStr for Sid {
    type Err = InvalidSid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != TEXT_LEN {
            return Err(InvalidSid);
        }
        let mut bytes = [0u8; LEN];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(LEN) => Ok(Sid { bytes, peer: false }),
            _ => Err(InvalidSid),
        }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; TEXT_LEN];
        // 16 bytes always encode to exactly 22 characters (15 to 20).
        let bytes = match self.peer {
            true => self.bytes.get(..PEER_LEN).ok_or(fmt::Error)?,
            false => &self.bytes,
        };
        let n = URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut buf)
            .map_err(|_| fmt::Error)?;
        let text = std::str::from_utf8(buf.get(..n).ok_or(fmt::Error)?).map_err(|_| fmt::Error)?;
        f.write_str(text)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_url_safe_and_unique() {
        let a = Sid::new(1);
        let b = Sid::new(1);
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), TEXT_LEN);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn node_socket_ids_are_kept_as_they_are_but_are_no_session_ids() {
        let node = "xCGgxS3ah-bo5mSWAAAA";
        let sid = Sid::parse_socket_id(node).unwrap();
        assert_eq!(sid.to_string(), node);
        assert_eq!(node.parse::<Sid>(), Err(InvalidSid));
        let ours = Sid::new(3);
        assert_eq!(Sid::parse_socket_id(&ours.to_string()), Ok(ours));
        assert_eq!(
            Sid::parse_socket_id("!!!!!!!!!!!!!!!!!!!!"),
            Err(InvalidSid)
        );
    }

    #[test]
    fn rejects_foreign_ids() {
        assert_eq!("".parse::<Sid>(), Err(InvalidSid));
        assert_eq!("abc".parse::<Sid>(), Err(InvalidSid));
        assert_eq!("!!!!!!!!!!!!!!!!!!!!!!".parse::<Sid>(), Err(InvalidSid));
    }

    proptest! {
        #[test]
        fn round_trips(node in any::<u32>()) {
            let sid = Sid::new(node);
            prop_assert_eq!(sid.to_string().parse::<Sid>(), Ok(sid));
            prop_assert_eq!(sid.node_id(), node);
        }

        #[test]
        fn any_text_parses_or_errors(s in any::<String>()) {
            let _ = s.parse::<Sid>();
        }
    }
}
