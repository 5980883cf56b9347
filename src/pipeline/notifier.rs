//! The notifier: delivers outbox messages and keeps each run's status post in step with
//! its view. Rate limits pause every write; creates are looked up before a retry.

use super::Pipeline;
use super::outlet::{Mark, SendError};
use crate::store::{OutboxItem, OutboxMessage};
use std::time::Duration;

/// Deliveries tried before a message is abandoned.
const MAX_DELIVERY_ATTEMPTS: i64 = 12;

impl Pipeline {
    /// Delivers one due outbox message; false when there was none (or writes are paused).
    pub(super) async fn deliver_one(&self) -> bool {
        if self.outlets.pause_left().is_some() {
            return false;
        }
        let item = match self
            .store
            .claim_outbox(&self.settings.worker_id, self.settings.lease)
            .await
        {
            Ok(Some(item)) => item,
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "could not claim a notification");
                return false;
            }
        };
        let result = self.deliver(&item).await;
        let saved = match result {
            Ok(()) => self.store.finish_outbox(&item.id, None).await,
            Err(error) => {
                self.outlets.note_failure(&error);
                if error.retryable && item.attempts < MAX_DELIVERY_ATTEMPTS {
                    let wait = self
                        .settings
                        .backoff
                        .delay(u32::try_from(item.attempts).unwrap_or(1), error.retry_after);
                    tracing::info!(id = %item.id, %error, ?wait, "notification will be retried");
                    self.store
                        .retry_outbox(&item.id, wait, &error.message)
                        .await
                } else {
                    tracing::warn!(id = %item.id, %error, "notification abandoned");
                    self.store
                        .finish_outbox(&item.id, Some(&error.message))
                        .await
                }
            }
        };
        if let Err(error) = saved {
            tracing::warn!(%error, "could not record a notification's outcome");
        }
        true
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), SendError> {
        match &item.message {
            OutboxMessage::Reaction { origin, reaction } => match Mark::parse(reaction) {
                Some(mark) => self.outlets.mark(origin, mark).await,
                None => Err(SendError {
                    message: format!("unknown mark {reaction}"),
                    retryable: false,
                    retry_after: None,
                }),
            },
            OutboxMessage::Reply { origin, text } => {
                if !item.attempted {
                    self.store
                        .note_outbox_attempt(&item.id)
                        .await
                        .map_err(store_failure)?;
                }
                self.outlets
                    .reply(origin, &item.id, text, item.attempted)
                    .await
            }
        }
    }

    /// Brings one run's status post up to date; false when none was behind.
    pub(super) async fn post_one(&self) -> bool {
        if self.outlets.pause_left().is_some() {
            return false;
        }
        let run = match self
            .store
            .claim_run_to_notify(&self.settings.worker_id, self.settings.lease)
            .await
        {
            Ok(Some(run)) => run,
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "could not claim a status post");
                return false;
            }
        };
        let result = self
            .outlets
            .upsert_status(&run, || async {
                self.store
                    .note_post_attempt(&run.id)
                    .await
                    .map_err(store_failure)
            })
            .await;
        let saved = match result {
            Ok((post, digest)) => {
                self.store
                    .mark_posted(&run.id, run.version, &post, &digest)
                    .await
            }
            Err(error) => {
                self.outlets.note_failure(&error);
                let wait = error.retry_after.unwrap_or(Duration::from_secs(5));
                tracing::info!(run = %run.id, %error, ?wait, "status post will be retried");
                self.store.defer_notify(&run.id, wait).await
            }
        };
        if let Err(error) = saved {
            tracing::warn!(%error, "could not record a status post");
        }
        true
    }
}

fn store_failure(error: crate::store::StoreError) -> SendError {
    SendError {
        message: error.to_string(),
        retryable: true,
        retry_after: None,
    }
}
