//! How busy the intake is: the platform requests being answered right now. While many
//! are, the pipeline's workers step aside before each step, and the pipeline as a whole
//! takes one step per pace (each waiting worker gets its own turn, in order), so that on
//! a machine the pipeline would otherwise keep busy the answers GitHub and Slack wait
//! for come first (Slack's deadline is 3 s). Every command is stored before it is
//! answered, so what waits is only the pipeline's work; it never stops (a step per
//! pace), and every waiting worker goes on once the intake calms. The intake counts as
//! busy while enough requests are in flight and for a moment after they last were: under
//! a flood the number in flight dips between requests, and a dip is not calm.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Requests in flight from which the intake counts as busy.
pub(crate) const BUSY_AT: usize = 4;
/// How long the intake still counts as busy after it last had that many in flight.
const BUSY_FOR: Duration = Duration::from_millis(50);

/// The intake's requests in flight, and until when it counts as busy.
///
/// A waiting worker is never woken by a request: it sleeps until its turn or until the
/// busy moment ends, whichever comes first, and looks again then (at least every
/// [`BUSY_FOR`]). Waking the waiting workers whenever a request ended cost a dozen
/// wake-ups per request under a flood, each only to find the intake still busy.
#[derive(Debug)]
pub struct IntakeLoad {
    in_flight: AtomicUsize,
    /// Until when it counts as busy, in ns after `epoch`.
    busy_until: AtomicU64,
    epoch: Instant,
    /// The last turn handed to a worker while the intake is busy.
    last_turn: std::sync::Mutex<Option<Instant>>,
}

/// One request being answered; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<IntakeLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) >= BUSY_AT {
            // It had enough in flight until now.
            self.0.busy_for_a_moment();
        }
    }
}

impl Default for IntakeLoad {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            busy_until: AtomicU64::new(0),
            epoch: Instant::now(),
            last_turn: std::sync::Mutex::new(None),
        }
    }
}

impl IntakeLoad {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) + 1 >= BUSY_AT {
            self.busy_for_a_moment();
        }
        InFlight(self.clone())
    }

    /// Counts the intake busy until [`BUSY_FOR`] from now, at least.
    fn busy_for_a_moment(&self) {
        let until = self.since_epoch(Instant::now() + BUSY_FOR);
        self.busy_until.fetch_max(until, Ordering::SeqCst);
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// When the intake stops counting as busy if no more requests come.
    fn busy_ends(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.busy_until.load(Ordering::SeqCst))
    }

    /// True while enough requests are in flight that the pipeline should wait, or were
    /// a moment ago.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) >= BUSY_AT || Instant::now() < self.busy_ends()
    }

    /// Returns once the intake is not busy, or at this worker's turn: while it is busy,
    /// turns are handed out `pace` apart over all workers, so the pipeline takes a
    /// step per `pace` in all.
    pub async fn step_aside(&self, pace: Duration) {
        let mut turn = None;
        loop {
            if !self.is_busy() {
                // Turns booked while it was busy no longer hold anyone back.
                *self.turns() = None;
                return;
            }
            let at = *turn.get_or_insert_with(|| self.book_turn(pace));
            // Look again when the busy moment ends (requests long in flight keep it
            // busy past that: then a moment later), gone at the turn.
            let now = Instant::now();
            let busy_ends = self.busy_ends();
            let look_again = if busy_ends > now {
                busy_ends
            } else {
                now + BUSY_FOR
            };
            tokio::time::sleep_until(at.min(look_again)).await;
            if Instant::now() >= at {
                return;
            }
        }
    }

    /// The next free turn: `pace` after now and after the last one handed out.
    fn book_turn(&self, pace: Duration) -> Instant {
        let mut last = self.turns();
        let at = last.map_or(Instant::now() + pace, |last| {
            (last + pace).max(Instant::now() + pace)
        });
        *last = Some(at);
        at
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // An Option<Instant> cannot be left half-written: poisoning is ignored.
        self.last_turn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pipeline_waits_while_the_intake_is_busy_and_goes_on_when_it_calms() {
        let load = Arc::new(IntakeLoad::default());
        let mut requests: Vec<InFlight> = (0..BUSY_AT).map(|_| load.enter()).collect();
        assert!(load.is_busy());
        let started = Instant::now();
        let waiting = tokio::spawn({
            let load = load.clone();
            async move {
                load.step_aside(Duration::from_secs(3600)).await;
                started.elapsed()
            }
        });
        // Requests stay in flight far longer than the busy moment: still busy.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "it waits while the intake is busy");
        requests.pop();
        let waited = waiting.await.expect("it goes on once the intake calms");
        assert_eq!(waited, Duration::from_secs(1) + BUSY_FOR);
        assert!(!load.is_busy());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dip_between_requests_is_not_calm() {
        let load = Arc::new(IntakeLoad::default());
        let mut requests: Vec<InFlight> = (0..BUSY_AT).map(|_| load.enter()).collect();
        requests.pop();
        assert!(load.is_busy(), "one request ended a moment ago");
        let started = Instant::now();
        load.step_aside(Duration::from_secs(3600)).await;
        assert_eq!(
            started.elapsed(),
            BUSY_FOR,
            "it goes on once the moment has passed"
        );
        assert!(!load.is_busy());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded() {
        let load = Arc::new(IntakeLoad::default());
        let _requests: Vec<InFlight> = (0..BUSY_AT * 2).map(|_| load.enter()).collect();
        let started = Instant::now();
        load.step_aside(Duration::from_millis(100)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn while_busy_the_workers_take_turns_a_pace_apart_and_all_go_when_it_calms() {
        let load = Arc::new(IntakeLoad::default());
        let mut requests: Vec<InFlight> = (0..BUSY_AT).map(|_| load.enter()).collect();
        let started = Instant::now();
        let pace = Duration::from_millis(100);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let load = load.clone();
                tokio::spawn(async move {
                    load.step_aside(pace).await;
                    started.elapsed()
                })
            })
            .collect();
        // The first two turns come a pace apart while the intake stays busy.
        let mut workers = workers.into_iter();
        for (worker, turn) in workers.by_ref().take(2).zip(1u32..) {
            assert_eq!(worker.await.expect("worker"), pace * turn);
        }
        // It calms: the others go a moment later, not at their turns.
        requests.pop();
        for worker in workers {
            assert_eq!(worker.await.expect("worker"), pace * 2 + BUSY_FOR);
        }
        // Busy again: turns start afresh, not after the ones booked before.
        requests.push(load.enter());
        let again = Instant::now();
        load.step_aside(pace).await;
        assert_eq!(again.elapsed(), pace);
    }
}
