//! Which Oz run belongs to which of ours: the starter records the run a create (or a
//! lookup) gave, and the tracker records a parked run that was created after all; an
//! extra Oz run for a run that has one already is a duplicate, cancelled and said so.

use super::outbox::Outbox;
use crate::domain::RunView;
use crate::ids::{ConversationId, OzRunId, RunRef};
use crate::oz::OzClient;
use crate::oz::types::{RunItem, RunState};
use crate::store::{RunEdit, RunPhase, RunRecord, Store, StoreResult};

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

/// Records Oz runs against ours, and stops duplicates.
#[derive(Clone)]
pub(super) struct Adopter {
    pub store: Store,
    pub oz: OzClient,
    pub outbox: Outbox,
}

impl Adopter {
    /// Records the Oz run of a starting (or parked) run. When the run has one already,
    /// this one is a duplicate: it is cancelled, and the thread is told. `found`: the
    /// run was found by a lookup, not by the create's answer, so changes it went
    /// through meanwhile may have been missed and it is fetched once right away. False
    /// when nothing new was recorded.
    pub async fn activate(
        &self,
        run: &RunRecord,
        created: Created,
        found: bool,
    ) -> StoreResult<bool> {
        let activated = self
            .store
            .edit_run(run, |latest| {
                let activable = latest.view.oz_run_id.is_none()
                    && matches!(latest.phase, RunPhase::Starting | RunPhase::Parked);
                activable.then(|| RunEdit::Activate {
                    view: RunView {
                        state: Some(created.state.clone()),
                        oz_run_id: Some(created.run_id.clone()),
                        conversation_id: created
                            .conversation_id
                            .clone()
                            .or(latest.view.conversation_id.clone()),
                        trouble: None,
                        ..latest.view.clone()
                    },
                    check_now: found,
                })
            })
            .await?;
        if activated.is_some() {
            self.outbox.status_changed();
            return Ok(true);
        }
        self.cancel_duplicate(&run.id, &created.run_id, false).await
    }

    /// Cancels an extra Oz run made for `run` (an answer was lost and the create was
    /// sent again) and says so on the run's status post, once. `finished`: it ended
    /// before it could be stopped; it is only mentioned. False when there was nothing
    /// (more) to do.
    pub async fn cancel_duplicate(
        &self,
        run: &RunRef,
        extra: &OzRunId,
        finished: bool,
    ) -> StoreResult<bool> {
        let Some(record) = self.store.get_run(run).await? else {
            return Ok(false);
        };
        // The run itself (two workers recorded the same find), or said already.
        if record.view.oz_run_id.as_ref() == Some(extra)
            || record
                .view
                .note
                .as_deref()
                .is_some_and(|note| note.contains(extra.as_str()))
        {
            return Ok(false);
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
        self.store
            .edit_run(&record, |latest| {
                Some(RunEdit::View(RunView {
                    note: Some(note.clone()),
                    ..latest.view.clone()
                }))
            })
            .await?;
        self.outbox.status_changed();
        Ok(true)
    }
}
