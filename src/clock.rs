//! The time the store, the pipeline and the clients go by: the system's, or one that a
//! test holds and moves forward itself. On a held clock, leases, retry times, doubt
//! windows, breaker pauses and pacing pass only when the test moves the clock, or when
//! the code under test waits on it ([`Clock::sleep`] moves it instead of sleeping), so a
//! test that drives the pipeline itself never sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Converts a duration to [`Millis`].
pub fn ms(duration: Duration) -> Millis {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A source of the current time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock; `Some`: a time held by a test.
    held: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at the system's current time until [`Clock::advance`] moves it.
    pub fn held() -> Self {
        Self {
            held: Some(Arc::new(AtomicI64::new(
                chrono::Utc::now().timestamp_millis(),
            ))),
        }
    }

    /// The current time.
    pub fn now_ms(&self) -> Millis {
        match &self.held {
            Some(held) => held.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// The current time as a date.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_else(chrono::Utc::now)
    }

    /// How long until `at`, or `None` when it has passed.
    pub fn until(&self, at: Millis) -> Option<Duration> {
        let left = at - self.now_ms();
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }

    /// Waits `duration`: on the system clock, a real sleep; on a held clock, the clock
    /// moves forward by `duration` at once (the caller is the only one running: a test
    /// that steps the pipeline itself).
    pub async fn sleep(&self, duration: Duration) {
        match &self.held {
            Some(_) => self.advance(duration),
            None => tokio::time::sleep(duration).await,
        }
    }

    /// Moves a held clock forward by `by`; the system clock cannot be moved, and
    /// asking is a mistake in the caller (a test), so it panics.
    pub fn advance(&self, by: Duration) {
        let Some(held) = &self.held else {
            panic!("only a held clock can be advanced");
        };
        held.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_clock_moves_only_when_advanced() {
        let clock = Clock::held();
        let start = clock.now_ms();
        assert_eq!(clock.now_ms(), start);
        assert_eq!(clock.until(start + 500), Some(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now_ms(), start + 500);
        assert_eq!(clock.until(start + 500), None);
        let copy = clock.clone();
        copy.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), start + 1500, "clones share the time");
    }

    #[tokio::test]
    async fn waiting_on_a_held_clock_moves_it_at_once() {
        let clock = Clock::held();
        let start = clock.now_ms();
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), start + 3_600_000);
    }
}
