//! How a socket is described to other nodes: the shape of Node's `RemoteSocket` details
//! (`fetchSockets()`), so that sio and Node servers in one cluster can read each other's answers.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use crate::engine::{RequestInfo, header_text};

/// Node's `socket.handshake` for the connection that `request` opened: `headers`, `time`,
/// `address`, `xdomain`, `secure`, `issued`, `url`, `query` and `auth`.
pub(crate) fn handshake(request: &RequestInfo, auth: &Value) -> Value {
    let headers: Map<String, Value> = request
        .headers()
        .filter_map(|(name, value)| {
            let value = header_text(value)?;
            Some((name.to_owned(), Value::String(value.to_owned())))
        })
        .collect();
    let query: Map<String, Value> = request
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let issued = request
        .issued
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Node's key order, so that answers read the same whichever server wrote them.
    json!({
        "headers": headers,
        "time": js_date(issued.as_secs()),
        "address": request.peer_addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        "xdomain": request.has_header("origin"),
        "secure": request.uri.scheme_str() == Some("https"),
        "issued": u64::try_from(issued.as_millis()).unwrap_or(u64::MAX),
        "url": request.uri.to_string(),
        "query": query,
        "auth": auth,
    })
}

/// A UTC time the way JavaScript's `Date.prototype.toString` writes it on a server in UTC:
/// `Sun Nov 22 2026 17:20:26 GMT+0000 (Coordinated Universal Time)`.
fn js_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday} {month} {day:02} {year} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month (1-12) and day of a count of days since 1970-01-01, by Howard Hinnant's
/// `civil_from_days` algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_like_javascript() {
        // 1795368026 is the `issued` of a handshake captured from Node (Nov 22 2026 17:20:26).
        assert_eq!(
            js_date(1_795_368_026),
            "Sun Nov 22 2026 17:20:26 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            js_date(0),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
