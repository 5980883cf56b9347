//! The starter: creates recorded runs in Oz exactly once. The attempt is recorded before
//! the call; a run whose earlier attempt may have landed is looked up (label, creation
//! time and the reference token in its prompt) before it is ever created again.

use super::Pipeline;
use super::outlet::Mark;
use super::prompt::reference_line;
use crate::domain::RunView;
use crate::oz::types::RunItem;
use crate::oz::{ListRunsQuery, OzError};
use crate::store::{RunPhase, RunRecord};

/// Create calls sent before a run is declared impossible to start.
const MAX_CREATE_ATTEMPTS: i64 = 8;

impl Pipeline {
    /// Starts one due run; false when there was none.
    pub(super) async fn start_one(&self) -> bool {
        match self
            .store
            .claim_run_to_start(&self.settings.worker_id, self.settings.lease)
            .await
        {
            Ok(Some(run)) => {
                if let Err(error) = self.start(&run).await {
                    tracing::warn!(%error, run = %run.id, "could not record a start");
                }
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "could not claim a run to start");
                false
            }
        }
    }

    async fn start(&self, run: &RunRecord) -> crate::store::StoreResult<()> {
        if run.create_attempts > 0 {
            match self.find_created(run).await {
                Ok(Some(item)) => {
                    tracing::info!(run = %run.id, oz_run = %item.run_id, "found the run created by an earlier attempt");
                    let view = RunView {
                        state: Some(item.state.clone()),
                        oz_run_id: Some(item.run_id.clone()),
                        conversation_id: item.conversation_id.clone(),
                        ..run.view.clone()
                    };
                    return self
                        .store
                        .update_run(&run.id, RunPhase::Active, &view, true)
                        .await;
                }
                Ok(None) => {}
                Err(error) => {
                    let wait = self.retry_wait(run, &error);
                    tracing::info!(run = %run.id, %error, "could not look for an earlier create; will retry");
                    return self.store.release_start(&run.id, wait).await;
                }
            }
        }
        if run.create_attempts >= MAX_CREATE_ATTEMPTS {
            return self
                .fail_start(
                    run,
                    "Oz did not accept the run after several tries. Please try again later.",
                )
                .await;
        }
        self.store.note_create_attempt(&run.id).await?;
        match self.oz.create_run(&run.request).await {
            Ok(created) => {
                let view = RunView {
                    state: Some(created.state),
                    oz_run_id: Some(created.run_id),
                    ..run.view.clone()
                };
                self.store
                    .update_run(&run.id, RunPhase::Active, &view, true)
                    .await?;
                self.wake.notify.notify_one();
                Ok(())
            }
            Err(error) if error.is_retryable() => {
                tracing::info!(run = %run.id, %error, "run creation failed; will look it up and retry");
                self.store
                    .release_start(&run.id, self.retry_wait(run, &error))
                    .await
            }
            Err(error) => self.fail_start(run, &user_message(&error)).await,
        }
    }

    fn retry_wait(&self, run: &RunRecord, error: &OzError) -> std::time::Duration {
        let attempt = u32::try_from(run.create_attempts.max(1)).unwrap_or(1);
        self.settings.backoff.delay(attempt, error.retry_after())
    }

    async fn fail_start(&self, run: &RunRecord, reason: &str) -> crate::store::StoreResult<()> {
        let view = RunView {
            start_error: Some(reason.to_owned()),
            ..run.view.clone()
        };
        self.store
            .update_run(&run.id, RunPhase::Done, &view, true)
            .await?;
        self.enqueue_mark(format!("mark:{}:final", run.id), &run.origin, Mark::Failed)
            .await
    }

    /// Looks for a run created by an earlier attempt of this one.
    async fn find_created(&self, run: &RunRecord) -> Result<Option<RunItem>, OzError> {
        let since = run.first_attempt_at.unwrap_or(run.created_at) - 5 * 60_000;
        let reference = reference_line(&run.id);
        let mut query = ListRunsQuery {
            name: Some(self.settings.run_label.clone()),
            created_after: chrono::DateTime::from_timestamp_millis(since),
            q: Some(run.id.to_string()),
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

/// A creation error as the requester should read it.
fn user_message(error: &OzError) -> String {
    match error.problem() {
        Some(problem) => {
            let detail = problem
                .detail
                .clone()
                .unwrap_or_else(|| problem.title.clone());
            format!("Oz refused the run: {detail} (`{}`).", problem.error)
        }
        None => format!("Oz refused the run: {error}."),
    }
}
