//! How busy the intake is: the platform requests being answered right now. While many
//! are, the pipeline's workers step aside for a moment before each step, so that on a
//! machine the pipeline would otherwise keep busy the answers GitHub and Slack wait for
//! come first (Slack's deadline is 3 s). Every command is stored before it is answered,
//! so what waits is only the pipeline's work; the wait is bounded, so it never stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Requests in flight from which the intake counts as busy.
const BUSY_AT: usize = 4;

/// The intake's requests in flight, and a signal when it calms down.
#[derive(Debug, Default)]
pub struct IntakeLoad {
    in_flight: AtomicUsize,
    calm: Notify,
}

/// One request being answered; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<IntakeLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) <= BUSY_AT {
            self.0.calm.notify_waiters();
        }
    }
}

impl IntakeLoad {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// True while enough requests are in flight that the pipeline should wait.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) >= BUSY_AT
    }

    /// Returns once the intake is not busy, or after `at_most`.
    pub async fn step_aside(&self, at_most: Duration) {
        let deadline = tokio::time::Instant::now() + at_most;
        loop {
            let calm = self.calm.notified();
            tokio::pin!(calm);
            // Listening before looking: a request that ends in between still wakes us.
            calm.as_mut().enable();
            if !self.is_busy() {
                return;
            }
            if tokio::time::timeout_at(deadline, calm).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pipeline_waits_while_the_intake_is_busy_and_goes_on_when_it_calms() {
        let load = Arc::new(IntakeLoad::default());
        let mut requests: Vec<InFlight> = (0..BUSY_AT).map(|_| load.enter()).collect();
        assert!(load.is_busy());
        let waiting = tokio::spawn({
            let load = load.clone();
            async move { load.step_aside(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits while the intake is busy");
        requests.pop();
        waiting.await.expect("it goes on once a request ends");
        assert!(!load.is_busy());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded() {
        let load = Arc::new(IntakeLoad::default());
        let _requests: Vec<InFlight> = (0..BUSY_AT * 2).map(|_| load.enter()).collect();
        let started = tokio::time::Instant::now();
        load.step_aside(Duration::from_millis(100)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
