//! What a node knows of the broadcasts it delivered, without a shared log: how far it
//! delivered each node's, from where its log holds them, and so whether it can send a
//! returning client exactly what it missed.
//!
//! A client that comes back to the node it left is placed by its position in that node's
//! log: what it missed is what the log has after it, and the log must still have all of it.
//! This is exact whatever order the backend delivered the broadcasts in, and whichever reached
//! this node at all.
//!
//! A client from another node is placed by its marks, per origin: it got every broadcast up
//! to its mark that was for it, and none after. What it missed is then, per origin, the
//! broadcasts after its mark that were for it; this node can send them if its log holds every
//! one of them. It cannot when its log dropped some (too old, or over the byte cap), when it
//! started after them, or when some never reached it (a backend that lost or reordered them: a
//! hole in the numbering: it only costs the clients that may have missed what is in it their
//! recovery). This relies on what [`Backend::publish`](crate::Backend::publish) promises:
//! every node gets every node's broadcasts, in the order they were sent (Redis pub/sub with one
//! subscription for all, as the classic adapter has). A node that heard nothing at all from
//! an origin takes it that the origin broadcast nothing since the node listens.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::offset::{Offset, Origin, Scope};

/// How long a hole in an origin's numbering may wait to be filled by a late broadcast before
/// the broadcasts in it count as lost (this node never delivered them).
const HOLE_WAIT: Duration = Duration::from_millis(500);

/// How long after the first broadcast from another node this node surely hears every node:
/// a backend subscribes before that first broadcast, and this covers the time a broadcast
/// takes to reach two nodes.
const SETTLE: Duration = Duration::from_secs(1);

/// How much longer than the recovery window an origin that went quiet stays in offsets, so
/// that nodes whose clocks read its last broadcast a little apart agree it went quiet. An
/// origin quiet for longer than the window is renumbered when it broadcasts again (see
/// `Recovery::claim`), and this must be long enough that every node forgot the old
/// numbering by then.
pub(super) const GRACE: Duration = Duration::from_secs(10);

/// One origin's broadcasts, as this node delivered them.
#[derive(Debug)]
struct Track {
    origin: Origin,
    /// Every broadcast of the origin up to this one was delivered here, counted lost, or came
    /// before this node heard of the origin.
    mark: u64,
    /// Broadcasts delivered after a hole (beyond `mark + 1`).
    ahead: BTreeSet<u64>,
    /// Since when a hole has been open.
    hole_since: Option<Instant>,
    /// The log holds every broadcast of the origin from this one on (up to `mark`, and those
    /// in `ahead`).
    held_from: u64,
    /// The first of its broadcasts that arrived once this node surely heard every node: a
    /// client that stands after it was served after this node started listening.
    witness: Option<u64>,
    /// When its last new broadcast arrived.
    seen: Instant,
}

impl Track {
    /// Moves `mark` on over the broadcasts delivered ahead of it that now follow it.
    fn absorb(&mut self) {
        while self.ahead.first() == Some(&(self.mark + 1)) {
            self.ahead.pop_first();
            self.mark += 1;
        }
        if self.ahead.is_empty() {
            self.hole_since = None;
        }
    }

    /// A hole open for longer than [`HOLE_WAIT`] is lost: the log holds the origin's
    /// broadcasts only from after the last such hole.
    fn close_holes(&mut self, now: Instant) {
        if self
            .hole_since
            .is_none_or(|since| now.duration_since(since) < HOLE_WAIT)
        {
            return;
        }
        while let Some(next) = self.ahead.pop_first() {
            if next != self.mark + 1 {
                self.held_from = self.held_from.max(next);
            }
            self.mark = next;
        }
        self.hole_since = None;
    }
}

/// Whether a broadcast was new to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    New,
    /// Delivered already (a backend that delivers twice), or so late that it was counted
    /// lost: not logged.
    Again,
}

/// Whether a client standing at an offset can be sent exactly what it missed, from the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// The log holds all of it.
    Complete,
    /// The log holds all of it, but this node has yet to deliver broadcasts that the client
    /// got: they would reach it again. Waiting a little lets them arrive.
    Behind,
    /// A hole in an origin's numbering may hide a broadcast the client missed: waiting a
    /// little tells.
    Unsure,
    /// Some of it is not in the log (any longer): the client must start a new session.
    Incomplete,
}

/// The broadcasts a namespace delivered, by origin, and their positions in its log.
#[derive(Debug)]
pub(crate) struct Origins {
    tracks: Vec<Track>,
    /// This node's log positions: their numbering, and the next one.
    here: Origin,
    next: u64,
    /// The highest position the log dropped.
    dropped: Option<u64>,
    /// The recovery window: a disconnected client comes back within it, or never.
    window: Duration,
    started: Instant,
    /// When the first broadcast from another node arrived.
    listening_since: Option<Instant>,
}

impl Origins {
    pub(crate) fn new(window: Duration) -> Self {
        Origins {
            tracks: Vec::new(),
            here: Origin::random(Scope::Log),
            next: 0,
            dropped: None,
            window,
            started: Instant::now(),
            listening_since: None,
        }
    }

    /// The broadcast `seq` of `origin` is being delivered here (`remote`: it came from
    /// another node).
    pub(crate) fn arrive(
        &mut self,
        origin: Origin,
        seq: u64,
        remote: bool,
        now: Instant,
    ) -> Arrival {
        if remote && self.listening_since.is_none() {
            self.listening_since = Some(now);
        }
        let settled = self
            .listening_since
            .is_some_and(|since| now.duration_since(since) >= SETTLE);
        let forget = 2 * (self.window + GRACE);
        self.tracks
            .retain(|t| t.origin == origin || now.duration_since(t.seen) <= forget);
        let Some(track) = self.tracks.iter_mut().find(|t| t.origin == origin) else {
            // Its earlier broadcasts, if any, came before this node heard of it.
            self.tracks.push(Track {
                origin,
                mark: seq,
                ahead: BTreeSet::new(),
                hole_since: None,
                held_from: seq,
                witness: settled.then_some(seq),
                seen: now,
            });
            return Arrival::New;
        };
        track.close_holes(now);
        if seq <= track.mark || track.ahead.contains(&seq) {
            return Arrival::Again;
        }
        track.seen = now;
        if settled && track.witness.is_none() {
            track.witness = Some(seq);
        }
        if seq == track.mark + 1 {
            track.mark = seq;
            track.absorb();
        } else {
            track.ahead.insert(seq);
            track.hole_since.get_or_insert(now);
        }
        Arrival::New
    }

    /// The log dropped the broadcast at `position`, `seq` of `origin`.
    pub(crate) fn dropped(&mut self, position: u64, origin: Origin, seq: u64) {
        self.dropped = Some(position);
        if let Some(track) = self.tracks.iter_mut().find(|t| t.origin == origin) {
            track.held_from = track.held_from.max(seq + 1);
        }
    }

    /// A position for the broadcast being logged, and the offset its clients get.
    pub(crate) fn stamp(&mut self, now: Instant) -> (u64, Offset) {
        let position = self.next;
        self.next += 1;
        (position, self.offset(now))
    }

    /// Where a client that got everything this node delivered stands. Origins quiet for
    /// longer than the window (and the grace) are left out: none of their broadcasts can still
    /// be missed by anyone.
    pub(crate) fn offset(&self, now: Instant) -> Offset {
        let gone = self.window + GRACE;
        let marks = self
            .tracks
            .iter()
            .filter(|t| now.duration_since(t.seen) <= gone)
            .map(|t| (t.origin, t.mark));
        let position = self.next.checked_sub(1).map(|last| (self.here, last));
        Offset::new(marks.chain(position).collect())
    }

    /// Whether the client at `had` missed the broadcast at `position`, `seq` of `origin`,
    /// were it for it.
    pub(crate) fn missed(
        &self,
        had: &Offset,
        position: u64,
        (origin, seq): (Origin, u64),
        now: Instant,
    ) -> bool {
        if let Some(last) = had.get(self.here) {
            return position > last;
        }
        // Another node's client was none of this node's sockets.
        if origin.scope() != Scope::Cluster {
            return false;
        }
        match had.get(origin) {
            Some(last) => seq > last,
            // Quiet origins are left out of offsets: see `verdict`.
            None => self
                .tracks
                .iter()
                .any(|t| t.origin == origin && !self.quiet(t, now)),
        }
    }

    /// Whether a client at `had` can be sent exactly what it missed from this node's log.
    pub(crate) fn verdict(&mut self, had: &Offset, now: Instant) -> Verdict {
        if let Some(last) = had.get(self.here) {
            // A client of this node: the log must have everything after its position.
            let kept = last < self.next && self.dropped.is_none_or(|dropped| dropped <= last);
            return if kept {
                Verdict::Complete
            } else {
                Verdict::Incomplete
            };
        }
        let mut verdict = Verdict::Complete;
        for track in &mut self.tracks {
            track.close_holes(now);
        }
        for track in self
            .tracks
            .iter()
            .filter(|t| t.origin.scope() == Scope::Cluster)
        {
            // A session lives at most the window after its socket left, and a socket gets
            // every broadcast for it while it is connected: broadcasts older than the window
            // cannot have been missed by a session still alive.
            if self.quiet(track, now) {
                continue;
            }
            let last = had.get(track.origin);
            // The first broadcast the client may have missed (all of them when it never got
            // one: it came before the origin started, or before this node heard of it).
            let first_missed = last.map_or(0, |last| last + 1);
            if track.held_from > first_missed {
                return Verdict::Incomplete;
            }
            let hole_above = track
                .ahead
                .last()
                .is_some_and(|&top| last.is_none_or(|last| last < top));
            if hole_above {
                verdict = verdict.max(Verdict::Unsure);
            } else if last.is_some_and(|last| last > track.mark) {
                verdict = verdict.max(Verdict::Behind);
            }
        }
        for &(origin, _) in had.marks() {
            // Another node's broadcasts to its own sockets, and its log positions: the client
            // left that node.
            if origin.scope() != Scope::Cluster || self.tracks.iter().any(|t| t.origin == origin) {
                continue;
            }
            // An origin this node never heard of (or forgot): it broadcast nothing since this
            // node listens, so nothing the client can have missed if the client was served
            // after that, or if that is longer ago than the window.
            let served_since = self.tracks.iter().any(|t| {
                t.witness
                    .is_some_and(|w| had.get(t.origin).is_some_and(|last| last >= w))
            });
            if !served_since && now.duration_since(self.started) < self.window + GRACE {
                return Verdict::Incomplete;
            }
        }
        verdict
    }

    fn quiet(&self, track: &Track, now: Instant) -> bool {
        now.duration_since(track.seen) > self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn offset(marks: &[(Origin, u64)]) -> Offset {
        Offset::new(marks.to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn a_hole_waits_for_its_broadcast_then_counts_as_lost() {
        let mut origins = Origins::new(WINDOW);
        let a = Origin::random(Scope::Cluster);
        let now = Instant::now();
        for seq in [0, 1, 3] {
            assert_eq!(origins.arrive(a, seq, true, now), Arrival::New);
        }
        // 2 is late: a client that got 1 cannot be served yet, nor told where it stands after 3.
        assert_eq!(origins.verdict(&offset(&[(a, 1)]), now), Verdict::Unsure);
        assert_eq!(origins.offset(now), offset(&[(a, 1)]));
        assert_eq!(origins.arrive(a, 2, true, now), Arrival::New);
        assert_eq!(origins.arrive(a, 3, true, now), Arrival::Again);
        assert_eq!(origins.offset(now), offset(&[(a, 3)]));
        assert_eq!(origins.verdict(&offset(&[(a, 1)]), now), Verdict::Complete);
        // 5 never comes: after HOLE_WAIT, 6 is where the log starts to be whole.
        origins.arrive(a, 6, true, now);
        let later = now + HOLE_WAIT;
        assert_eq!(
            origins.verdict(&offset(&[(a, 3)]), later),
            Verdict::Incomplete
        );
        assert_eq!(
            origins.verdict(&offset(&[(a, 5)]), later),
            Verdict::Complete
        );
        assert_eq!(origins.offset(later), offset(&[(a, 6)]));
        assert_eq!(origins.verdict(&offset(&[(a, 8)]), later), Verdict::Behind);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_started_late_serves_only_clients_it_can_place() {
        let mut origins = Origins::new(WINDOW);
        let (a, b, gone) = (
            Origin::random(Scope::Cluster),
            Origin::random(Scope::Cluster),
            Origin::random(Scope::Cluster),
        );
        let start = Instant::now();
        // This node hears A from its broadcast 10 on: what came before, it never had.
        origins.arrive(a, 10, true, start);
        assert_eq!(
            origins.verdict(&offset(&[(a, 9)]), start),
            Verdict::Complete
        );
        assert_eq!(
            origins.verdict(&offset(&[(a, 8)]), start),
            Verdict::Incomplete
        );
        assert_eq!(origins.verdict(&offset(&[]), start), Verdict::Incomplete);
        // B started after this node: all of it is here.
        origins.arrive(b, 0, true, start);
        assert_eq!(
            origins.verdict(&offset(&[(a, 10)]), start),
            Verdict::Complete
        );
        // An origin it never heard of may have broadcast before it started...
        let had = offset(&[(a, 10), (b, 0), (gone, 4)]);
        assert_eq!(origins.verdict(&had, start), Verdict::Incomplete);
        // ...unless the client was served after this node surely heard every node.
        let settled = start + SETTLE;
        origins.arrive(a, 11, true, settled);
        assert_eq!(origins.verdict(&had, settled), Verdict::Incomplete);
        let had = offset(&[(a, 11), (b, 0), (gone, 4)]);
        assert_eq!(origins.verdict(&had, settled), Verdict::Complete);
        // Or once this node has listened for longer than the window.
        let old = offset(&[(a, 10), (b, 0), (gone, 4)]);
        let much_later = start + WINDOW + GRACE;
        origins.arrive(a, 12, true, much_later);
        origins.arrive(b, 1, true, much_later);
        assert_eq!(origins.verdict(&old, much_later), Verdict::Complete);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_origins_leave_offsets_and_are_forgotten() {
        let mut origins = Origins::new(WINDOW);
        let (a, b) = (
            Origin::random(Scope::Cluster),
            Origin::random(Scope::Cluster),
        );
        let start = Instant::now();
        origins.arrive(a, 0, false, start);
        origins.dropped(0, a, 0);
        let quiet = start + WINDOW + Duration::from_secs(1);
        origins.arrive(b, 0, true, quiet);
        // A's broadcast is gone from the log, but nobody can still miss it.
        assert_eq!(
            origins.verdict(&offset(&[(b, 0)]), quiet),
            Verdict::Complete
        );
        assert!(!origins.missed(&offset(&[]), 0, (a, 0), quiet));
        assert!(origins.missed(&offset(&[]), 1, (b, 0), quiet));
        assert_eq!(origins.offset(quiet), offset(&[(a, 0), (b, 0)]));
        let gone = start + WINDOW + GRACE + Duration::from_secs(1);
        assert_eq!(origins.offset(gone), offset(&[(b, 0)]));
        origins.arrive(b, 1, true, start + 3 * (WINDOW + GRACE));
        assert_eq!(origins.tracks.len(), 1);
    }
}
