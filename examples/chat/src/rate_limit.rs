//! Each socket's event budget: [`RATE`] events a second after a burst of [`BURST`]. One
//! polling POST may carry a thousand events, and some of the chat's cost cluster-wide lookups
//! and broadcasts; past the budget an event is not handled at all.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::json;
use sio_core::AckSender;
use sio_core::extract::{Context, ExtractError, FromContext};

use crate::chat::ChatError;

/// Events a second a socket may send once its burst is spent: a fast typist sends a few.
pub(crate) const RATE: f64 = 20.0;
/// Events a socket may send at once: a page that reconnects rejoins its rooms and asks for
/// the room and user lists together.
pub(crate) const BURST: f64 = 40.0;

/// A token bucket holding up to [`BURST`] tokens, refilled at [`RATE`] a second.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn full(now: Instant) -> Self {
        TokenBucket {
            tokens: BURST,
            last: now,
        }
    }

    /// Takes a token; false when there is none left.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A socket's bucket, kept in its extensions for all its events.
#[derive(Clone)]
struct Budget(Arc<Mutex<TokenBucket>>);

/// Proof that an event is within its socket's budget. Taken as a handler's first argument, it
/// keeps an event over the budget from reaching the handler: the event's ack, when it asked for
/// one, gets `{"error": "too many events: slow down"}`, and sio logs the rejection at debug
/// level (target `sio::rejection`), not once per event at warn as a handler's error would be.
pub(crate) struct WithinRate;

impl FromContext for WithinRate {
    fn from_context(ctx: &mut Context) -> Result<Self, ExtractError> {
        let Some(socket) = ctx.socket() else {
            return Ok(WithinRate);
        };
        // A socket's events are dispatched one after another, so its first event makes the
        // bucket once.
        let budget = socket.extensions.get::<Budget>().unwrap_or_else(|| {
            let budget = Budget(Arc::new(Mutex::new(TokenBucket::full(Instant::now()))));
            socket.extensions.insert(budget.clone());
            budget
        });
        let allowed = budget
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        if allowed {
            return Ok(WithinRate);
        }
        let error = json!({ "error": ChatError::TooManyEvents.to_string() });
        let _ = AckSender::from_context(ctx)?.send(&error);
        Err(ExtractError::NotAvailable(
            "an event over the socket's rate limit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start);
        assert!((0..40).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        // 60 ms bring 1.2 tokens back at 20 a second: one event.
        let later = start + Duration::from_millis(60);
        assert!(bucket.take(later));
        assert!(!bucket.take(later));
        // A long pause fills the bucket, no more.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| bucket.take(much_later)).count(), 40);
    }
}
