//! The notifier: delivers outbox messages and keeps each run's status post in step with
//! its view. A send whose answer is in doubt may still land, so it is looked up only
//! once it can no longer land, and sent again only if it is not found. Failures are
//! retried with backoff until the retry budget runs out; then the message is parked.

use super::outbox::Outbox;
use super::work::{Claimant, RetryBudget, claimed, work_on};
use crate::domain::{PostId, RunView};
use crate::store::{
    OutboxItem, OutboxMessage, RunEdit, RunPhase, RunRecord, Store, StoreResult, ms,
};
use crate::surface::{SendError, StatusBody, Surface, Surfaces};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a status post the platform refuses for good waits before it is tried again.
const CANNOT_POST_WAIT: Duration = Duration::from_secs(60);

/// Delivers the outbox and keeps status posts current.
pub(super) struct Notifier {
    pub store: Store,
    pub surfaces: Surfaces,
    pub outbox: Outbox,
    /// Wakes the starter: a run that waited for its status post may start.
    pub starter: Arc<Notify>,
    pub claimant: Claimant,
    pub retries: RetryBudget,
}

/// Why a message was not delivered this time.
enum Undelivered {
    /// Not tried: it must wait this long first (nothing failed).
    Wait(Duration),
    /// Tried, and it failed.
    Failed(SendError),
    /// Not tried: the claim ran out and another worker has the message now; its row
    /// is that worker's to update.
    LostClaim,
}

impl From<SendError> for Undelivered {
    fn from(error: SendError) -> Self {
        Self::Failed(error)
    }
}

impl From<crate::store::StoreError> for Undelivered {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Failed(store_failure(error))
    }
}

impl Notifier {
    /// Delivers one due outbox message and brings one status post up to date, so that
    /// neither waits behind the other; false when neither was due.
    pub async fn step(&self) -> bool {
        let delivered = self.deliver_one().await;
        let posted = self.post_one().await;
        delivered || posted
    }

    /// Delivers one due outbox message; false when there was none.
    async fn deliver_one(&self) -> bool {
        let claim = (self.store).claim_outbox(&self.claimant.id, self.claimant.lease);
        let Some(item) = claimed("notification", claim).await else {
            return false;
        };
        let item = &item;
        work_on("notification", self.deliver_and_record(item), |reason| async move {
            tracing::error!(id = %item.id, %reason, "notification parked: delivering it panicked");
            self.store.park_outbox(&item.id, &reason).await
        })
        .await;
        true
    }

    /// Sends a claimed outbox message and records the outcome.
    async fn deliver_and_record(&self, item: &OutboxItem) -> StoreResult<()> {
        match self.deliver(item).await {
            Ok(()) => self.store.finish_outbox(&item.id, None).await,
            Err(Undelivered::Wait(wait)) => self.store.release_outbox(&item.id, wait).await,
            Err(Undelivered::Failed(error)) => self.after_failed_delivery(item, &error).await,
            Err(Undelivered::LostClaim) => {
                tracing::info!(id = %item.id, "claim ran out before the send; another worker has it");
                Ok(())
            }
        }
    }

    async fn after_failed_delivery(&self, item: &OutboxItem, error: &SendError) -> StoreResult<()> {
        if !error.retryable {
            tracing::warn!(id = %item.id, %error, "notification abandoned: the platform refused it");
            return self
                .store
                .finish_outbox(&item.id, Some(&error.detail))
                .await;
        }
        let give_up_at = self.retries.give_up_at(item.give_up_at);
        if self.retries.now() >= give_up_at {
            tracing::warn!(id = %item.id, %error, "notification parked: its retry budget is spent");
            return self.store.park_outbox(&item.id, &error.detail).await;
        }
        let wait = self.retries.wait(item.attempts, error);
        tracing::info!(id = %item.id, %error, ?wait, "notification will be retried");
        self.store
            .retry_outbox(&item.id, wait, &error.detail, !error.in_doubt, give_up_at)
            .await
    }

    /// Sends one message.
    async fn deliver(&self, item: &OutboxItem) -> Result<(), Undelivered> {
        let (origin, is_post) = match &item.message {
            OutboxMessage::Reaction { origin, .. } => (origin.clone(), false),
            OutboxMessage::Reply { origin, .. } | OutboxMessage::Private { origin, .. } => {
                (origin.clone(), true)
            }
            OutboxMessage::RunReply { run, .. } => {
                let Some(record) = self.store.get_run(run).await? else {
                    return Err(SendError::permanent("the run no longer exists").into());
                };
                match self.surfaces.of(&record.origin)?.run_thread(&record) {
                    Some(thread) => (thread, true),
                    // The run's thread starts with its status post: wait for it.
                    None => return Err(Undelivered::Wait(Duration::from_millis(500))),
                }
            }
        };
        let surface = self.surfaces.of(&origin)?;
        // An earlier send may still land until its window closes: only then may a
        // lookup conclude that it did not.
        let maybe_posted = match item.lookup_after {
            Some(at) => match self.store.clock().until(at) {
                Some(wait) => return Err(Undelivered::Wait(wait)),
                None => true,
            },
            None => false,
        };
        if is_post {
            if !matches!(item.message, OutboxMessage::Private { .. }) {
                // The turn first: the attempt is recorded right before it is sent.
                surface
                    .take_turn(&origin)
                    .await
                    .map_err(Undelivered::Wait)?;
            }
            let window = self.retries.now() + ms(surface.doubt_window());
            let claimant = &self.claimant;
            if !self
                .store
                .note_outbox_attempt(&item.id, &claimant.id, window, claimant.lease)
                .await?
            {
                return Err(Undelivered::LostClaim);
            }
        }
        let result = match &item.message {
            OutboxMessage::Reaction { mark, .. } => surface.mark(&origin, *mark).await,
            OutboxMessage::Reply { text, .. } => {
                surface.reply(&origin, &item.id, text, maybe_posted).await
            }
            OutboxMessage::Private { text, .. } => {
                surface.private(&origin, &item.id, text, maybe_posted).await
            }
            OutboxMessage::RunReply { text, .. } => {
                surface
                    .post_moment(&origin, &item.id, text, maybe_posted)
                    .await
            }
        };
        Ok(result?)
    }

    /// Brings one run's status post up to date; false when none was behind.
    async fn post_one(&self) -> bool {
        let claim = (self.store).claim_run_to_notify(&self.claimant.id, self.claimant.lease);
        let Some(run) = claimed("status post", claim).await else {
            return false;
        };
        let run = &run;
        work_on("status post", self.post(run), |reason| async move {
            // This version of the post is left out; the run's next change tries again.
            tracing::error!(run = %run.id, %reason, "status post skipped: rendering or sending it panicked");
            self.store.skip_post(&run.id).await
        })
        .await;
        true
    }

    async fn post(&self, run: &RunRecord) -> StoreResult<()> {
        if run.status_post.is_none()
            && let Some(wait) = run
                .post_lookup_after
                .and_then(|at| self.store.clock().until(at))
        {
            // A create in doubt may still land: look for it only after that.
            return self.store.release_notify(&run.id, wait).await;
        }
        let result = match self.surfaces.of(&run.origin) {
            Ok(surface) => self.upsert_status(surface, run).await,
            Err(error) => Err(Unposted::Failed(error)),
        };
        match result {
            Ok(posted) => {
                if posted.created
                    && let Ok(surface) = self.surfaces.of(&run.origin)
                    && let Some(origin) = surface.thread_from_post(&run.origin, &posted.id)
                {
                    // The status post starts the run's thread.
                    self.store
                        .adopt_thread(&run.id, &origin, &origin.thread_key())
                        .await?;
                }
                // Created and answered: no earlier create of it can land any more.
                self.store
                    .mark_posted(
                        &run.id,
                        run.version,
                        &posted.id,
                        &posted.digest,
                        posted.created,
                    )
                    .await?;
                crate::telemetry::status_post_delay(Duration::from_millis(
                    u64::try_from(self.store.clock().now_ms() - run.updated_at).unwrap_or(0),
                ));
                if !posted.created
                    && run.status_post.is_some()
                    && let Some(until) = run.post_lookup_after.filter(|at| *at > self.retries.now())
                {
                    // An earlier edit got no answer and may still land over this one:
                    // the latest rendering is sent again once it no longer can.
                    self.store.repost_at(&run.id, until).await?;
                }
                if posted.created && run.post_first {
                    self.starter.notify_one();
                }
                Ok(())
            }
            Err(Unposted::Wait(wait)) => self.store.release_notify(&run.id, wait).await,
            Err(Unposted::LostClaim) => {
                // Another worker has the run's post now; the row is its to update.
                tracing::info!(run = %run.id, "claim ran out before a status post; another worker has it");
                Ok(())
            }
            Err(Unposted::Failed(error))
                if !error.retryable
                    && run.status_post.is_none()
                    && run.phase == RunPhase::Starting =>
            {
                // The bot cannot post here (not in the channel, archived): start nothing,
                // and tell the requester privately what to do.
                tracing::info!(run = %run.id, %error, "cannot post the status; the run is not started");
                let text = error.user_text.clone().unwrap_or_else(|| {
                    "I cannot post in this conversation, so I did not start the agent.".into()
                });
                let ended = self
                    .store
                    .edit_run(run, |latest| {
                        (latest.phase == RunPhase::Starting).then(|| RunEdit::Finish {
                            view: RunView {
                                start_error: Some(text.clone()),
                                ..latest.view.clone()
                            },
                            visible: false,
                        })
                    })
                    .await?;
                if ended.is_none() {
                    // Oz accepted it meanwhile: its post is tried again later.
                    return self.store.defer_notify(&run.id, CANNOT_POST_WAIT).await;
                }
                self.store.skip_post(&run.id).await?;
                self.outbox
                    .private(
                        format!("cannot-post:{}", run.id),
                        &run.origin,
                        format!("I could not start the Oz agent: {text}"),
                    )
                    .await
            }
            Err(Unposted::Failed(error)) => {
                match (&run.status_post, error.in_doubt) {
                    // An edit without an answer may still land, after a newer one (sent
                    // meanwhile by this or another worker): the latest rendering is sent
                    // again once it no longer can.
                    (Some(_), true) => {
                        let window = self
                            .surfaces
                            .of(&run.origin)
                            .map_or(Duration::from_secs(60), |surface| surface.doubt_window());
                        let until = self.retries.now() + ms(window);
                        self.store.note_edit_in_doubt(&run.id, until).await?;
                    }
                    // A create that was answered did not land.
                    (None, false) => self.store.clear_post_doubt(&run.id).await?,
                    _ => {}
                }
                let wait = if error.retryable {
                    self.retries.wait(run.notify_attempts + 1, &error)
                } else {
                    CANNOT_POST_WAIT
                };
                tracing::info!(run = %run.id, %error, ?wait, "status post will be retried");
                self.store.defer_notify(&run.id, wait).await
            }
        }
    }

    /// Creates or edits the run's status post; nothing is sent when the rendering did
    /// not change. A create that may have landed before is looked up first, and a
    /// create is recorded (fenced by the claim) right before it is sent.
    async fn upsert_status(
        &self,
        surface: &dyn Surface,
        run: &RunRecord,
    ) -> Result<Posted, Unposted> {
        let body = surface.render_status(run);
        let digest = digest(&body);
        if let Some(post) = &run.status_post
            && run.posted_digest.as_deref() == Some(digest.as_str())
        {
            return Ok(Posted {
                id: post.clone(),
                digest,
                created: false,
            });
        }
        let existing = match (&run.status_post, run.post_lookup_after.is_some()) {
            (Some(post), _) => Some(post.clone()),
            (None, true) => surface.find_status(run).await?,
            (None, false) => None,
        };
        if let Some(id) = existing {
            surface.update_status(run, &id, &body).await?;
            return Ok(Posted {
                id,
                digest,
                created: false,
            });
        }
        surface
            .take_turn(&run.origin)
            .await
            .map_err(Unposted::Wait)?;
        let window = self.retries.now() + ms(surface.doubt_window());
        let claimant = &self.claimant;
        if !self
            .store
            .note_post_attempt(&run.id, &claimant.id, window, claimant.lease)
            .await
            .map_err(|error| Unposted::Failed(store_failure(error)))?
        {
            return Err(Unposted::LostClaim);
        }
        let id = surface.create_status(run, &body).await?;
        Ok(Posted {
            id,
            digest,
            created: true,
        })
    }
}

/// A status post written or brought up to date.
struct Posted {
    id: PostId,
    /// Digest of what it shows.
    digest: String,
    /// True when this call created it.
    created: bool,
}

/// Why a status post was not brought up to date this time.
enum Unposted {
    /// Not tried: the channel's turn to post is this far off.
    Wait(Duration),
    /// Tried, and it failed.
    Failed(SendError),
    /// Not tried: the claim ran out and another worker has the run's post now.
    LostClaim,
}

impl From<SendError> for Unposted {
    fn from(error: SendError) -> Self {
        Self::Failed(error)
    }
}

/// What a status post shows, in short: an unchanged rendering is not sent again.
fn digest(body: &StatusBody) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(body.text.as_bytes());
    if let Some(blocks) = &body.blocks {
        hasher.update(blocks.to_string().as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

fn store_failure(error: crate::store::StoreError) -> SendError {
    SendError::transient(error.to_string())
}
