//! The seam through which a cluster backend that keeps a shared, ordered log of broadcasts
//! (Redis streams) owns the recovery offsets and replays what a returning client missed,
//! including what was broadcast before this node started.

use std::cmp::Ordering;
use std::fmt;

use crate::adapter::{BackendFuture, BroadcastOptions};
use crate::parser::Packet;

/// A broadcast read back from a [`BroadcastLog`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoggedBroadcast {
    /// Its position in the log (see [`BroadcastLog`] for the format).
    pub offset: String,
    /// The packet as it was broadcast (without any offset in its arguments).
    pub packet: Packet,
    /// Who it was for.
    pub opts: BroadcastOptions,
    /// Volatile broadcasts are logged by some backends but never replayed.
    pub volatile: bool,
}

impl LoggedBroadcast {
    /// A logged broadcast with these fields.
    pub fn new(offset: String, packet: Packet, opts: BroadcastOptions, volatile: bool) -> Self {
        LoggedBroadcast {
            offset,
            packet,
            opts,
            volatile,
        }
    }
}

/// One read of a [`BroadcastLog`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LogPage {
    /// The broadcasts of the namespace among the entries read, in log order.
    pub broadcasts: Vec<LoggedBroadcast>,
    /// The last entry read, whatever it was (another namespace's, a room change): where the
    /// next read starts. `None` when nothing came after the offset.
    pub last: Option<String>,
    /// Whether the read stopped at its size limit, so more entries may follow.
    pub more: bool,
}

impl LogPage {
    /// A page with these fields.
    pub fn new(broadcasts: Vec<LoggedBroadcast>, last: Option<String>, more: bool) -> Self {
        LogPage {
            broadcasts,
            last,
            more,
        }
    }
}

/// A log of broadcasts shared by the nodes of a cluster (see
/// [`Backend::broadcast_log`](crate::Backend::broadcast_log)).
///
/// Offsets are `<u64>-<u64>` and increase along the log, as Redis stream ids do: a node
/// compares them to tell which broadcasts it delivered itself and which it must read back.
///
/// ```
/// use sio_core::{BackendFuture, BroadcastLog, LogPage};
///
/// #[derive(Debug)]
/// struct Empty;
///
/// impl BroadcastLog for Empty {
///     fn read_after(&self, _ns: &str, _offset: &str, _count: usize) -> BackendFuture<Option<LogPage>> {
///         Box::pin(async { Ok(None) })
///     }
/// }
/// ```
pub trait BroadcastLog: Send + Sync + fmt::Debug {
    /// The broadcasts of namespace `ns` after `offset`, reading at most `count` entries of
    /// the log. `None` when `offset` is not (or no longer) in the log: the client's state
    /// cannot be recovered.
    fn read_after(&self, ns: &str, offset: &str, count: usize) -> BackendFuture<Option<LogPage>>;
}

/// Entries read from the log per call, and calls at most for one recovery (so that a log
/// growing faster than it is read cannot keep a connection waiting for ever).
const PAGE: usize = 100;
const MAX_READS: usize = 100;

/// Waits (a little) for this node to have read as far as the client's `offset`, then reads
/// what the client missed from the backend's log, up to where this node's memory starts.
/// `None` when the offset is not in the log (or the log is unreachable): no recovery.
pub(crate) async fn read_missed(
    recovery: &super::Recovery,
    log: &dyn BroadcastLog,
    ns: &str,
    offset: &str,
) -> Option<Vec<LoggedBroadcast>> {
    // An offset the client made up is no position in the log: no wait, no read.
    compare(offset, offset)?;
    // A client that comes from a node ahead of this one: broadcasts this node has yet to
    // read would reach the socket live, though the client had them already.
    for _ in 0..50 {
        if recovery.has_reached(offset) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if recovery.logs(offset) {
        return Some(Vec::new());
    }
    let memory_from = recovery.complete_after();
    let in_memory = |o: &str| {
        memory_from
            .as_deref()
            .and_then(|m| compare(o, m))
            .is_some_and(|c| c.is_ge())
    };
    let mut fetched = Vec::new();
    let mut cursor = offset.to_owned();
    for read in 0..MAX_READS {
        let page = match log.read_after(ns, &cursor, PAGE).await {
            Ok(Some(page)) => page,
            Ok(None) if read == 0 => return None,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(%err, "broadcast log unreachable, new session");
                return None;
            }
        };
        if read == 0 && in_memory(offset) {
            // The offset exists and this node's memory has everything after it.
            return Some(Vec::new());
        }
        fetched.extend(page.broadcasts);
        let Some(last) = page.last else {
            break;
        };
        cursor = last;
        if !page.more || in_memory(&cursor) {
            break;
        }
    }
    Some(fetched)
}

/// The order of two log offsets; `None` when one is not of the log's format.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a)?.cmp(&parse(b)?))
}

fn parse(offset: &str) -> Option<(u64, u64)> {
    let (time, seq) = offset.split_once('-')?;
    Some((time.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Unreachable;

    impl BroadcastLog for Unreachable {
        fn read_after(&self, _: &str, _: &str, _: usize) -> BackendFuture<Option<LogPage>> {
            Box::pin(async { Err(crate::AdapterError::Unavailable("down".into())) })
        }
    }

    #[tokio::test]
    async fn made_up_offsets_and_an_unreachable_log_recover_nothing() {
        let recovery = super::super::Recovery::new(crate::RecoveryConfig::default(), true);
        recovery.log_reached("9-0");
        assert_eq!(
            read_missed(&recovery, &Unreachable, "/", "nope").await,
            None
        );
        assert_eq!(read_missed(&recovery, &Unreachable, "/", "5-0").await, None);
    }

    #[test]
    fn offsets_compare_as_numbers() {
        assert_eq!(compare("9-0", "10-0"), Some(Ordering::Less));
        assert_eq!(compare("10-2", "10-10"), Some(Ordering::Less));
        assert_eq!(compare("10-2", "10-2"), Some(Ordering::Equal));
        assert_eq!(compare("x", "10-2"), None);
        assert_eq!(compare("1-", "1-0"), None);
    }
}
