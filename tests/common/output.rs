//! A child process's output, collected line by line as it is written, so that a test
//! waits for what the process says (e.g. that it listens) instead of on a timer.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Notify;

/// Everything a child wrote, shared by clones.
#[derive(Clone, Default)]
pub struct Output {
    text: Arc<Mutex<String>>,
    grew: Arc<Notify>,
}

impl Output {
    /// Appends every line of `stream` as it is written, until it closes.
    pub fn collect(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut text = output.text.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
                output.grew.notify_waiters();
            }
        })
    }

    /// All that was written so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// How much has been written so far: pass it to [`Self::wait_for_after`].
    pub fn mark(&self) -> usize {
        self.text.lock().unwrap().len()
    }

    /// Waits until the output holds `needle` (20 s at most).
    pub async fn wait_for(&self, needle: &str) {
        self.wait_for_after(0, needle).await;
    }

    /// Waits until what was written after `mark` holds `needle` (20 s at most).
    pub async fn wait_for_after(&self, mark: usize, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let grew = self.grew.notified();
            if self.text.lock().unwrap()[mark..].contains(needle) {
                return;
            }
            tokio::select! {
                () = grew => {}
                () = tokio::time::sleep_until(deadline) => {
                    panic!("the output never showed {needle:?}:\n{}", self.text())
                }
            }
        }
    }
}
