//! What the workers did, for whoever watches them: a count of steps that found work
//! (a test waits on it instead of polling), and the steps that panicked. A panicking
//! step is logged and counted, and its worker goes on with the next item; the item it
//! held is parked (see `work::claim_then_work`).

use std::any::Any;
use std::sync::Mutex;
use tokio::sync::watch;

/// At most this many panic messages are kept (the count goes on in the metrics).
const KEPT_PANICS: usize = 16;

/// The message a panic was raised with.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The workers' activity.
pub struct Activity {
    steps: watch::Sender<u64>,
    panics: Mutex<Vec<String>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            steps: watch::Sender::new(0),
            panics: Mutex::new(Vec::new()),
        }
    }
}

impl Activity {
    /// Notes a step that did some work.
    pub(super) fn worked(&self) {
        self.steps.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Notes a step that panicked with `payload`.
    pub(super) fn panicked(&self, stage: &str, payload: &(dyn Any + Send)) {
        let message = panic_message(payload);
        tracing::error!(stage, panic = %message, "a worker step panicked; the worker goes on");
        crate::telemetry::worker_panicked();
        {
            let mut panics = self.panics.lock().unwrap_or_else(|p| p.into_inner());
            if panics.len() < KEPT_PANICS {
                panics.push(format!("{stage}: {message}"));
            }
        }
        self.worked();
    }

    /// Changes each time a step did work or panicked.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.steps.subscribe()
    }

    /// The messages of steps that panicked, oldest first (the first few).
    pub fn panics(&self) -> Vec<String> {
        self.panics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
