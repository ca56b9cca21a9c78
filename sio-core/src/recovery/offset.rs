//! The offset a client remembers without a shared log (see [`Recovery`](super::Recovery)):
//! for every node that broadcast lately, how far the serving node had delivered that node's
//! broadcasts when it sent the event, and the event's position in the serving node's log.
//! Every node numbers its own broadcasts, and a node delivers another's in the order it sent
//! them, so the numbers mean the same on every node, whatever order each delivered the nodes'
//! broadcasts in; the position serves a client that comes back to the node it left.
//!
//! Written `<id><scope><n>` per mark, joined by `.`, then `.` and a 2-character check:
//! `k3Jd9_Qa:1f.0aZz-x_Q!0.Pq8Rw2xZ~5b.oC`. An id is 8 random base64url characters (one
//! node's numbering in a namespace, new at each start); the scope is `:` for a node's
//! broadcasts to the cluster, `!` for those to its own sockets only (`local()`), `~` for the
//! position in the serving node's log; `n` is lower-case hexadecimal. The check (12 bits of a
//! hash of the rest) is what keeps an application's own last string argument from passing for
//! an offset when it comes from a node or an emitter that adds none.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Characters of an origin.
const ORIGIN_LEN: usize = 8;
/// Marks an offset may hold at most: offsets come from clients too.
const MAX_MARKS: usize = 1024;
/// The base64url alphabet, for the check.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What a mark counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// One node's broadcasts to the cluster.
    Cluster,
    /// One node's broadcasts to its own sockets only: the other nodes never see them, and must
    /// not wait for them.
    Local,
    /// The broadcasts one node logged, in its order.
    Log,
}

impl Scope {
    fn tag(self) -> char {
        match self {
            Scope::Cluster => ':',
            Scope::Local => '!',
            Scope::Log => '~',
        }
    }
}

/// A numbering: one node's (in one namespace, since it started, or since it last broadcast if
/// that was too long ago: see `Recovery`), in one [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    id: [u8; ORIGIN_LEN],
    scope: Scope,
}

impl Origin {
    /// A new numbering, random.
    pub(crate) fn random(scope: Scope) -> Self {
        let bytes: [u8; 6] = rand::random();
        let mut id = [0u8; ORIGIN_LEN];
        // 6 bytes always encode to exactly 8 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(bytes, &mut id);
        Origin { id, scope }
    }

    pub(crate) fn scope(self) -> Scope {
        self.scope
    }
}

/// Where a client stands: per numbering, the last broadcast the serving node had delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Offset {
    marks: Vec<(Origin, u64)>,
}

impl Offset {
    pub(crate) fn new(marks: Vec<(Origin, u64)>) -> Self {
        Offset { marks }
    }

    /// The offset in `text`; `None` when it is not one (see the module's documentation).
    pub(crate) fn parse(text: &str) -> Option<Offset> {
        let (body, check) = text.rsplit_once('.')?;
        if check.as_bytes() != checksum(body) {
            return None;
        }
        let mut marks = Vec::new();
        for mark in body.split('.') {
            if marks.len() == MAX_MARKS {
                return None;
            }
            let id = mark.as_bytes().get(..ORIGIN_LEN)?;
            if !id.iter().all(|b| ALPHABET.contains(b)) {
                return None;
            }
            let scope = match mark.as_bytes().get(ORIGIN_LEN)? {
                b':' => Scope::Cluster,
                b'!' => Scope::Local,
                b'~' => Scope::Log,
                _ => return None,
            };
            let seq = mark.get(ORIGIN_LEN + 1..)?;
            // Written as `Display` writes them, and no other way: one offset, one text.
            if seq.is_empty()
                || seq.len() > 16
                || (seq.len() > 1 && seq.starts_with('0'))
                || !seq.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return None;
            }
            let mut origin = Origin {
                id: [0; ORIGIN_LEN],
                scope,
            };
            origin.id.copy_from_slice(id);
            marks.push((origin, u64::from_str_radix(seq, 16).ok()?));
        }
        Some(Offset { marks })
    }

    pub(crate) fn marks(&self) -> &[(Origin, u64)] {
        &self.marks
    }

    /// The last broadcast of `origin` the client stands after.
    pub(crate) fn get(&self, origin: Origin) -> Option<u64> {
        self.marks
            .iter()
            .find(|(o, _)| *o == origin)
            .map(|(_, seq)| *seq)
    }

    /// Where a client stands once it got both what `self` (an event's offset) and what
    /// `other` say: per numbering, the further of the two. Log positions are `self`'s only:
    /// the event was the last the client got, and it came from `self`'s node.
    pub(crate) fn join(&self, other: &Offset) -> Offset {
        let mut marks = self.marks.clone();
        for &(origin, seq) in other.marks.iter().filter(|(o, _)| o.scope != Scope::Log) {
            match marks.iter_mut().find(|(o, _)| *o == origin) {
                Some((_, mine)) => *mine = (*mine).max(seq),
                None => marks.push((origin, seq)),
            }
        }
        Offset { marks }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut body = String::with_capacity(self.marks.len() * 14);
        for (i, (origin, seq)) in self.marks.iter().enumerate() {
            if i > 0 {
                body.push('.');
            }
            // Origins are made of base64url characters only.
            body.extend(origin.id.iter().map(|&b| char::from(b)));
            body.push(origin.scope.tag());
            write!(body, "{seq:x}")?;
        }
        let [a, b] = checksum(&body);
        write!(f, "{body}.{}{}", char::from(a), char::from(b))
    }
}

/// 12 bits of the FNV-1a hash of `body`, as 2 base64url characters.
fn checksum(body: &str) -> [u8; 2] {
    let hash = body.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // Masked to 6 bits: always in the alphabet.
    [hash, hash >> 6].map(|bits| ALPHABET.get((bits & 63) as usize).copied().unwrap_or(b'A'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_back_as_written_and_nothing_else_reads() {
        let a = Origin {
            id: *b"k3Jd9_Qa",
            scope: Scope::Cluster,
        };
        let b = Origin {
            id: *b"0aZz-x_Q",
            scope: Scope::Local,
        };
        let c = Origin {
            id: *b"Pq8Rw2xZ",
            scope: Scope::Log,
        };
        let offset = Offset::new(vec![(a, 0x1f), (b, 0), (c, 0x5b)]);
        let text = offset.to_string();
        assert_eq!(text, "k3Jd9_Qa:1f.0aZz-x_Q!0.Pq8Rw2xZ~5b.oC");
        assert_eq!(Offset::parse(&text), Some(offset));
        // One character changed anywhere, and it is no offset.
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(Offset::parse(&changed), None, "{changed}");
        }
        let single = Offset::new(vec![(a, 7)]).to_string();
        for text in [
            "",
            ".",
            "hello",
            "username:1",
            "username:1.ab",
            &single.replace(":7", ":07"),
            &format!("{single}.{single}"),
        ] {
            assert_eq!(Offset::parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_join_takes_the_further_mark_of_each_origin_and_the_event_s_position() {
        let [a, b, c] = [0; 3].map(|_| Origin::random(Scope::Cluster));
        let [here, there] = [0; 2].map(|_| Origin::random(Scope::Log));
        let left = Offset::new(vec![(a, 3), (b, 1), (here, 7)]);
        let right = Offset::new(vec![(b, 4), (c, 0), (there, 9)]);
        assert_eq!(
            left.join(&right),
            Offset::new(vec![(a, 3), (b, 4), (here, 7), (c, 0)])
        );
        assert_eq!(left.join(&right).get(a), Some(3));
        assert_eq!(right.get(a), None);
    }
}
