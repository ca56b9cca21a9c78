//! The handshake request's headers, kept compactly for the life of a session.
//!
//! A session keeps its handshake's headers for `socket.handshake` (Node exposes them all), so
//! they live as long as the connection. A cloned `HeaderMap` costs its hash index plus one
//! `Bytes` per value, and those values are slices of the HTTP layer's read buffer: holding them
//! keeps that whole buffer allocated. Here they are copied into one exact-size allocation.

use actix_web::http::header::HeaderMap;

/// The headers of the request that opened a session: lowercase names, raw values, in the
/// request's order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers {
    /// Every name followed by its value, back to back.
    bytes: Box<[u8]>,
    /// For each header, where its name ends and where its value ends in `bytes`.
    ends: Box<[(u32, u32)]>,
}

impl Headers {
    pub(crate) fn new(map: &HeaderMap) -> Self {
        let len: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        // Offsets are u32: a request's head is bounded far below 4 GiB by the HTTP layer; past
        // that (never in practice) the headers are dropped rather than truncated silently.
        if u32::try_from(len).is_err() {
            return Headers::default();
        }
        let mut bytes = Vec::with_capacity(len);
        let mut ends = Vec::with_capacity(map.len());
        for (name, value) in map.iter() {
            bytes.extend_from_slice(name.as_str().as_bytes());
            let name_end = bytes.len() as u32;
            bytes.extend_from_slice(value.as_bytes());
            ends.push((name_end, bytes.len() as u32));
        }
        Headers {
            bytes: bytes.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// Every header as (lowercase name, raw value), in the request's order; a repeated header
    /// appears once per value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let mut start = 0usize;
        self.ends.iter().filter_map(move |&(name_end, value_end)| {
            let (name_end, value_end) = (name_end as usize, value_end as usize);
            let name = self.bytes.get(start..name_end)?;
            let value = self.bytes.get(name_end..value_end)?;
            start = value_end;
            // Names come from `HeaderName::as_str`, so they are ASCII.
            Some((std::str::from_utf8(name).ok()?, value))
        })
    }

    /// The first value of the header `name` (any case).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// A header value as text, when it is what `HeaderValue::to_str` accepts (visible ASCII,
/// spaces and tabs).
pub(crate) fn header_text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn keeps_every_header_and_its_order() {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static("host"),
            HeaderValue::from_static("a"),
        );
        map.append(
            HeaderName::from_static("x-many"),
            HeaderValue::from_static("1"),
        );
        map.append(
            HeaderName::from_static("x-many"),
            HeaderValue::from_static("2"),
        );
        map.insert(
            HeaderName::from_static("origin"),
            HeaderValue::from_bytes(b"\xffraw").unwrap(),
        );
        let headers = Headers::new(&map);
        let all: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(all.len(), 4);
        assert!(all.contains(&("host", &b"a"[..])));
        assert!(all.contains(&("x-many", &b"1"[..])));
        assert!(all.contains(&("x-many", &b"2"[..])));
        assert_eq!(headers.get("Origin"), Some(&b"\xffraw"[..]));
        assert_eq!(headers.get("X-MANY"), Some(&b"1"[..]));
        assert_eq!(headers.get("cookie"), None);
        assert_eq!(headers.get("origin").and_then(header_text), None);
        assert_eq!(headers.get("host").and_then(header_text), Some("a"));
    }

    #[test]
    fn no_headers() {
        let headers = Headers::new(&HeaderMap::new());
        assert_eq!(headers.iter().count(), 0);
        assert_eq!(headers.get("host"), None);
    }
}
