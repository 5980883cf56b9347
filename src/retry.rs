//! Backoff with jitter, `Retry-After` parsing, the classification of failed calls
//! shared by the three clients, and one breaker per upstream that spaces calls out
//! while it fails and lets them resume as soon as it answers again.

use crate::clock::{Clock, Millis, ms};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// What a caller needs to know of a failed call to decide how to retry it.
pub trait CallFailure: std::fmt::Display {
    /// A later identical call may succeed.
    fn is_retryable(&self) -> bool;
    /// The wait the server (or the breaker) asked for.
    fn retry_after(&self) -> Option<Duration>;
    /// The request may have been carried out although no answer said so (no answer in
    /// time, a dropped connection, a gateway's 502 or 504). Before such a create is
    /// sent again it must be looked up, once the first request can no longer land.
    fn in_doubt(&self) -> bool;
}

/// True for the statuses of a gateway that gave up waiting on the service behind it,
/// which may still carry the request out.
pub fn gateway_in_doubt(status: u16) -> bool {
    matches!(status, 502 | 504)
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the second attempt.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based); a server's `Retry-After`
    /// wins when it is given.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max);
        // Half fixed, half random: spreads retries without collapsing to zero.
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Reads `Retry-After` given in seconds (the form GitHub, Slack and Oz use).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Consecutive failures before a breaker opens.
const OPEN_AFTER: u32 = 3;
/// How long a probe may be in flight before another call may probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The wait given to calls while a probe is in flight.
const PROBE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Millis>,
    probe_since: Option<Millis>,
}

/// Spaces out calls to one upstream (Oz, GitHub, Slack) while it fails: after a few
/// consecutive failures, or at once on a rate limit, calls are refused without being
/// sent for a growing, jittered pause (or the `Retry-After` asked); then one call
/// probes. The first answer closes the breaker and is announced on [`Self::recoveries`],
/// so that work waiting on this upstream resumes at once instead of at its next retry.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    backoff: Backoff,
    clock: Clock,
    state: Mutex<BreakerState>,
    recovered: watch::Sender<u64>,
    refused: std::sync::atomic::AtomicU64,
}

impl Breaker {
    /// A closed breaker for the named upstream, pausing as `backoff` says, by `clock`.
    pub fn new(name: &'static str, backoff: Backoff, clock: Clock) -> Self {
        Self {
            name,
            backoff,
            clock,
            state: Mutex::default(),
            recovered: watch::Sender::new(0),
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The upstream's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` when no call may be sent now; `Ok` lets one through (as the probe,
    /// when the pause is over).
    pub fn admit(&self) -> Result<(), Duration> {
        let verdict = self.verdict();
        if verdict.is_err() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        verdict
    }

    fn verdict(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        let Some(until) = state.open_until else {
            return Ok(());
        };
        if let Some(wait) = self.clock.until(until) {
            return Err(wait);
        }
        let now = self.clock.now_ms();
        match state.probe_since {
            Some(since) if now - since < ms(PROBE_TIMEOUT) => Err(PROBE_WAIT),
            _ => {
                state.probe_since = Some(now);
                Ok(())
            }
        }
    }

    /// Records that the upstream answered (any answer but a server error or a rate
    /// limit: a 404 is an answer).
    pub fn answered(&self) {
        let was_open = {
            let mut state = self.lock();
            let was_open = state.open_until.is_some();
            *state = BreakerState::default();
            was_open
        };
        if was_open {
            tracing::info!(upstream = self.name, "upstream answers again; resuming");
            self.recovered.send_modify(|n| *n += 1);
        }
    }

    /// Records a failure of the upstream itself (server error, no answer, rate limit
    /// with the wait it asked for).
    pub fn failed(&self, retry_after: Option<Duration>) {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        state.probe_since = None;
        let pause = match retry_after {
            Some(wait) => Some(wait),
            None if state.failures >= OPEN_AFTER => {
                Some(self.backoff.delay(state.failures - OPEN_AFTER + 1, None))
            }
            None => None,
        };
        if let Some(pause) = pause {
            let until = self.clock.now_ms() + ms(pause);
            if state.open_until.is_none() {
                tracing::warn!(
                    upstream = self.name,
                    ?pause,
                    "upstream failing; pausing calls"
                );
            }
            state.open_until = Some(state.open_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Ticks once each time the upstream answers again after a pause.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// Calls refused without being sent, since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Failures in a row so far (0 once the upstream answers).
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().failures
    }

    /// True while calls are being refused.
    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }
}

/// The breaker's pause of an upstream: 1 s, doubling up to one minute, jittered.
pub fn upstream_backoff() -> Backoff {
    Backoff {
        attempts: u32::MAX,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let backoff = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let d = backoff.delay(attempt, None);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
        assert!(backoff.delay(1, None) >= Duration::from_millis(50));
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    fn quick() -> Backoff {
        Backoff {
            attempts: u32::MAX,
            base: Duration::from_millis(40),
            max: Duration::from_millis(40),
        }
    }

    #[test]
    fn a_breaker_opens_after_consecutive_failures_and_probes_once() {
        let clock = Clock::held();
        let breaker = Breaker::new("oz", quick(), clock.clone());
        let mut recoveries = breaker.recoveries();
        for _ in 0..OPEN_AFTER - 1 {
            breaker.failed(None);
            assert!(breaker.admit().is_ok(), "a few failures do not open it");
        }
        breaker.failed(None);
        let wait = breaker.admit().expect_err("open after three failures");
        assert!(wait <= Duration::from_millis(40));
        clock.advance(Duration::from_millis(40));
        assert!(breaker.admit().is_ok(), "one probe goes through");
        assert_eq!(
            breaker.admit(),
            Err(PROBE_WAIT),
            "others wait for the probe"
        );
        breaker.answered();
        assert!(breaker.admit().is_ok());
        assert!(
            recoveries.has_changed().unwrap(),
            "the recovery is announced"
        );
        // A plain success while closed announces nothing.
        recoveries.mark_unchanged();
        breaker.answered();
        assert!(!recoveries.has_changed().unwrap());
    }

    #[test]
    fn a_rate_limit_opens_the_breaker_for_the_time_asked() {
        let breaker = Breaker::new("github", quick(), Clock::held());
        breaker.failed(Some(Duration::from_secs(30)));
        let wait = breaker.admit().expect_err("paused");
        assert!(wait > Duration::from_secs(29));
    }
}
