//! Seeded random faults for the fakes of GitHub, Slack and Oz: while enabled, a share of
//! the requests fails the way real services fail (an error status, a rate limit with
//! `Retry-After`, a slow answer, an answer lost after the work was done, work carried
//! out only after the client gave up). The same seed gives the same sequence of choices.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kinds of fault, by the name the counts use.
pub const FAULT_KINDS: [&str; 5] = ["error", "rate_limited", "slow", "lost_answer", "late"];

#[derive(Debug)]
struct ChaosState {
    rate: f64,
    rng: fastrand::Rng,
    counts: BTreeMap<&'static str, u64>,
    requests: u64,
    /// Late work not carried out yet.
    in_flight: u64,
}

/// Shared switch and dice of one fake. Clones share state; off until [`Self::enable`].
#[derive(Debug, Clone)]
pub struct Chaos {
    state: Arc<Mutex<ChaosState>>,
    /// Woken each time late work is carried out.
    landed: Arc<tokio::sync::Notify>,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(ChaosState {
                rate: 0.0,
                rng: fastrand::Rng::with_seed(0),
                counts: BTreeMap::new(),
                requests: 0,
                in_flight: 0,
            })),
            landed: Arc::default(),
        }
    }
}

/// How long late work waits before it is carried out, in ms: past the client's time-out
/// of the crash test (2 s), and well inside the time a create stays in doubt (twice the
/// time-out, counted from before the request is sent). A real service does not carry
/// out a request long after its client gave up; a pause reaching the end of the doubt
/// window would, on a busy machine where the request arrives a moment late, stand for
/// one that does (at 2.2–3.2 s, a crash run on a loaded CI machine saw a Slack status
/// post land after its lookup and was posted twice).
const LATE_MS: (u64, u64) = (2_100, 2_600);

enum Fault {
    Error(StatusCode),
    RateLimited,
    Slow(Duration),
    LostAnswer,
    Late(Duration),
}

impl Chaos {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChaosState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `rate` (0 to 1) of the requests fail, drawing with `seed`.
    pub fn enable(&self, seed: u64, rate: f64) {
        let mut state = self.lock();
        state.rate = rate.clamp(0.0, 1.0);
        state.rng = fastrand::Rng::with_seed(seed);
    }

    /// Stops injecting faults.
    pub fn disable(&self) {
        self.lock().rate = 0.0;
    }

    /// Requests held back to be carried out late that have not been yet.
    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight
    }

    /// Returns once every request held back to be carried out late has been.
    pub async fn late_work_done(&self) {
        loop {
            let landed = self.landed.notified();
            if self.in_flight() == 0 {
                return;
            }
            landed.await;
        }
    }

    /// Faults injected so far, by kind, and the requests seen.
    pub fn counts(&self) -> (BTreeMap<&'static str, u64>, u64) {
        let state = self.lock();
        (state.counts.clone(), state.requests)
    }

    fn draw(&self) -> Option<Fault> {
        let mut state = self.lock();
        state.requests += 1;
        if state.rate <= 0.0 || state.rng.f64() >= state.rate {
            return None;
        }
        let rng = &mut state.rng;
        let fault = match rng.u8(0..5) {
            0 => Fault::Error(
                [
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                ][rng.usize(0..3)],
            ),
            1 => Fault::RateLimited,
            2 => Fault::Slow(Duration::from_millis(rng.u64(100..1500))),
            3 => Fault::LostAnswer,
            _ => Fault::Late(Duration::from_millis(rng.u64(LATE_MS.0..LATE_MS.1))),
        };
        if matches!(fault, Fault::Late(_)) {
            state.in_flight += 1;
        }
        let kind = match fault {
            Fault::Error(_) => FAULT_KINDS[0],
            Fault::RateLimited => FAULT_KINDS[1],
            Fault::Slow(_) => FAULT_KINDS[2],
            Fault::LostAnswer => FAULT_KINDS[3],
            Fault::Late(_) => FAULT_KINDS[4],
        };
        *state.counts.entry(kind).or_default() += 1;
        Some(fault)
    }
}

fn failure(status: StatusCode) -> Response {
    let body = serde_json::json!({
        "message": "Server Error",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "error": "chaos",
        "retryable": true,
    });
    (status, axum::Json(body)).into_response()
}

/// The middleware: passes a request through, or fails it as drawn.
pub async fn gate(State(chaos): State<Chaos>, request: Request, next: Next) -> Response {
    match chaos.draw() {
        None => next.run(request).await,
        Some(Fault::Error(status)) => failure(status),
        Some(Fault::RateLimited) => {
            let mut response = failure(StatusCode::TOO_MANY_REQUESTS);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Some(Fault::Slow(pause)) => {
            tokio::time::sleep(pause).await;
            next.run(request).await
        }
        Some(Fault::LostAnswer) => {
            let _done = next.run(request).await;
            failure(StatusCode::BAD_GATEWAY)
        }
        // A task of its own: the work is carried out even when the client is gone.
        Some(Fault::Late(pause)) => {
            let work = tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let answer = next.run(request).await;
                chaos.lock().in_flight -= 1;
                chaos.landed.notify_waiters();
                answer
            });
            work.await
                .unwrap_or_else(|_| failure(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}
