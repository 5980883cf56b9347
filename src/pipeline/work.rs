//! What every stage shares: how a worker claims work (its name and lease), how long and
//! how far apart failing work is retried, and the one claim → work → record shape of a
//! step, which puts aside an item whose handling panics instead of taking it forever.

use crate::clock::{Clock, Millis};
use crate::retry::{Backoff, CallFailure};
use crate::store::{StoreResult, ms};
use std::future::Future;
use std::time::Duration;

/// The name a worker claims work under, and how long a claim holds if it dies.
#[derive(Debug, Clone)]
pub(super) struct Claimant {
    /// This process's name in leases.
    pub id: String,
    /// How long a claimed item stays claimed.
    pub lease: Duration,
}

/// How failing work is retried: with backoff, until its budget of time is spent.
#[derive(Debug, Clone)]
pub(super) struct RetryBudget {
    pub clock: Clock,
    pub backoff: Backoff,
    /// How long failing work is retried before it is parked.
    pub retry_for: Duration,
}

impl RetryBudget {
    /// The current time.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// When retrying stops for work whose budget ends at `current` (0: its first
    /// failure, so the budget starts now).
    pub fn give_up_at(&self, current: Millis) -> Millis {
        if current == 0 {
            self.now() + ms(self.retry_for)
        } else {
            current
        }
    }

    /// The wait before retry `attempt` (1-based) after `error`; a server's or a
    /// breaker's wait wins.
    pub fn wait(&self, attempt: i64, error: &impl CallFailure) -> Duration {
        let attempt = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
        self.backoff.delay(attempt, error.retry_after())
    }
}

/// The item `claim` took, if any. A failed claim is logged and taken as nothing due:
/// the next look tries again.
pub(super) async fn claimed<T>(
    what: &'static str,
    claim: impl Future<Output = StoreResult<Option<T>>>,
) -> Option<T> {
    claim.await.unwrap_or_else(|error| {
        tracing::warn!(%error, what, "could not claim due work");
        None
    })
}

/// Carries out `work` on a claimed item, which records its outcome; a failure to record
/// is logged, and the item comes back when its claim runs out.
///
/// An item whose handling panics would panic again each time its claim ran out, so it
/// is put aside with `poisoned` (parked, with the panic's message as the reason) before
/// the panic goes on to the worker, which reports it.
pub(super) async fn work_on<P>(
    what: &'static str,
    work: impl Future<Output = StoreResult<()>>,
    poisoned: impl FnOnce(String) -> P,
) where
    P: Future<Output = StoreResult<()>>,
{
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, what, "could not record what was done"),
        Err(payload) => {
            let reason = format!(
                "handling it panicked: {}",
                super::activity::panic_message(payload.as_ref())
            );
            if let Err(error) = poisoned(reason).await {
                tracing::warn!(%error, what, "could not put aside an item whose handling panicked");
            }
            std::panic::resume_unwind(payload);
        }
    }
}
