//! Redis Cluster's hash slots, for sharded pub/sub: a shard channel lives on the node that owns
//! its slot, which is where it must be published (`SPUBLISH`) and subscribed (`SSUBSCRIBE`).

use redis::Value;

/// Slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The slot of a key or shard channel: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole name, modulo 16384.
pub(crate) fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key
        .find('{')
        .and_then(|open| {
            let rest = bytes.get(open + 1..)?;
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(bytes);
    crc16(tagged) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which master owns which slots (`CLUSTER SLOTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap {
    ranges: Vec<(u16, u16, (String, u16))>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` answer: `[[start, end, [host, port, id, ...], replicas...], ...]`.
    pub(crate) fn from_reply(reply: &Value) -> Option<Self> {
        let Value::Array(entries) = reply else {
            return None;
        };
        let mut ranges = Vec::new();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return None;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = match master.first()? {
                Value::BulkString(host) => String::from_utf8_lossy(host).into_owned(),
                Value::SimpleString(host) => host.clone(),
                _ => return None,
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return None;
            };
            ranges.push((
                u16::try_from(*start).ok()?,
                u16::try_from(*end).ok()?,
                (host, u16::try_from(*port).ok()?),
            ));
        }
        Some(SlotMap { ranges })
    }

    /// The master that owns the slot of `channel`.
    pub(crate) fn owner(&self, channel: &str) -> Option<&(String, u16)> {
        let slot = key_slot(channel);
        self.ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, node)| node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_s() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    }

    #[test]
    fn slot_map_from_cluster_slots() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(8191), node(7000)]),
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                node(7001),
                node(7002),
            ]),
        ]);
        let map = SlotMap::from_reply(&reply).unwrap();
        assert_eq!(map.owner("foo"), Some(&("127.0.0.1".to_owned(), 7001)));
        assert_eq!(map.owner("bar"), Some(&("127.0.0.1".to_owned(), 7000)));
        assert_eq!(SlotMap::from_reply(&Value::Int(1)), None);
    }
}
