//! The starter: creates recorded runs in Oz exactly once. The attempt is recorded before
//! the call; a run whose earlier attempt may have landed is looked up (label, creation
//! time and the reference token in its prompt) before it is ever created again, and
//! the lookup is trusted only once that attempt can no longer land (Oz has no
//! idempotency key). Failures are retried by time, not by count: the thread is told
//! once when Oz stays down, and the run is parked when the retry budget is spent.

use super::Pipeline;
use super::prompt::reference_line;
use crate::domain::{RunView, StartTrouble};
use crate::ids::{ConversationId, OzRunId, RunRef};
use crate::oz::types::{RunItem, RunState};
use crate::oz::{ListRunsQuery, OzError};
use crate::retry::CallFailure;
use crate::store::{RunPhase, RunRecord, StoreResult, ms};
use crate::surface::Mark;

/// What Oz said about a run it created.
pub(super) struct Created {
    pub run_id: OzRunId,
    pub state: RunState,
    pub conversation_id: Option<ConversationId>,
}

impl From<&RunItem> for Created {
    fn from(item: &RunItem) -> Self {
        Self {
            run_id: item.run_id.clone(),
            state: item.state.clone(),
            conversation_id: item.conversation_id.clone(),
        }
    }
}

impl Pipeline {
    /// Starts one due run; false when there was none.
    pub(super) async fn start_one(&self) -> bool {
        let settings = &self.settings;
        super::claim_then_work(
            "run to start",
            self.store
                .claim_run_to_start(&settings.worker_id, settings.lease),
            |run| async move { self.start(&run).await },
        )
        .await
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
                    return self.activate(run, Created::from(&item), true).await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::info!(run = %run.id, %error, "could not look for an earlier create; will retry");
                    return self.start_failed(run, &error).await;
                }
            }
        }
        let window = self.now() + ms(self.settings.oz_doubt_window);
        let settings = &self.settings;
        if !self
            .store
            .note_create_attempt(&run.id, &settings.worker_id, window, settings.lease)
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
                self.activate(run, created, false).await
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

    /// Records the Oz run of a starting (or parked) run. When the run has one already,
    /// this one is a duplicate: it is cancelled, and the thread is told. `found`: the
    /// run was found by a lookup, not by the create's answer, so changes it went
    /// through meanwhile may have been missed and it is fetched once right away.
    pub(super) async fn activate(
        &self,
        run: &RunRecord,
        created: Created,
        found: bool,
    ) -> StoreResult<()> {
        let view = RunView {
            state: Some(created.state),
            oz_run_id: Some(created.run_id.clone()),
            conversation_id: created.conversation_id.or(run.view.conversation_id.clone()),
            trouble: None,
            ..run.view.clone()
        };
        if self.store.activate_run(&run.id, &view, found).await? {
            self.wake.notify.notify_one();
            return Ok(());
        }
        self.cancel_duplicate(&run.id, &created.run_id, false).await
    }

    /// Cancels an extra Oz run made for `run` (an answer was lost and the create was
    /// sent again) and says so on the run's status post, once. `finished`: it ended
    /// before it could be stopped; it is only mentioned.
    pub(super) async fn cancel_duplicate(
        &self,
        run: &RunRef,
        extra: &OzRunId,
        finished: bool,
    ) -> StoreResult<()> {
        let Some(record) = self.store.get_run(run).await? else {
            return Ok(());
        };
        // The run itself (two workers recorded the same find), or said already.
        if record.view.oz_run_id.as_ref() == Some(extra)
            || record
                .view
                .note
                .as_deref()
                .is_some_and(|note| note.contains(extra.as_str()))
        {
            return Ok(());
        }
        tracing::warn!(run = %run, oz_run = %extra, finished, "a second Oz run was made for one command");
        let note = if finished {
            format!(
                "A second Oz run (`{extra}`) was started by mistake after a lost answer; it finished before it could be stopped."
            )
        } else {
            crate::telemetry::duplicate_cancelled();
            if let Err(error) = self.oz.cancel_run(extra).await {
                tracing::warn!(%error, oz_run = %extra, "could not cancel a duplicate run");
            }
            format!(
                "A second Oz run (`{extra}`) was started by mistake after a lost answer; it was cancelled."
            )
        };
        let view = RunView {
            note: Some(note),
            ..record.view
        };
        self.store.update_view(run, &view).await?;
        self.wake.notify.notify_one();
        Ok(())
    }

    /// A create (or its lookup) failed in a way that may pass: retry with backoff until
    /// the retry budget is spent, then park the run.
    async fn start_failed(&self, run: &RunRecord, error: &OzError) -> StoreResult<()> {
        let give_up_at = self.give_up_at(run.start_give_up_at);
        let now = self.now();
        if now >= give_up_at {
            tracing::warn!(run = %run.id, %error, "run parked: Oz did not accept it within the retry budget");
            let view = RunView {
                trouble: Some(StartTrouble::Parked),
                ..run.view.clone()
            };
            self.store
                .park_run(
                    &run.id,
                    &format!("Oz did not accept the run: {error}"),
                    &view,
                    !error.in_doubt(),
                )
                .await?;
            self.wake.notify.notify_one();
            return Ok(());
        }
        let troubled_since = give_up_at - ms(self.settings.retry_for);
        if run.view.trouble.is_none()
            && now - troubled_since >= ms(self.settings.outage_notice_after)
        {
            let view = RunView {
                trouble: Some(StartTrouble::Retrying { until: give_up_at }),
                ..run.view.clone()
            };
            self.store.update_view(&run.id, &view).await?;
            self.wake.notify.notify_one();
        }
        let wait = self.retry_wait(run.create_attempts, error);
        self.store
            .retry_start(&run.id, wait, !error.in_doubt(), give_up_at)
            .await
    }

    async fn fail_start(&self, run: &RunRecord, reason: &str) -> StoreResult<()> {
        let view = RunView {
            start_error: Some(reason.to_owned()),
            trouble: None,
            ..run.view.clone()
        };
        self.store
            .update_run(&run.id, RunPhase::Done, &view, true)
            .await?;
        self.enqueue_mark(format!("mark:{}:final", run.id), &run.origin, Mark::Failed)
            .await
    }

    /// Looks for a run created by an earlier attempt of this one (the oldest, when
    /// there are several: the others are duplicates the tracker cancels).
    async fn find_created(&self, run: &RunRecord) -> Result<Option<RunItem>, OzError> {
        let since = run.first_attempt_at.unwrap_or(run.created_at) - 5 * 60_000;
        let reference = reference_line(&run.id);
        let mut query = ListRunsQuery {
            name: Some(self.settings.run_defaults.run_label.clone()),
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
