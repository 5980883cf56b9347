//! Runs: the intent recorded before Oz is called, the view followed by the tracker,
//! and the status post kept in step with it (a version counter per visible change).
//! Every write of a view names the revision it was decided from ([`Revision`]), so
//! concurrent writers never undo each other's changes.

use super::{Claimable, Millis, Store, StoreError, StoreResult, clean, composed, ms};
use crate::domain::{Author, Origin, PostId, RunView};
use crate::ids::{CommandId, OzRunId, RunRef, ThreadKey};
use crate::oz::types::RunAgentRequest;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use std::time::Duration;

/// A run the tracker has not seen in a list for this long is fetched on its own.
pub const STALE_MS: Millis = 10 * 60_000;

/// Where a run is in ozbridge's own life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Recorded; Oz has not (knowingly) accepted it yet.
    Starting,
    /// Oz accepted it; the tracker follows it.
    Active,
    /// Final: terminal in Oz, or could not be started.
    Done,
    /// Oz did not accept it within the retry budget: waits for an operator's
    /// `ozbridge admin retry`.
    Parked,
}

impl RunPhase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Done => "done",
            Self::Parked => "parked",
        }
    }
    fn parse(value: &str) -> Self {
        match value {
            "starting" => Self::Starting,
            "active" => Self::Active,
            "parked" => Self::Parked,
            _ => Self::Done,
        }
    }
}

/// Which write of a run's view a copy of the run holds. Every write of the view names
/// the revision its change was decided from and is refused when another write came
/// first (see [`Written`]): a writer holding an older copy never puts back what
/// another one had just recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision(i64);

/// Whether a change decided from a copy of a run was stored.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// The run changed since the copy was read (or no longer matches what the write
    /// requires): nothing was written; read it again and decide again.
    Outdated,
}

impl Written {
    fn of(result: &sqlx::any::AnyQueryResult) -> Self {
        if result.rows_affected() == 1 {
            Self::Stored
        } else {
            Self::Outdated
        }
    }
}

/// A change of a run decided from its latest copy, for [`Store::edit_run`].
#[derive(Debug)]
pub enum RunEdit {
    /// A visible change of the view only; phase and leases stay as they are.
    View(RunView),
    /// The run is over: its final view, and whether it changed visibly.
    Finish { view: RunView, visible: bool },
    /// Oz did not accept the starting run in time: it waits for an operator, with the
    /// reason. `answered`: the last create was answered, so a resumed run may look it
    /// up at once.
    Park {
        view: RunView,
        reason: String,
        answered: bool,
    },
    /// Oz accepted the run (its id is in the view): the tracker follows it. `check_now`:
    /// its earlier changes may have been missed (it was found by a lookup), so the
    /// tracker fetches it once right away.
    Activate { view: RunView, check_now: bool },
}

/// How many times [`Store::edit_run`] (or a writer like it) decides again before it
/// gives up: each lost attempt means another writer's change was stored, so this is
/// never reached but by a run changing without a pause.
pub const EDIT_ATTEMPTS: usize = 32;

/// A stored run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: RunRef,
    pub command_id: CommandId,
    /// Where the run lives; its thread is `origin.thread_key()` (stored as a column too).
    pub origin: Origin,
    pub requester: Author,
    /// What the requester asked, in their words (shown in the status post).
    pub asked: String,
    pub request: RunAgentRequest,
    pub phase: RunPhase,
    pub view: RunView,
    /// Which write of the view this copy holds.
    pub revision: Revision,
    /// The `updated_at` of the newest Oz answer taken for the run (into its view or its
    /// cost; None before the tracker took one): an older answer is refused.
    pub oz_updated_at: Option<DateTime<Utc>>,
    /// How many create calls were sent (a non-zero count means: look before creating).
    pub create_attempts: i64,
    pub first_attempt_at: Option<Millis>,
    /// An earlier create may still land until then: no lookup may conclude "never
    /// created" before it.
    pub lookup_after: Millis,
    /// When retrying the create stops and the run is parked (0: no failure yet).
    pub start_give_up_at: Millis,
    pub version: i64,
    pub posted_version: i64,
    /// Failed status post attempts since it was last brought up to date.
    pub notify_attempts: i64,
    /// What the run has cost so far, as Oz reports it (inference + compute).
    pub cost: f64,
    /// The status post, once created.
    pub status_post: Option<PostId>,
    /// Digest of the body last posted, so an unchanged rendering is not sent again.
    pub posted_digest: Option<String>,
    /// A create of the status post was sent and may have landed; it may be looked up
    /// from this time on (an answer in doubt could still land before).
    pub post_lookup_after: Option<Millis>,
    /// The status post must exist before the run is created in Oz (Slack: it proves the
    /// bot can post in the channel, and it makes the thread).
    pub post_first: bool,
    pub created_at: Millis,
    /// When the run last changed (what its status post has to show).
    pub updated_at: Millis,
}

/// What a new run is: who asked what, where, and the request to send to Oz.
pub struct RunIntent {
    pub id: RunRef,
    pub command_id: CommandId,
    pub origin: Origin,
    pub requester: Author,
    /// What the requester asked, in their words.
    pub asked: String,
    pub request: RunAgentRequest,
    /// The status post must exist before the run is created in Oz.
    pub post_first: bool,
}

impl RunRecord {
    /// A run intent as recorded at `created_at`: nothing sent to Oz or posted yet.
    pub fn intent(intent: RunIntent, created_at: Millis) -> Self {
        let RunIntent {
            id,
            command_id,
            origin,
            requester,
            asked,
            request,
            post_first,
        } = intent;
        Self {
            id,
            command_id,
            origin,
            requester,
            asked,
            request,
            phase: RunPhase::Starting,
            view: RunView::default(),
            revision: Revision(0),
            oz_updated_at: None,
            create_attempts: 0,
            first_attempt_at: None,
            lookup_after: 0,
            start_give_up_at: 0,
            version: 1,
            posted_version: 0,
            notify_attempts: 0,
            cost: 0.0,
            status_post: None,
            posted_digest: None,
            post_lookup_after: None,
            post_first,
            created_at,
            updated_at: created_at,
        }
    }
}

const COLUMNS: &str = "id, command_id, origin, requester, asked, request, phase, view, view_rev, oz_updated_us, create_attempts,
    first_attempt_at, lookup_after, start_give_up_at, version, posted_version, notify_attempts, cost,
    status_post, posted_digest, post_attempted, post_first, created_at, updated_at";

/// [`COLUMNS`] without the prompt and the asked text (the bulk of a row, which no
/// reader of many runs needs).
fn light_columns() -> String {
    COLUMNS.replace("asked, request,", "'' AS asked, '{}' AS request,")
}

fn decode(row: &AnyRow) -> StoreResult<RunRecord> {
    let text = |name: &str| -> StoreResult<String> { Ok(row.try_get::<String, _>(name)?) };
    Ok(RunRecord {
        id: RunRef(text("id")?),
        command_id: CommandId(text("command_id")?),
        origin: serde_json::from_str(&text("origin")?)?,
        requester: serde_json::from_str::<crate::domain::StoredAuthor>(&text("requester")?)?.into(),
        asked: text("asked")?,
        request: serde_json::from_str(&text("request")?)?,
        phase: RunPhase::parse(&text("phase")?),
        view: serde_json::from_str(&text("view")?)?,
        revision: Revision(row.try_get("view_rev")?),
        oz_updated_at: Some(row.try_get::<i64, _>("oz_updated_us")?)
            .filter(|us| *us != 0)
            .and_then(DateTime::from_timestamp_micros),
        create_attempts: row.try_get("create_attempts")?,
        first_attempt_at: row.try_get("first_attempt_at")?,
        lookup_after: row.try_get("lookup_after")?,
        start_give_up_at: row.try_get("start_give_up_at")?,
        version: row.try_get("version")?,
        posted_version: row.try_get("posted_version")?,
        notify_attempts: row.try_get("notify_attempts")?,
        cost: row.try_get("cost")?,
        status_post: row
            .try_get::<Option<String>, _>("status_post")?
            .map(|post| serde_json::from_str(&post))
            .transpose()?,
        posted_digest: row.try_get("posted_digest")?,
        post_lookup_after: Some(row.try_get::<i64, _>("post_attempted")?).filter(|t| *t != 0),
        post_first: row.try_get::<i64, _>("post_first")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Runs to create in Oz, oldest first (a run that posts first waits for its post).
pub(super) const START_CLAIM: Claimable<'static> = Claimable {
    table: "runs",
    owner_column: "start_owner",
    lease_column: "start_lease_until",
    also_set: "",
    due: "c.phase = 'starting' AND (c.post_first = 0 OR c.status_post IS NOT NULL) AND c.start_next_at <= $3",
    order_by: "created_at",
    returning: COLUMNS,
};

/// Runs whose status post is behind their view, least recently changed first.
pub(super) const POST_CLAIM: Claimable<'static> = Claimable {
    table: "runs",
    owner_column: "notify_owner",
    lease_column: "notify_lease_until",
    also_set: "",
    due: "c.posted_version < c.version AND c.notify_next_at <= $3",
    order_by: "updated_at",
    returning: COLUMNS,
};

/// Runs of one person starting or working now (`$1`: the person).
pub(super) const GOING_OF_ACTOR: &str =
    "SELECT COUNT(*) FROM runs WHERE actor = $1 AND phase IN ('starting', 'active')";
/// Runs in one place starting or working now (`$1`: the place).
pub(super) const GOING_IN_PLACE: &str =
    "SELECT COUNT(*) FROM runs WHERE place = $1 AND phase IN ('starting', 'active')";

/// The oldest run followed (a tracker tick).
pub(super) const OLDEST_FOLLOWED: &str =
    "SELECT MIN(created_at) FROM runs WHERE phase IN ('active', 'starting', 'parked')";
/// The oldest run changed since `$1` whose create was sent more than once (a tracker
/// tick).
pub(super) const OLDEST_RETRIED: &str =
    "SELECT MIN(created_at) FROM runs WHERE updated_at > $1 AND create_attempts > 1";

/// Active runs by Oz state (a gauge).
pub(super) const ACTIVE_STATES: &str =
    "SELECT oz_state, COUNT(*) FROM runs WHERE phase = 'active' GROUP BY oz_state";

/// The Oz state a view shows, as the `oz_state` column holds it.
fn state_of(view: &RunView) -> Option<String> {
    view.state.as_ref().map(|state| state.to_string())
}

/// Runs going on by phase (a gauge).
pub(super) const RUNS_GOING_ON: &str = "SELECT phase, COUNT(*) FROM runs
    WHERE phase IN ('starting', 'active', 'parked') GROUP BY phase";

/// When the oldest change not posted yet was made (a gauge).
pub(super) const OLDEST_UNPOSTED: &str =
    "SELECT MIN(updated_at) FROM runs WHERE posted_version < version";

impl Store {
    /// Records a new run (one per command); false when the command already has one.
    pub async fn insert_run(&self, run: &RunRecord) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO runs (id, command_id, thread_key, origin, requester, asked, request, phase, view,
                version, posted_version, post_first, created_at, updated_at, actor, place)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $12, $13, $14)
             ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(run.id.as_str())
        .bind(run.command_id.as_str())
        .bind(run.origin.thread_key().as_str())
        .bind(serde_json::to_string(&run.origin)?)
        .bind(serde_json::to_string(&run.requester)?)
        .bind(clean(&run.asked))
        .bind(serde_json::to_string(&run.request)?)
        .bind(run.phase.as_str())
        .bind(serde_json::to_string(&run.view)?)
        .bind(run.version)
        .bind(i64::from(run.post_first))
        .bind(run.created_at)
        .bind(clean(&run.origin.actor_key(&run.requester)))
        .bind(clean(&run.origin.place_key()))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// One run by id.
    pub async fn get_run(&self, id: &RunRef) -> StoreResult<Option<RunRecord>> {
        let row = sqlx::query(composed(format!(
            "SELECT {COLUMNS} FROM runs WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The run created for a command, if any.
    pub async fn run_for_command(&self, command: &CommandId) -> StoreResult<Option<RunRecord>> {
        let row = sqlx::query(composed(format!(
            "SELECT {COLUMNS} FROM runs WHERE command_id = $1"
        )))
        .bind(command.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The newest run of a thread.
    pub async fn latest_run_in_thread(&self, thread: &ThreadKey) -> StoreResult<Option<RunRecord>> {
        let row = sqlx::query(composed(format!(
            "SELECT {COLUMNS} FROM runs WHERE thread_key = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(thread.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The newest run whose thread key starts with `prefix` (a Slack channel's runs).
    pub async fn latest_run_with_prefix(&self, prefix: &str) -> StoreResult<Option<RunRecord>> {
        let pattern = format!("{}%", prefix.replace('%', "").replace('_', "\\_"));
        let row = sqlx::query(composed(format!(
            "SELECT {COLUMNS} FROM runs WHERE thread_key LIKE $1 ESCAPE '\\' ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Moves a run into the thread its status post started (a Slack slash command).
    pub async fn adopt_thread(
        &self,
        id: &RunRef,
        origin: &Origin,
        thread: &ThreadKey,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET origin = $1, thread_key = $2 WHERE id = $3")
            .bind(serde_json::to_string(origin)?)
            .bind(thread.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when an artifact with this uid belongs to one of ozbridge's runs.
    pub async fn artifact_known(&self, uid: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM artifacts WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Records which run the view's artifacts belong to (before the view is shown, so a
    /// download link always works).
    async fn record_artifacts(&self, id: &RunRef, view: &RunView) -> StoreResult<()> {
        for uid in view.artifacts.iter().filter_map(|a| a.uid()) {
            sqlx::query(
                "INSERT INTO artifacts (uid, run_id) VALUES ($1, $2) ON CONFLICT (uid) DO NOTHING",
            )
            .bind(uid)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// How many followed runs are in each Oz state (`NONE` before Oz named one), for
    /// the gauges: counted from the state column's index of active runs, not their views.
    pub async fn active_states(&self) -> StoreResult<BTreeMap<String, i64>> {
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as(ACTIVE_STATES).fetch_all(&self.pool).await?;
        let mut counts = BTreeMap::new();
        for (state, count) in rows {
            *counts
                .entry(state.unwrap_or_else(|| "NONE".to_owned()))
                .or_default() += count;
        }
        Ok(counts)
    }

    /// The runs whose Oz ids are among `ids` (one list page), without their prompts.
    pub async fn runs_by_oz_ids(&self, ids: &[OzRunId]) -> StoreResult<Vec<RunRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM runs WHERE oz_run_id IN ({})",
            light_columns(),
            placeholders.join(", ")
        );
        let mut query = sqlx::query(composed(sql));
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Active runs due for a fetch of their own (not seen in a list for a long time, or
    /// asked to be checked again soon), the most overdue first.
    pub async fn runs_due_check(&self, limit: i64) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query(composed(format!(
            "SELECT {} FROM runs WHERE phase = 'active' AND check_at <= $1
             ORDER BY check_at LIMIT $2",
            light_columns()
        )))
        .bind(self.clock.now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Schedules the tracker's next fetch of a run of its own, after `delay`.
    pub async fn check_run_after(&self, id: &RunRef, delay: Duration) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET check_at = $1 WHERE id = $2")
            .bind(self.clock.now_ms() + ms(delay))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The creation time of the oldest run that Oz may know of and ozbridge still
    /// follows or waits for; `None` when there is none. A run whose create was sent more
    /// than once is watched for ten minutes after its last change even when it ended:
    /// an earlier create may still land, and that duplicate must be cancelled.
    pub async fn oldest_followed_run(&self) -> StoreResult<Option<Millis>> {
        let (followed,): (Option<i64>,) = sqlx::query_as(OLDEST_FOLLOWED)
            .fetch_one(&self.pool)
            .await?;
        let (retried,): (Option<i64>,) = sqlx::query_as(OLDEST_RETRIED)
            .bind(self.clock.now_ms() - STALE_MS)
            .fetch_one(&self.pool)
            .await?;
        Ok(followed.into_iter().chain(retried).min())
    }

    /// Claims a run waiting to be created in Oz.
    pub async fn claim_run_to_start(
        &self,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<RunRecord>> {
        let row = self.claim_due(&START_CLAIM, owner, lease).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Records that a create call is about to be sent by `owner`, which may land until
    /// `lookup_after`, and extends `owner`'s claim by `lease` to cover the call. False
    /// (nothing written) when `owner` no longer holds the claim: another worker took the
    /// run over, and this one must send nothing.
    pub async fn note_create_attempt(
        &self,
        id: &RunRef,
        owner: &str,
        lookup_after: Millis,
        lease: Duration,
    ) -> StoreResult<bool> {
        let now = self.clock.now_ms();
        let noted = sqlx::query(
            "UPDATE runs SET create_attempts = create_attempts + 1,
                first_attempt_at = COALESCE(first_attempt_at, $1), lookup_after = $2, updated_at = $1,
                start_lease_until = $3
             WHERE id = $4 AND start_owner = $5 AND start_lease_until > $1",
        )
        .bind(now)
        .bind(lookup_after)
        .bind(now + ms(lease))
        .bind(id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(noted.rows_affected() == 1)
    }

    /// Gives a starting run back, to be tried again after `delay`. `answered`: the last
    /// create was answered (it cannot land later), so a lookup may conclude at once.
    /// `give_up_at`: when retrying stops.
    pub async fn retry_start(
        &self,
        id: &RunRef,
        delay: Duration,
        answered: bool,
        give_up_at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET start_lease_until = 0, start_next_at = $1, start_give_up_at = $2,
                lookup_after = CASE WHEN $3 = 1 THEN 0 ELSE lookup_after END
             WHERE id = $4",
        )
        .bind(self.clock.now_ms() + ms(delay))
        .bind(give_up_at)
        .bind(i64::from(answered))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a starting run back without counting a failure (it must wait first).
    pub async fn release_start(&self, id: &RunRef, delay: Duration) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET start_lease_until = 0, start_next_at = $1 WHERE id = $2")
            .bind(self.clock.now_ms() + ms(delay))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Parks a starting run (see [`RunEdit::Park`]).
    async fn park_run(
        &self,
        run: &RunRecord,
        reason: &str,
        view: &RunView,
        answered: bool,
    ) -> StoreResult<Written> {
        let result = sqlx::query(
            "UPDATE runs SET phase = 'parked', parked_reason = $1, view = $2, version = version + 1,
                view_rev = view_rev + 1, updated_at = $3, start_lease_until = 0,
                lookup_after = CASE WHEN $4 = 1 THEN 0 ELSE lookup_after END
             WHERE id = $5 AND view_rev = $6 AND phase = 'starting'",
        )
        .bind(clean(reason))
        .bind(serde_json::to_string(view)?)
        .bind(self.clock.now_ms())
        .bind(i64::from(answered))
        .bind(run.id.as_str())
        .bind(run.revision.0)
        .execute(&self.pool)
        .await?;
        Ok(Written::of(&result))
    }

    /// Records the Oz run of a starting or parked run and makes it active (see
    /// [`RunEdit::Activate`]); outdated when it has an Oz run already.
    async fn activate_run(
        &self,
        run: &RunRecord,
        view: &RunView,
        check_now: bool,
    ) -> StoreResult<Written> {
        let now = self.clock.now_ms();
        let result = sqlx::query(
            "UPDATE runs SET phase = 'active', view = $1, oz_run_id = $2, version = version + 1,
                view_rev = view_rev + 1, updated_at = $3, check_at = $4, start_lease_until = 0,
                parked_reason = NULL, oz_state = $5
             WHERE id = $6 AND view_rev = $7 AND oz_run_id IS NULL
                AND phase IN ('starting', 'parked')",
        )
        .bind(serde_json::to_string(view)?)
        .bind(view.oz_run_id.as_ref().map(|id| id.as_str().to_owned()))
        .bind(now)
        .bind(if check_now { now } else { now + STALE_MS })
        .bind(state_of(view))
        .bind(run.id.as_str())
        .bind(run.revision.0)
        .execute(&self.pool)
        .await?;
        Ok(Written::of(&result))
    }

    /// Stores a visible change of a run's view (a note, a notice) decided from `run`, and
    /// nothing else: no lease or phase is touched, so a worker holding the run keeps it.
    async fn update_view(&self, run: &RunRecord, view: &RunView) -> StoreResult<Written> {
        let result = sqlx::query(
            "UPDATE runs SET view = $1, version = version + 1, view_rev = view_rev + 1,
                updated_at = $2, oz_state = $3
             WHERE id = $4 AND view_rev = $5",
        )
        .bind(serde_json::to_string(view)?)
        .bind(self.clock.now_ms())
        .bind(state_of(view))
        .bind(run.id.as_str())
        .bind(run.revision.0)
        .execute(&self.pool)
        .await?;
        Ok(Written::of(&result))
    }

    /// Stores a run's phase and view, decided from `run` and taken from Oz's answer of
    /// `oz_updated_at`; bumps its version (the status post follows) when the view
    /// changed visibly. Refused (`Outdated`) when the view changed since `run` was read,
    /// or the record holds a newer answer of Oz.
    pub async fn update_run(
        &self,
        run: &RunRecord,
        phase: RunPhase,
        view: &RunView,
        changed: bool,
        oz_updated_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Written> {
        self.record_artifacts(&run.id, view).await?;
        let now = self.clock.now_ms();
        let result = sqlx::query(
            "UPDATE runs SET phase = $1, view = $2, oz_run_id = COALESCE(oz_run_id, $3),
                version = version + $4, view_rev = view_rev + 1, updated_at = $5,
                start_lease_until = 0, check_at = $6, oz_state = $7, oz_updated_us = $8
             WHERE id = $9 AND view_rev = $10 AND oz_updated_us <= $8",
        )
        .bind(phase.as_str())
        .bind(serde_json::to_string(view)?)
        .bind(view.oz_run_id.as_ref().map(|id| id.as_str().to_owned()))
        .bind(i64::from(changed))
        .bind(now)
        .bind(now + STALE_MS)
        .bind(state_of(view))
        .bind(oz_updated_at.map_or(0, |at| at.timestamp_micros()))
        .bind(run.id.as_str())
        .bind(run.revision.0)
        .execute(&self.pool)
        .await?;
        Ok(Written::of(&result))
    }

    /// Changes a run as `decide` says: decided first from `run` (the caller's copy), and
    /// again from a fresh copy whenever another writer stored a change first. Returns
    /// the copy the stored change was decided from; None when the run is gone or
    /// `decide` wanted nothing.
    pub async fn edit_run(
        &self,
        run: &RunRecord,
        mut decide: impl FnMut(&RunRecord) -> Option<RunEdit>,
    ) -> StoreResult<Option<RunRecord>> {
        let mut fresh: Option<RunRecord> = None;
        for _ in 0..EDIT_ATTEMPTS {
            let current = fresh.as_ref().unwrap_or(run);
            let written = match decide(current) {
                None => return Ok(None),
                Some(RunEdit::View(view)) => self.update_view(current, &view).await?,
                Some(RunEdit::Finish { view, visible }) => {
                    self.update_run(
                        current,
                        RunPhase::Done,
                        &view,
                        visible,
                        current.oz_updated_at,
                    )
                    .await?
                }
                Some(RunEdit::Park {
                    view,
                    reason,
                    answered,
                }) => self.park_run(current, &reason, &view, answered).await?,
                Some(RunEdit::Activate { view, check_now }) => {
                    self.activate_run(current, &view, check_now).await?
                }
            };
            if written == Written::Stored {
                return Ok(Some(current.clone()));
            }
            let Some(latest) = self.get_run(&run.id).await? else {
                return Ok(None);
            };
            fresh = Some(latest);
        }
        Err(StoreError::Contended)
    }

    /// Claims a run whose status post is behind its view.
    pub async fn claim_run_to_notify(
        &self,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<RunRecord>> {
        let row = self.claim_due(&POST_CLAIM, owner, lease).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Records that a status post create is about to be sent by `owner`, which may land
    /// until `lookup_after`, and extends the claim by `lease`. False (nothing written)
    /// when `owner` no longer holds the claim.
    pub async fn note_post_attempt(
        &self,
        id: &RunRef,
        owner: &str,
        lookup_after: Millis,
        lease: Duration,
    ) -> StoreResult<bool> {
        self.note_fenced_attempt(
            "UPDATE runs SET post_attempted = $1, notify_lease_until = $2 WHERE id = $3 AND notify_owner = $4 AND notify_lease_until > $5",
            id.as_str(),
            owner,
            lookup_after,
            lease,
        )
        .await
    }

    /// The last status post create was answered: a lookup may conclude at once.
    pub async fn clear_post_doubt(&self, id: &RunRef) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET post_attempted = 1 WHERE id = $1 AND post_attempted > 0")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that an edit of the run's status post got no answer and may still land
    /// until `until` (landing late, it would show an older rendering over a newer one),
    /// and has the latest rendering sent again then ([`Store::repost_at`]).
    pub async fn note_edit_in_doubt(&self, id: &RunRef, until: Millis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET post_attempted = CASE WHEN post_attempted > $1 THEN post_attempted ELSE $1 END,
                version = version + 1, posted_digest = NULL, notify_next_at = $1
             WHERE id = $2",
        )
        .bind(until)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Has the run's status post sent again at `at`, even unchanged: whatever an edit
    /// in doubt left behind is then overwritten by the latest rendering.
    pub async fn repost_at(&self, id: &RunRef, at: Millis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET version = version + 1, posted_digest = NULL, notify_next_at = $1
             WHERE id = $2",
        )
        .bind(at)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the status post as up to date with `version`. `created`: this post was
    /// just created and its create answered, so no earlier create can land any more;
    /// that is recorded in the same statement that gives the run back, or the next
    /// worker to claim it would take the create as still in doubt and hold its next
    /// edit back for the whole doubt window.
    pub async fn mark_posted(
        &self,
        id: &RunRef,
        version: i64,
        post: &PostId,
        digest: &str,
        created: bool,
    ) -> StoreResult<()> {
        let post = serde_json::to_string(post)?;
        sqlx::query(
            "UPDATE runs SET posted_version = $1, status_post = $2, posted_digest = $3, notify_lease_until = 0,
                notify_next_at = 0, notify_attempts = 0,
                post_attempted = CASE WHEN $4 = 1 AND post_attempted > 0 THEN 1 ELSE post_attempted END
             WHERE id = $5",
        )
        .bind(version)
        .bind(post)
        .bind(digest)
        .bind(i64::from(created))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a run's status post as needing nothing more (it could not be posted at all).
    pub async fn skip_post(&self, id: &RunRef) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET posted_version = version, notify_lease_until = 0 WHERE id = $1",
        )
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a run's notification back after a failed attempt, to be tried again after
    /// `delay`.
    pub async fn defer_notify(&self, id: &RunRef, delay: Duration) -> StoreResult<()> {
        self.give_back_notify(id, delay, 1).await
    }

    /// Gives a run's notification back untried (it must wait `delay` first).
    pub async fn release_notify(&self, id: &RunRef, delay: Duration) -> StoreResult<()> {
        self.give_back_notify(id, delay, 0).await
    }

    async fn give_back_notify(&self, id: &RunRef, delay: Duration, failed: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE runs SET notify_lease_until = 0, notify_next_at = $1, notify_attempts = notify_attempts + $2
             WHERE id = $3",
        )
        .bind(self.clock.now_ms() + ms(delay))
        .bind(failed)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what Oz's answer of `oz_updated_at` says beside the view: what the run
    /// has cost so far, and that no answer older than this one is to be taken. Not a
    /// write of the view (its revision stays), so a writer deciding from the view is not
    /// sent back; an older answer's write of the view is refused all the same
    /// ([`Self::update_run`] checks the time). Nothing is written when the record
    /// already holds a newer answer.
    pub async fn note_oz_answer(
        &self,
        id: &RunRef,
        cost: f64,
        oz_updated_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let at = oz_updated_at.timestamp_micros();
        sqlx::query(
            "UPDATE runs SET cost = $1, oz_updated_us = $2 WHERE id = $3 AND oz_updated_us <= $2",
        )
        .bind(cost)
        .bind(at)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs of `actor` starting or working now.
    pub async fn active_runs_of(&self, actor: &str) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(GOING_OF_ACTOR)
            .bind(actor)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Runs of `place` starting or working now.
    pub async fn active_runs_in(&self, place: &str) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(GOING_IN_PLACE)
            .bind(place)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Runs `actor` started since `since`.
    pub async fn runs_started_by(&self, actor: &str, since: Millis) -> StoreResult<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM runs WHERE actor = $1 AND created_at > $2")
                .bind(actor)
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }

    /// What the runs of `place` started since `since` have cost.
    pub async fn cost_in(&self, place: &str, since: Millis) -> StoreResult<f64> {
        let (cost,): (Option<f64>,) =
            sqlx::query_as("SELECT SUM(cost) FROM runs WHERE place = $1 AND created_at > $2")
                .bind(place)
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
        Ok(cost.unwrap_or(0.0))
    }

    /// Runs going on (starting, active, parked) by phase, for metrics: finished runs
    /// are history, which the gauges never read.
    pub async fn run_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as(RUNS_GOING_ON).fetch_all(&self.pool).await?)
    }

    /// Oldest unsent status change, in ms of age (notification lag), or 0.
    pub async fn oldest_unposted_age(&self) -> StoreResult<Millis> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(OLDEST_UNPOSTED)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.0)
            .map(|t| (self.clock.now_ms() - t).max(0))
            .unwrap_or(0))
    }
}
