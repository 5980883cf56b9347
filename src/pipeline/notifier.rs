//! The notifier: delivers outbox messages and keeps each run's status post in step with
//! its view. A rate limit pauses writes to that platform; creates that may have landed
//! are looked up before a retry.

use super::Pipeline;
use super::outlet::{Mark, SendError};
use crate::domain::{Origin, RunView};
use crate::store::{OutboxItem, OutboxMessage, RunPhase, RunRecord};
use std::time::Duration;

/// Deliveries tried before a message is abandoned.
const MAX_DELIVERY_ATTEMPTS: i64 = 12;

impl Pipeline {
    /// Delivers one due outbox message; false when there was none.
    pub(super) async fn deliver_one(&self) -> bool {
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
        let saved = match self.deliver(&item).await {
            Ok(()) => self.store.finish_outbox(&item.id, None).await,
            Err((origin, error)) => {
                if let Some(origin) = &origin {
                    self.outlets.note_failure(origin, &error);
                }
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

    /// Sends one message; on failure, says which origin's platform failed.
    async fn deliver(&self, item: &OutboxItem) -> Result<(), (Option<Origin>, SendError)> {
        let (origin, thread) = match &item.message {
            OutboxMessage::Reaction { origin, .. }
            | OutboxMessage::Reply { origin, .. }
            | OutboxMessage::Private { origin, .. } => (origin.clone(), None),
            OutboxMessage::RunReply { run, .. } => {
                let record = self
                    .store
                    .get_run(run)
                    .await
                    .map_err(|e| (None, store_failure(e)))?;
                let Some(record) = record else {
                    return Err((None, SendError::permanent("the run no longer exists")));
                };
                let thread = match &record.origin {
                    Origin::Slack(s) => s.thread_ts.clone().or(record.status_post.clone()),
                    Origin::Github(_) => None,
                };
                if thread.is_none() && matches!(record.origin, Origin::Slack(_)) {
                    // The run's thread starts with its status post: wait for it.
                    let error = SendError {
                        message: "the run's thread does not exist yet".into(),
                        retryable: true,
                        retry_after: Some(Duration::from_millis(500)),
                    };
                    return Err((None, error));
                }
                (record.origin, thread)
            }
        };
        if let Some(wait) = self.outlets.pause_left(&origin) {
            let error = SendError {
                message: "writes paused by a rate limit".into(),
                retryable: true,
                retry_after: Some(wait),
            };
            return Err((None, error));
        }
        if !item.attempted && !matches!(item.message, OutboxMessage::Reaction { .. }) {
            self.store
                .note_outbox_attempt(&item.id)
                .await
                .map_err(|e| (None, store_failure(e)))?;
        }
        let result = match &item.message {
            OutboxMessage::Reaction { reaction, .. } => match Mark::parse(reaction) {
                Some(mark) => self.outlets.mark(&origin, mark).await,
                None => Err(SendError::permanent(format!("unknown mark {reaction}"))),
            },
            OutboxMessage::Reply { text, .. } => {
                self.outlets
                    .reply(&origin, &item.id, text, item.attempted)
                    .await
            }
            OutboxMessage::Private { text, .. } => {
                self.outlets
                    .private(&origin, &item.id, text, item.attempted)
                    .await
            }
            OutboxMessage::RunReply { text, .. } => {
                let thread = thread.unwrap_or_default();
                self.outlets
                    .reply_in_thread(&origin, &thread, &item.id, text, item.attempted)
                    .await
            }
        };
        result.map_err(|error| (Some(origin), error))
    }

    /// Brings one run's status post up to date; false when none was behind.
    pub(super) async fn post_one(&self) -> bool {
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
        if let Some(wait) = self.outlets.pause_left(&run.origin) {
            if let Err(error) = self.store.defer_notify(&run.id, wait).await {
                tracing::warn!(%error, "could not defer a status post");
            }
            return true;
        }
        if let Err(error) = self.post(&run).await {
            tracing::warn!(%error, run = %run.id, "could not record a status post");
        }
        true
    }

    async fn post(&self, run: &RunRecord) -> crate::store::StoreResult<()> {
        let result = self
            .outlets
            .upsert_status(run, || async {
                self.store
                    .note_post_attempt(&run.id)
                    .await
                    .map_err(store_failure)
            })
            .await;
        match result {
            Ok(posted) => {
                if posted.created
                    && let Origin::Slack(s) = &run.origin
                    && s.thread_ts.is_none()
                {
                    // A slash command's status message is the root of the run's thread.
                    let mut slack = s.clone();
                    slack.thread_ts = Some(posted.id.clone());
                    let origin = Origin::Slack(slack);
                    self.store
                        .adopt_thread(&run.id, &origin, &origin.thread_key())
                        .await?;
                }
                self.store
                    .mark_posted(&run.id, run.version, &posted.id, &posted.digest)
                    .await?;
                if posted.created && run.post_first {
                    self.wake.start.notify_one();
                }
                Ok(())
            }
            Err(error)
                if !error.retryable
                    && run.status_post.is_none()
                    && run.phase == RunPhase::Starting =>
            {
                // The bot cannot post here (not in the channel, archived): start nothing,
                // and tell the requester privately what to do.
                tracing::info!(run = %run.id, %error, "cannot post the status; the run is not started");
                let view = RunView {
                    start_error: Some(error.message.clone()),
                    ..run.view.clone()
                };
                self.store
                    .update_run(&run.id, RunPhase::Done, &view, false)
                    .await?;
                self.store.skip_post(&run.id).await?;
                let text = format!("I could not start the Oz agent: {}", error.message);
                self.store
                    .enqueue(
                        &format!("cannot-post:{}", run.id),
                        &OutboxMessage::Private {
                            origin: run.origin.clone(),
                            text,
                        },
                    )
                    .await?;
                self.wake.notify.notify_one();
                Ok(())
            }
            Err(error) => {
                self.outlets.note_failure(&run.origin, &error);
                let wait = error
                    .retry_after
                    .unwrap_or(Duration::from_secs(if error.retryable { 5 } else { 60 }));
                tracing::info!(run = %run.id, %error, ?wait, "status post will be retried");
                self.store.defer_notify(&run.id, wait).await
            }
        }
    }
}

fn store_failure(error: crate::store::StoreError) -> SendError {
    SendError {
        message: error.to_string(),
        retryable: true,
        retry_after: None,
    }
}
