//! The starter: creates recorded runs in Oz exactly once. The attempt is recorded before
//! the call; a run whose earlier attempt may have landed is looked up (label, creation
//! time and the reference token in its prompt) before it is ever created again, and
//! the lookup is trusted only once that attempt can no longer land (Oz has no
//! idempotency key). Failures are retried by time, not by count: the thread is told
//! once when Oz stays down, and the run is parked when the retry budget is spent.

use super::adopt::{Adopter, Created};
use super::outbox::Outbox;
use super::prompt::reference_line;
use super::work::{Claimant, RetryBudget, claimed, work_on};
use crate::domain::{RunView, StartTrouble};
use crate::oz::types::RunItem;
use crate::oz::{ListRunsQuery, OzClient, OzError};
use crate::retry::CallFailure;
use crate::store::{RunEdit, RunPhase, RunRecord, Store, StoreResult, ms};
use crate::surface::Mark;
use std::time::Duration;

/// Creates recorded runs in Oz.
pub(super) struct Starter {
    pub store: Store,
    pub oz: OzClient,
    pub outbox: Outbox,
    pub adopter: Adopter,
    pub claimant: Claimant,
    pub retries: RetryBudget,
    /// The label every run of this installation carries (`config.name`), for lookups.
    pub run_label: String,
    /// How long a create without an answer may still land at Oz.
    pub doubt_window: Duration,
    /// How long a run waits for Oz before its thread is told that Oz is not answering.
    pub outage_notice_after: Duration,
}

impl Starter {
    /// Starts one due run; false when there was none.
    pub async fn step(&self) -> bool {
        let claim = (self.store).claim_run_to_start(&self.claimant.id, self.claimant.lease);
        let Some(run) = claimed("run to start", claim).await else {
            return false;
        };
        work_on("run to start", self.start(&run), |reason| {
            self.put_aside(&run, reason)
        })
        .await;
        true
    }

    async fn start(&self, run: &RunRecord) -> StoreResult<()> {
        if run.create_attempts > 0 {
            // An earlier create may still land until its window closes; a lookup before
            // then could miss it and lead to a second run.
            if let Some(wait) = self.store.clock().until(run.lookup_after) {
                return self.store.release_start(&run.id, wait).await;
            }
            match self.find_created(run).await {
                Ok(Some(item)) => {
                    tracing::info!(run = %run.id, oz_run = %item.run_id, "found the run created by an earlier attempt");
                    self.adopter
                        .activate(run, Created::from(&item), true)
                        .await?;
                    return Ok(());
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::info!(run = %run.id, %error, "could not look for an earlier create; will retry");
                    return self.start_failed(run, &error).await;
                }
            }
        }
        let window = self.retries.now() + ms(self.doubt_window);
        let claimant = &self.claimant;
        if !self
            .store
            .note_create_attempt(&run.id, &claimant.id, window, claimant.lease)
            .await?
        {
            // The claim ran out during the lookup: another worker has the run now.
            tracing::info!(run = %run.id, "claim ran out before the create; another worker has it");
            return Ok(());
        }
        match self.oz.create_run(&run.request).await {
            Ok(created) => {
                let created = Created {
                    run_id: created.run_id,
                    state: created.state,
                    conversation_id: None,
                };
                self.adopter.activate(run, created, false).await?;
                Ok(())
            }
            Err(error) if error.is_retryable() => {
                tracing::info!(run = %run.id, %error, "run creation failed; will retry");
                self.start_failed(run, &error).await
            }
            Err(error) => {
                tracing::warn!(run = %run.id, %error, "Oz refused the run");
                self.fail_start(run, &user_message(&error)).await
            }
        }
    }

    /// Parks a run whose start panicked (its create may have been sent: in doubt).
    async fn put_aside(&self, run: &RunRecord, reason: String) -> StoreResult<()> {
        tracing::error!(run = %run.id, %reason, "run parked: starting it panicked");
        self.park(run, &reason, false).await
    }

    /// Parks a run: the thread shows it, and `ozbridge admin retry` takes it again.
    /// `answered`: no create of it can still land.
    async fn park(&self, run: &RunRecord, reason: &str, answered: bool) -> StoreResult<()> {
        let parked = self
            .store
            .edit_run(run, |latest| {
                (latest.phase == RunPhase::Starting).then(|| RunEdit::Park {
                    view: RunView {
                        trouble: Some(StartTrouble::Parked),
                        ..latest.view.clone()
                    },
                    reason: reason.to_owned(),
                    answered,
                })
            })
            .await?;
        if parked.is_some() {
            self.outbox.status_changed();
        }
        Ok(())
    }

    /// A create (or its lookup) failed in a way that may pass: retry with backoff until
    /// the retry budget is spent, then park the run.
    async fn start_failed(&self, run: &RunRecord, error: &OzError) -> StoreResult<()> {
        let give_up_at = self.retries.give_up_at(run.start_give_up_at);
        let now = self.retries.now();
        if now >= give_up_at {
            tracing::warn!(run = %run.id, %error, "run parked: Oz did not accept it within the retry budget");
            let reason = format!("Oz did not accept the run: {error}");
            return self.park(run, &reason, !error.in_doubt()).await;
        }
        let troubled_since = give_up_at - ms(self.retries.retry_for);
        if run.view.trouble.is_none() && now - troubled_since >= ms(self.outage_notice_after) {
            let trouble = Some(StartTrouble::Retrying { until: give_up_at });
            self.store
                .edit_run(run, |latest| {
                    Some(RunEdit::View(RunView {
                        trouble,
                        ..latest.view.clone()
                    }))
                })
                .await?;
            self.outbox.status_changed();
        }
        let wait = self.retries.wait(run.create_attempts, error);
        self.store
            .retry_start(&run.id, wait, !error.in_doubt(), give_up_at)
            .await
    }

    async fn fail_start(&self, run: &RunRecord, reason: &str) -> StoreResult<()> {
        self.store
            .edit_run(run, |latest| {
                Some(RunEdit::Finish {
                    view: RunView {
                        start_error: Some(reason.to_owned()),
                        trouble: None,
                        ..latest.view.clone()
                    },
                    visible: true,
                })
            })
            .await?;
        self.outbox
            .mark(format!("mark:{}:final", run.id), &run.origin, Mark::Failed)
            .await
    }

    /// Looks for a run created by an earlier attempt of this one (the oldest, when
    /// there are several: the others are duplicates the tracker cancels).
    async fn find_created(&self, run: &RunRecord) -> Result<Option<RunItem>, OzError> {
        let since = run.first_attempt_at.unwrap_or(run.created_at) - 5 * 60_000;
        let reference = reference_line(&run.id);
        let mut query = ListRunsQuery {
            name: Some(self.run_label.clone()),
            created_after: chrono::DateTime::from_timestamp_millis(since),
            q: Some(run.id.to_string()),
            sort_by: Some("created_at".into()),
            sort_order: Some("asc".into()),
            limit: Some(100),
            ..ListRunsQuery::default()
        };
        for _ in 0..20 {
            let page = self.oz.list_runs(&query).await?;
            if let Some(found) = page
                .runs
                .into_iter()
                .find(|r| r.prompt.contains(&reference))
            {
                return Ok(Some(found));
            }
            let Some(cursor) = page.page_info.next() else {
                break;
            };
            query.cursor = Some(cursor);
        }
        Ok(None)
    }
}

/// A creation error as the requester should read it: Oz's own explanation of a refused
/// request, never transport or decoding detail.
fn user_message(error: &OzError) -> String {
    match error.problem() {
        Some(problem) => {
            let detail = problem
                .detail
                .clone()
                .unwrap_or_else(|| problem.title.clone());
            format!("Oz refused the run: {detail} (`{}`).", problem.error)
        }
        None => "Oz gave an answer ozbridge could not read, so the run was not started.".into(),
    }
}
