//! The tracker: one `GET /agent/runs` per tick (label + `updated_after`, following
//! cursors) covers every tracked run; per-run calls only for what the list cannot give
//! (the summary of a finished run, runs the list has not mentioned for a long time).

use super::Pipeline;
use super::outlet::Mark;
use super::texts;
use crate::domain::RunView;
use crate::github::render::blocked_notice;
use crate::ids::OzRunId;
use crate::oz::ListRunsQuery;
use crate::oz::types::Artifact;
use crate::oz::types::{RunItem, RunState};
use crate::slack::render::escape;
use crate::store::OutboxMessage;
use crate::store::{RunPhase, RunRecord, now_ms};
use crate::text::truncate;
use chrono::{DateTime, Utc};
use sha2::Digest;
use std::collections::HashMap;
use std::time::Duration;

/// The tracker's pause after failed ticks.
#[derive(Debug, Default)]
pub struct TrackerBackoff {
    failures: u32,
    until: Option<std::time::Instant>,
}

impl TrackerBackoff {
    fn waiting(&self) -> bool {
        self.until
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }

    fn failed(&mut self, backoff: &crate::retry::Backoff, asked: Option<Duration>) -> Duration {
        self.failures += 1;
        let wait = backoff.delay(self.failures, asked);
        self.until = Some(std::time::Instant::now() + wait);
        wait
    }
}

const WATERMARK: &str = "tracker.updated_after";
/// Runs re-listed from this far behind the newest update seen, for clock ties.
const OVERLAP_MS: i64 = 2_000;
/// A run the list has not mentioned for this long is fetched on its own.
const STALE_MS: i64 = 10 * 60_000;
/// At most this many per-run fetches per tick.
const MAX_SINGLE_FETCHES: usize = 20;

impl Pipeline {
    /// One tracker tick, on the replica holding the tracker lease.
    pub(super) async fn tick(&self) {
        let lease = (self.settings.tick * 5).max(Duration::from_secs(1));
        match self
            .store
            .try_lease("tracker", &self.settings.worker_id, lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, "could not take the tracker lease");
                return;
            }
        }
        if self
            .tracker_backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting()
        {
            return;
        }
        let result = self.track().await;
        let mut backoff = self
            .tracker_backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => backoff.succeeded(),
            Err(error) => {
                // Honour a server's Retry-After; otherwise back off exponentially.
                let asked = error
                    .downcast_ref::<crate::oz::OzError>()
                    .and_then(|e| e.retry_after());
                let wait = backoff.failed(&self.settings.backoff, asked);
                tracing::warn!(%error, ?wait, "tracker tick failed; pausing the tracker");
            }
        }
    }

    async fn track(&self) -> anyhow::Result<()> {
        let runs = self.store.active_runs().await?;
        if runs.is_empty() {
            return Ok(());
        }
        let mut by_oz: HashMap<OzRunId, RunRecord> = runs
            .into_iter()
            .filter_map(|r| r.view.oz_run_id.clone().map(|id| (id, r)))
            .collect();
        let oldest = by_oz
            .values()
            .map(|r| r.created_at)
            .min()
            .unwrap_or_else(now_ms)
            - 60_000;
        let stored: Option<i64> = self
            .store
            .get_marker(WATERMARK)
            .await?
            .and_then(|v| v.parse().ok());
        let watermark = stored.unwrap_or(oldest).max(oldest);
        let mut newest = watermark;
        let mut query = ListRunsQuery {
            name: Some(self.settings.run_label.clone()),
            updated_after: DateTime::<Utc>::from_timestamp_millis(watermark - OVERLAP_MS),
            sort_by: Some("updated_at".into()),
            sort_order: Some("asc".into()),
            limit: Some(500),
            ..ListRunsQuery::default()
        };
        loop {
            let page = self.oz.list_runs(&query).await?;
            for item in page.runs {
                newest = newest.max(item.updated_at.timestamp_millis());
                if let Some(record) = by_oz.remove(&item.run_id) {
                    self.apply(&record, &item).await?;
                }
            }
            let Some(cursor) = page.page_info.next() else {
                break;
            };
            query.cursor = Some(cursor);
        }
        self.store
            .set_marker(WATERMARK, &newest.to_string())
            .await?;
        // What the list could not account for: finished runs still missing their
        // summary, and runs not mentioned for a long time.
        let now = now_ms();
        let leftovers: Vec<RunRecord> = by_oz
            .into_values()
            .filter(|r| {
                r.view.state.as_ref().is_some_and(RunState::is_terminal)
                    || now - r.created_at > STALE_MS
            })
            .take(MAX_SINGLE_FETCHES)
            .collect();
        for record in leftovers {
            let Some(id) = record.view.oz_run_id.clone() else {
                continue;
            };
            match self.oz.get_run(&id).await {
                Ok(item) => self.apply(&record, &item).await?,
                Err(error) => tracing::info!(%error, run = %record.id, "could not fetch a run"),
            }
        }
        Ok(())
    }

    /// Folds a fresh view of a run into the stored one.
    async fn apply(&self, record: &RunRecord, item: &RunItem) -> anyhow::Result<()> {
        let old = &record.view;
        let mut view = RunView {
            state: Some(item.state.clone()),
            oz_run_id: Some(item.run_id.clone()),
            conversation_id: item
                .conversation_id
                .clone()
                .or_else(|| old.conversation_id.clone()),
            session_link: item
                .session_link
                .clone()
                .or_else(|| old.session_link.clone()),
            artifacts: item.artifacts.clone(),
            status_message: item.status_message.clone(),
            summary: old.summary.clone(),
            start_error: None,
            note: old.note.clone(),
        };
        let mut phase = RunPhase::Active;
        if item.state.is_terminal() {
            if item.state == RunState::Succeeded && view.summary.is_none() {
                match self.oz.get_run_conversation(&item.run_id).await {
                    Ok(conversation) => {
                        view.summary =
                            Some(conversation.last_assistant_text().unwrap_or_else(|| {
                                "The agent finished without a final message.".into()
                            }));
                        phase = RunPhase::Done;
                    }
                    // Without its summary the run stays tracked; the next tick tries again.
                    Err(error) => {
                        tracing::info!(%error, run = %record.id, "summary not available yet")
                    }
                }
            } else {
                phase = RunPhase::Done;
            }
        }
        let changed = view != *old;
        if !changed && phase == record.phase {
            return Ok(());
        }
        self.store
            .update_run(&record.id, phase, &view, changed)
            .await?;
        self.announce(record, &view, phase).await?;
        if phase == RunPhase::Done {
            let mark = match item.state {
                RunState::Succeeded => Mark::Succeeded,
                RunState::Cancelled => Mark::Cancelled,
                _ => Mark::Failed,
            };
            self.enqueue_mark(format!("mark:{}:final", record.id), &record.origin, mark)
                .await?;
        }
        self.wake.notify.notify_one();
        Ok(())
    }

    /// Posts the notable moments of a change as replies: on Slack every moment (started,
    /// pull request opened, needs input, finished); on GitHub, where the status comment
    /// shows the rest, only "needs input" (an edited mention notifies nobody).
    async fn announce(
        &self,
        record: &RunRecord,
        view: &RunView,
        phase: RunPhase,
    ) -> anyhow::Result<()> {
        let old = &record.view;
        let origin = &record.origin;
        let who = texts::mention(origin, &record.requester.login);
        let blocked = view.state == Some(RunState::Blocked) && old.state != Some(RunState::Blocked);
        if !self.outlets.posts_moments(origin) {
            if blocked {
                let key = format!("blocked:{}:{}", record.id, view_stamp(view));
                self.enqueue_reply(key, origin, blocked_notice(&record.requester.login, view))
                    .await?;
            }
            return Ok(());
        }
        let mut moments: Vec<(String, String)> = Vec::new();
        if view.state == Some(RunState::InProgress)
            && old.state != Some(RunState::InProgress)
            && old.session_link.is_none()
        {
            let link = view
                .session_link
                .as_ref()
                .map(|l| format!(" <{l}|Open the live session>"))
                .unwrap_or_default();
            moments.push((
                "started".into(),
                format!(":runner: The agent started working.{link}"),
            ));
        }
        for artifact in &view.artifacts {
            if let Artifact::PullRequest { data, .. } = artifact
                && !old.artifacts.contains(artifact)
            {
                moments.push((
                    format!("pr:{}", data.url),
                    format!(
                        ":git-pull-request: Opened a pull request: {} (branch `{}`)",
                        data.url, data.branch
                    ),
                ));
            }
        }
        if blocked {
            let reason = view
                .status_message
                .as_ref()
                .map(|m| format!(": {}", escape(&m.message)))
                .unwrap_or_default();
            moments.push((
                format!("blocked:{}", view_stamp(view)),
                format!(":raised_hand: {who}, the agent needs you{reason}."),
            ));
        }
        if phase == RunPhase::Done {
            let text = match &view.state {
                Some(RunState::Succeeded) => {
                    let summary = view.summary.as_deref().unwrap_or_default();
                    format!(
                        ":white_check_mark: {who}, the agent finished: {}",
                        escape(&truncate(summary, 500))
                    )
                }
                Some(RunState::Cancelled) => ":no_entry_sign: The run was cancelled.".into(),
                _ => {
                    let reason = view
                        .status_message
                        .as_ref()
                        .map(|m| m.message.as_str())
                        .unwrap_or("no reason given");
                    format!(":x: {who}, the run failed: {}", escape(reason))
                }
            };
            moments.push(("final".into(), text));
        }
        for (kind, text) in moments {
            let message = OutboxMessage::RunReply {
                run: record.id.clone(),
                text,
            };
            self.store
                .enqueue(&format!("moment:{}:{kind}", record.id), &message)
                .await?;
        }
        Ok(())
    }
}

/// A stamp that tells two blocked spells of one run apart.
fn view_stamp(view: &RunView) -> String {
    let message = view
        .status_message
        .as_ref()
        .map(|m| m.message.as_str())
        .unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(message.as_bytes())[..6])
}
