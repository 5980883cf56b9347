//! The tracker: one `GET /agent/runs` per tick (label + `updated_after`, following
//! cursors) covers every tracked run; each page's runs are looked up by their ids, so a
//! tick costs the same whatever the number of tracked runs. Per-run calls only for what
//! the list cannot give: the summary of a finished run, and runs the list has not
//! mentioned for ten minutes (each at most once per ten minutes).
//!
//! A working run that changed gets its checklist from its conversation (`checklist.rs`):
//! at most once per run per refresh period, within a per-tick budget.
//!
//! The watermark (`updated_after` of the next tick) only moves past changes that were
//! applied: a listed run whose create answer is still being recorded holds it back,
//! so no change of a run is ever skipped. A listed run that carries a run's reference
//! but is not that run's Oz run is a duplicate (a create answered too late) and is
//! cancelled.
//!
//! An answer of Oz older than the newest one taken for a run (a late page, another
//! replica's older listing) is refused, so it cannot put an older state back.

use super::adopt::{Adopter, Created};
use super::checklist::{ChecklistSettings, ReadSchedule, WorkingRun, checklist_of};
use super::outbox::Outbox;
use super::prompt::reference_in;
use crate::domain::{RunFigures, RunView};
use crate::ids::OzRunId;
use crate::oz::types::Artifact;
use crate::oz::types::{RunItem, RunState};
use crate::oz::{ListRunsQuery, OzClient, OzError};
use crate::store::{EDIT_ATTEMPTS, RunEdit, RunPhase, RunRecord, Written};
use crate::store::{LeaseTerm, Millis, OutboxMessage, Store, StoreError, ms};
use crate::surface::{Mark, Moment, Surfaces};
use chrono::{DateTime, Utc};
use sha2::Digest;
use std::collections::HashMap;
use std::time::Duration;

const WATERMARK: &str = "tracker.updated_after";
/// The lease held by the one replica that tracks.
const LEASE: &str = "tracker";
/// Runs re-listed from this far behind the newest update seen, for clock ties.
const OVERLAP_MS: i64 = 2_000;
/// At most this many per-run fetches per tick.
const MAX_SINGLE_FETCHES: i64 = 20;
/// A finished run whose summary could not be read is fetched again after this.
const SUMMARY_RETRY: Duration = Duration::from_secs(5);
/// A listed run not yet recorded holds the watermark back for at most this long past
/// the doubt window of its create (then the run, once recorded, is fetched on its own).
const HOLD_EXTRA_MS: Millis = 60_000;

/// Why a tick stopped.
#[derive(Debug, thiserror::Error)]
enum TickError {
    #[error(transparent)]
    Oz(#[from] OzError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another replica took the tracker lease over during the tick.
    #[error("another replica took the tracker lease over")]
    Superseded,
}

/// What became of a listed run that no stored run has as its Oz run.
enum Unrecorded {
    /// Nothing more to do with it (not ozbridge's, or ours and known).
    Settled,
    /// Something was recorded of it: a parked run adopted it, or it was a duplicate.
    Recorded,
    /// Its run's create answer is still being recorded: hold the watermark.
    Pending,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ticked {
    /// No run to follow, or another replica holds the tracker lease.
    Idle,
    /// Oz was asked about the runs followed; `changes` of them were recorded.
    Followed { changes: usize },
}

/// Follows runs in Oz and records what changed.
pub(super) struct Tracker {
    pub store: Store,
    pub oz: OzClient,
    pub surfaces: Surfaces,
    pub outbox: Outbox,
    pub adopter: Adopter,
    /// This process's name in the tracker lease.
    pub worker_id: String,
    /// The label every run of this installation carries, which the list asks for.
    pub run_label: String,
    /// The period of ticks.
    pub tick: Duration,
    /// How long a create without an answer may still land at Oz.
    pub doubt_window: Duration,
    /// How often runs' conversations are read for their checklists.
    pub checklists: ChecklistSettings,
    /// When each run's conversation was last read.
    pub read_schedule: ReadSchedule,
}

impl Tracker {
    /// One tick, on the replica holding the tracker lease. Oz's breaker spaces the
    /// calls out while the API fails.
    pub async fn tick(&self) -> Ticked {
        let term = match self
            .store
            .try_lease(LEASE, &self.worker_id, self.lease_time())
            .await
        {
            Ok(Some(term)) => term,
            Ok(None) => return Ticked::Idle,
            Err(error) => {
                tracing::warn!(%error, "could not take the tracker lease");
                return Ticked::Idle;
            }
        };
        match self.track(term).await {
            Ok(ticked) => ticked,
            Err(TickError::Superseded) => {
                tracing::info!(
                    "another replica took the tracker lease over; this tick's last answer was dropped"
                );
                Ticked::Idle
            }
            Err(TickError::Oz(OzError::Paused { .. })) => Ticked::Followed { changes: 0 },
            Err(error) => {
                tracing::warn!(%error, "tracker tick failed");
                Ticked::Followed { changes: 0 }
            }
        }
    }

    fn now(&self) -> Millis {
        self.store.clock().now_ms()
    }

    /// How long the tracker lease holds without renewal.
    fn lease_time(&self) -> Duration {
        (self.tick * 5).max(Duration::from_secs(1))
    }

    /// Makes sure that no other replica took the tracker lease over since this tick
    /// took it in `term`, before an answer of Oz is applied, and that the lease holds
    /// for half a lease time more (the answer is applied well within it). Another replica may
    /// have taken newer answers meanwhile: an older answer that looks newer than every
    /// one written (answers that changed nothing are not written) would undo them, for
    /// good once the listings have moved past that run.
    async fn hold(&self, term: LeaseTerm) -> Result<(), TickError> {
        if self
            .store
            .hold_lease(LEASE, &self.worker_id, term, self.lease_time())
            .await?
        {
            Ok(())
        } else {
            Err(TickError::Superseded)
        }
    }

    /// Follows the active runs.
    async fn track(&self, term: LeaseTerm) -> Result<Ticked, TickError> {
        let Some(oldest) = self.store.oldest_followed_run().await? else {
            return Ok(Ticked::Idle);
        };
        let mut changes = 0;
        let floor = oldest - 60_000;
        let stored: Option<i64> = self
            .store
            .get_marker(WATERMARK)
            .await?
            .and_then(|v| v.parse().ok());
        let watermark = stored.unwrap_or(floor).max(floor);
        let mut newest = watermark;
        let mut held: Option<Millis> = None;
        let hold_for = ms(self.doubt_window) + HOLD_EXTRA_MS;
        let mut query = ListRunsQuery {
            name: Some(self.run_label.clone()),
            updated_after: DateTime::<Utc>::from_timestamp_millis(watermark - OVERLAP_MS),
            sort_by: Some("updated_at".into()),
            sort_order: Some("asc".into()),
            limit: Some(500),
            ..ListRunsQuery::default()
        };
        loop {
            let page = self.oz.list_runs(&query).await?;
            self.hold(term).await?;
            let ids: Vec<OzRunId> = page.runs.iter().map(|r| r.run_id.clone()).collect();
            let mut known: HashMap<OzRunId, RunRecord> = self
                .store
                .runs_by_oz_ids(&ids)
                .await?
                .into_iter()
                .filter_map(|r| r.view.oz_run_id.clone().map(|id| (id, r)))
                .collect();
            // Known runs first: handling an unrecorded one may note something on a
            // known run's view, which would make this page's copy of it outdated (its
            // apply would be refused and decided again from a fresh read).
            // Every listed run is applied again, even one the last tick handled as the
            // list gives it now (passing over those costs a write per working run per
            // tick: see BENCHMARKS.md). An answer older than the newest one taken for
            // a run is refused; one that only looks newer (it holds a state between
            // that answer and a newer one that changed nothing, and so was not
            // written) can only come from another replica's older listing, which the
            // lease's term keeps out (`hold`).
            let mut unrecorded = Vec::new();
            for item in &page.runs {
                let at = item.updated_at.timestamp_millis();
                newest = newest.max(at);
                match known.remove(&item.run_id) {
                    Some(record) if record.phase == RunPhase::Active => {
                        changes += usize::from(self.apply(&record, item).await?);
                        if item.state.is_terminal() {
                            self.read_schedule.forget(&record.id);
                        } else if matches!(item.state, RunState::InProgress | RunState::Blocked) {
                            // Its agent is at work (a queued run's conversation is
                            // only its request).
                            let working = WorkingRun {
                                run: record.id.clone(),
                                oz_run: item.run_id.clone(),
                                created_at: item.created_at,
                                updated_at: item.updated_at,
                            };
                            self.read_schedule.note_working(working, self.now());
                        }
                    }
                    Some(_) => {}
                    None => unrecorded.push((item, at)),
                }
            }
            for (item, at) in unrecorded {
                match self.unrecorded(item).await? {
                    Unrecorded::Pending if self.now() - at < hold_for => {
                        held = Some(held.map_or(at, |h| h.min(at)));
                    }
                    Unrecorded::Recorded => changes += 1,
                    Unrecorded::Pending | Unrecorded::Settled => {}
                }
            }
            let Some(cursor) = page.page_info.next() else {
                break;
            };
            query.cursor = Some(cursor);
        }
        let next = held.map_or(newest, |h| newest.min(h - 1));
        self.store.set_marker(WATERMARK, &next.to_string()).await?;
        changes += self.check_quiet_runs(term).await?;
        changes += self.refresh_checklists(term).await?;
        Ok(Ticked::Followed { changes })
    }

    /// Reads the conversations of the working runs whose checklist is due (within the
    /// tick's budget) and shows what changed; how many status posts changed. A
    /// conversation that cannot be read leaves the rest of the status as it was.
    async fn refresh_checklists(&self, term: LeaseTerm) -> Result<usize, TickError> {
        if self.checklists.budget == 0 {
            return Ok(0);
        }
        let mut changes = 0;
        for work in self.read_schedule.pick(self.now(), self.checklists) {
            let run = &work.run;
            let conversation = match self.oz.get_run_conversation(&work.oz_run).await {
                Ok(conversation) => conversation,
                Err(error @ OzError::Paused { .. }) => return Err(error.into()),
                Err(error) => {
                    tracing::info!(%error, %run, "could not read the run's conversation; its checklist stays as it was");
                    continue;
                }
            };
            self.hold(term).await?;
            let checklist = checklist_of(&conversation, work.created_at);
            let checklist =
                (!checklist.steps.is_empty() || !checklist.actions.is_empty()).then_some(checklist);
            let Some(record) = self.store.get_run(run).await? else {
                continue;
            };
            let shown =
                self.store
                    .edit_run(&record, |record| {
                        (record.phase == RunPhase::Active && record.view.checklist != checklist)
                            .then(|| {
                                RunEdit::View(RunView {
                                    checklist: checklist.clone(),
                                    ..record.view.clone()
                                })
                            })
                    })
                    .await?;
            if shown.is_none() {
                continue;
            }
            self.outbox.status_changed();
            changes += 1;
        }
        Ok(changes)
    }

    /// Fetches, one by one, runs the list has not mentioned for a long time (and
    /// finished runs still missing their summary); how many changed.
    async fn check_quiet_runs(&self, term: LeaseTerm) -> Result<usize, TickError> {
        let mut changes = 0;
        for record in self.store.runs_due_check(MAX_SINGLE_FETCHES).await? {
            let Some(id) = record.view.oz_run_id.clone() else {
                continue;
            };
            // Fetched now: not again for ten minutes, unless the fetch says otherwise.
            self.store
                .check_run_after(
                    &record.id,
                    Duration::from_millis(crate::store::STALE_MS.unsigned_abs()),
                )
                .await?;
            match self.oz.get_run(&id).await {
                Ok(item) => {
                    self.hold(term).await?;
                    changes += usize::from(self.apply(&record, &item).await?);
                }
                Err(error @ OzError::Paused { .. }) => return Err(error.into()),
                Err(error) => tracing::info!(%error, run = %record.id, "could not fetch a run"),
            }
        }
        Ok(changes)
    }

    /// Handles a listed run that no stored run has as its Oz run.
    async fn unrecorded(&self, item: &RunItem) -> Result<Unrecorded, TickError> {
        let Some(reference) = reference_in(&item.prompt) else {
            return Ok(Unrecorded::Settled);
        };
        let Some(record) = self.store.get_run(&reference).await? else {
            return Ok(Unrecorded::Settled);
        };
        let recorded = match (&record.view.oz_run_id, record.phase) {
            (Some(own), _) if *own == item.run_id => false,
            (None, RunPhase::Starting) => return Ok(Unrecorded::Pending),
            // Created after all, though Oz's answers never said so: follow it.
            (None, RunPhase::Parked) => {
                tracing::info!(run = %record.id, oz_run = %item.run_id, "a parked run was created after all");
                self.adopter
                    .activate(&record, Created::from(item), true)
                    .await?
            }
            // A second run for the same command, or one for a run that ended without
            // starting: it must not go on (and the thread hears of it either way).
            _ => {
                self.adopter
                    .cancel_duplicate(&record.id, &item.run_id, item.state.is_terminal())
                    .await?
            }
        };
        Ok(if recorded {
            Unrecorded::Recorded
        } else {
            Unrecorded::Settled
        })
    }

    /// Folds a fresh view of a run into the stored one; true when it changed. A change
    /// decided from a copy another writer has changed since (a note, a queue line) is
    /// decided again from the run as it is now, so neither change is lost.
    async fn apply(&self, record: &RunRecord, item: &RunItem) -> Result<bool, TickError> {
        let mut fresh: Option<RunRecord> = None;
        for _ in 0..EDIT_ATTEMPTS {
            let current = fresh.as_ref().unwrap_or(record);
            if let Some(changed) = self.apply_to(current, item).await? {
                return Ok(changed);
            }
            let Some(latest) = self.store.get_run(&record.id).await? else {
                return Ok(false);
            };
            fresh = Some(latest);
        }
        Err(StoreError::Contended.into())
    }

    /// [`Self::apply`] to one copy of the run; None when the run changed since `record`
    /// was read (nothing was written).
    async fn apply_to(
        &self,
        record: &RunRecord,
        item: &RunItem,
    ) -> Result<Option<bool>, TickError> {
        if record
            .oz_updated_at
            .is_some_and(|taken| item.updated_at < taken)
        {
            // Older than the newest answer taken (a list page that came late, a replica
            // still working from an older listing): taking it would put an older state
            // back, so the view stays.
            return Ok(Some(false));
        }
        // What it cost so far, with this answer's time: a small write beside the view.
        let cost = cost_of(item);
        if cost != record.cost {
            self.store
                .note_oz_answer(&record.id, cost, item.updated_at)
                .await?;
        }
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
            queued: old.queued.clone(),
            // Shown while the run works; its summary says the rest.
            checklist: if item.state.is_terminal() {
                None
            } else {
                old.checklist.clone()
            },
            trouble: None,
            // Shown once the run ended: a status edited for every cent would be noise.
            figures: item.state.is_terminal().then(|| RunFigures::of_ended(item)),
            approved_by: old.approved_by.clone(),
        };
        let mut phase = RunPhase::Active;
        let mut summary_missing = false;
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
                    // Without its summary the run stays tracked and is fetched again soon.
                    Err(error) => {
                        tracing::info!(%error, run = %record.id, "summary not available yet");
                        summary_missing = true;
                    }
                }
            } else {
                phase = RunPhase::Done;
            }
        }
        let changed = view != *old;
        // An answer that changes nothing is not written (a write per working run per
        // tick would cost more than the tick itself).
        if !changed && phase == record.phase {
            if summary_missing {
                self.store
                    .check_run_after(&record.id, SUMMARY_RETRY)
                    .await?;
            }
            return Ok(Some(false));
        }
        let written = self
            .store
            .update_run(record, phase, &view, changed, Some(item.updated_at))
            .await?;
        if written == Written::Outdated {
            return Ok(None);
        }
        // The write scheduled the next fetch ten minutes out; a missing summary is
        // asked for sooner.
        if summary_missing {
            self.store
                .check_run_after(&record.id, SUMMARY_RETRY)
                .await?;
        }
        self.announce(record, &view, phase).await?;
        if phase == RunPhase::Done && record.phase != RunPhase::Done {
            crate::telemetry::run_finished(
                &record.origin.place_key(),
                view.figures.and_then(|figures| figures.cost()),
                view.figures.and_then(|figures| figures.seconds),
            );
        }
        if phase == RunPhase::Done {
            let mark = match item.state {
                RunState::Succeeded => Mark::Succeeded,
                RunState::Cancelled => Mark::Cancelled,
                _ => Mark::Failed,
            };
            self.outbox
                .mark(format!("mark:{}:final", record.id), &record.origin, mark)
                .await?;
        }
        self.outbox.status_changed();
        Ok(Some(true))
    }

    /// Queues the notable moments of a change (started, pull request opened, needs
    /// input, finished) as replies in the run's thread, each in the words of the run's
    /// surface, which may leave some out.
    async fn announce(
        &self,
        record: &RunRecord,
        view: &RunView,
        phase: RunPhase,
    ) -> Result<(), TickError> {
        let old = &record.view;
        let mut moments: Vec<(String, Moment)> = Vec::new();
        if view.state == Some(RunState::InProgress)
            && old.state != Some(RunState::InProgress)
            && old.session_link.is_none()
        {
            moments.push(("started".into(), Moment::Started));
        }
        for artifact in &view.artifacts {
            if let Artifact::PullRequest { data, .. } = artifact
                && !old.artifacts.contains(artifact)
            {
                moments.push((
                    format!("pr:{}", data.url),
                    Moment::PullRequest {
                        url: data.url.clone(),
                        branch: data.branch.clone(),
                    },
                ));
            }
        }
        if view.state == Some(RunState::Blocked) && old.state != Some(RunState::Blocked) {
            moments.push((format!("blocked:{}", view_stamp(view)), Moment::NeedsInput));
        }
        if phase == RunPhase::Done {
            moments.push(("final".into(), Moment::Finished));
        }
        let Ok(surface) = self.surfaces.of(&record.origin) else {
            return Ok(());
        };
        for (kind, moment) in moments {
            let Some(text) = surface.moment(record, view, &moment).await else {
                continue;
            };
            let message = OutboxMessage::RunReply {
                run: record.id.clone(),
                text,
            };
            self.outbox
                .send(format!("moment:{}:{kind}", record.id), message)
                .await?;
        }
        Ok(())
    }
}

/// What a run has cost so far: inference plus compute, as Oz reports them.
fn cost_of(item: &RunItem) -> f64 {
    item.request_usage.map_or(0.0, |usage| usage.total())
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
