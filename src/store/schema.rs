//! Embedded, ordered migrations written in the SQL that SQLite and PostgreSQL share:
//! TEXT ids, BIGINT times (ms) and flags, no engine-specific types.

use sqlx::{AnyPool, Executor};

/// Each migration is a list of statements; its index + 1 is its version.
const MIGRATIONS: &[&[&str]] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11];

/// The first schema.
const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS commands (
        id TEXT PRIMARY KEY,
        dedupe_key TEXT NOT NULL UNIQUE,
        thread_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0,
        received_at BIGINT NOT NULL,
        finished_at BIGINT,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS commands_due ON commands (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS commands_thread ON commands (thread_key, status)",
    "CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        command_id TEXT NOT NULL UNIQUE,
        thread_key TEXT NOT NULL,
        origin TEXT NOT NULL,
        requester TEXT NOT NULL,
        asked TEXT NOT NULL,
        request TEXT NOT NULL,
        phase TEXT NOT NULL,
        oz_run_id TEXT UNIQUE,
        view TEXT NOT NULL,
        create_attempts BIGINT NOT NULL DEFAULT 0,
        first_attempt_at BIGINT,
        start_owner TEXT,
        start_lease_until BIGINT NOT NULL DEFAULT 0,
        start_next_at BIGINT NOT NULL DEFAULT 0,
        version BIGINT NOT NULL DEFAULT 1,
        posted_version BIGINT NOT NULL DEFAULT 0,
        status_post TEXT,
        posted_digest TEXT,
        post_attempted BIGINT NOT NULL DEFAULT 0,
        post_first BIGINT NOT NULL DEFAULT 0,
        notify_owner TEXT,
        notify_lease_until BIGINT NOT NULL DEFAULT 0,
        notify_next_at BIGINT NOT NULL DEFAULT 0,
        notify_attempts BIGINT NOT NULL DEFAULT 0,
        last_seen_at BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS runs_thread ON runs (thread_key, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_phase ON runs (phase)",
    "CREATE INDEX IF NOT EXISTS runs_dirty ON runs (posted_version, version)",
    "CREATE TABLE IF NOT EXISTS outbox (
        id TEXT PRIMARY KEY,
        dedupe_key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        attempted BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        sent_at BIGINT,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS markers (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

/// Columns for time-bounded retries, parking, answers in doubt, the tracker's per-run
/// checks and the run limits (who, where, what it cost); drops the never-read
/// `last_seen_at`.
const V2: &[&str] = &[
    "ALTER TABLE commands ADD COLUMN give_up_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN give_up_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN start_give_up_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN lookup_after BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN check_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN parked_reason TEXT",
    "ALTER TABLE runs DROP COLUMN last_seen_at",
    "ALTER TABLE runs ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE runs ADD COLUMN place TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE runs ADD COLUMN cost DOUBLE PRECISION NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS runs_actor ON runs (actor, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_place ON runs (place, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_check ON runs (phase, check_at)",
    "CREATE INDEX IF NOT EXISTS runs_followed ON runs (phase, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_recent ON runs (updated_at)",
];

/// Status post ids become typed ([`crate::domain::PostId`], stored as JSON): a bare
/// GitHub comment id or Slack message ts of an older version is wrapped by its run's
/// platform. Artifacts get rows (which run each belongs to); the existing ones are
/// copied from the runs' views by [`backfill_artifacts`].
const V3: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS artifacts (uid TEXT PRIMARY KEY, run_id TEXT NOT NULL)",
    r#"UPDATE runs SET status_post = '{"kind":"github_comment","id":' || status_post || '}'
       WHERE status_post IS NOT NULL AND status_post NOT LIKE '{%' AND origin LIKE '{"platform":"github"%'"#,
    r#"UPDATE runs SET status_post = '{"kind":"slack_message","ts":"' || status_post || '"}'
       WHERE status_post IS NOT NULL AND status_post NOT LIKE '{%' AND origin LIKE '{"platform":"slack"%'"#,
];

/// Every claim an indexed lookup, whatever the size of the backlog and of history:
/// partial indexes hold only what may be due (pending commands and messages, runs whose
/// status post is behind), in the order they are claimed; the old indexes that led with
/// the status are dropped. Finished work is found by when it finished, for retention.
const V4: &[&str] = &[
    "DROP INDEX IF EXISTS commands_due",
    "CREATE INDEX IF NOT EXISTS commands_pending ON commands (received_at) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS commands_finished ON commands (finished_at) WHERE status IN ('done', 'failed')",
    "DROP INDEX IF EXISTS outbox_due",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (sent_at) WHERE status IN ('sent', 'dead')",
    "DROP INDEX IF EXISTS runs_dirty",
    "CREATE INDEX IF NOT EXISTS runs_unposted ON runs (updated_at) WHERE posted_version < version",
    "CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id)",
    // The abuse limits count the runs going on per person and per place for every new
    // command: from the runs going on, not from everything each one ever started.
    "CREATE INDEX IF NOT EXISTS runs_actor_going ON runs (actor) WHERE phase IN ('starting', 'active')",
    "CREATE INDEX IF NOT EXISTS runs_place_going ON runs (place) WHERE phase IN ('starting', 'active')",
];

/// Queued instructions: commands waiting for their thread's run to end (status
/// `queued`), found by thread in the order they came.
const V5: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS commands_queued ON commands (thread_key, received_at) WHERE status = 'queued'",
];

/// Outsiders' requests waiting for approval (status `awaiting`), found by thread and
/// by age (they expire).
const V6: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS commands_awaiting ON commands (received_at) WHERE status = 'awaiting'",
];

/// Parked work counted for the gauges from partial indexes, whatever the size of
/// history (without them each count read every command and notification); the runs
/// whose create was sent more than once, which the tracker watches for duplicates
/// every tick, found without reading every run changed in the last ten minutes; and
/// each run's Oz state in a column of its own, so the gauge of the active runs' states
/// reads an index instead of every active run's view.
const V7: &[&str] = &[
    "ALTER TABLE runs ADD COLUMN oz_state TEXT",
    "CREATE INDEX IF NOT EXISTS runs_active_state ON runs (phase, oz_state)",
    "CREATE INDEX IF NOT EXISTS runs_retried ON runs (updated_at) WHERE create_attempts > 1",
    "CREATE INDEX IF NOT EXISTS commands_parked ON commands (received_at) WHERE status = 'parked'",
    "CREATE INDEX IF NOT EXISTS outbox_parked ON outbox (created_at) WHERE status = 'parked'",
];

/// A revision per run, counting every write of its view: a writer names the revision
/// its change was decided from, so a change decided from an older copy is refused
/// instead of putting back what another writer had just recorded.
const V8: &[&str] = &["ALTER TABLE runs ADD COLUMN view_rev BIGINT NOT NULL DEFAULT 0"];

/// The `updated_at` of the newest Oz answer taken for a run (microseconds; 0: none yet),
/// so an older answer (a late list page, a replica still holding an older listing) is
/// not taken over a newer one.
const V9: &[&str] = &["ALTER TABLE runs ADD COLUMN oz_updated_us BIGINT NOT NULL DEFAULT 0"];

/// A lease's term, which changes whenever the lease changes owner: a holder whose term
/// ended (another replica took the lease meanwhile) drops what it was about to write.
const V10: &[&str] = &["ALTER TABLE leases ADD COLUMN term BIGINT NOT NULL DEFAULT 0"];

/// The narrow inbox: on SQLite, intake commits each command here (its dedupe key as
/// primary key and what its handling needs, two B-trees) and the pipeline moves it into
/// `commands` (five) when it is ready for it ([`super::inbox`]). Rows are moved in the
/// order they were committed (the rowid). Empty on PostgreSQL, whose intake inserts into
/// `commands` directly.
const V11: &[&str] = &["CREATE TABLE IF NOT EXISTS inbox (
        dedupe_key TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at BIGINT NOT NULL
    )"];

/// Which database engine the statements run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Key of the PostgreSQL advisory lock that serializes migrations across replicas.
const MIGRATION_LOCK: i64 = 0x6f7a_6272_6964_6765; // "ozbridge"

/// Applies the migrations not applied yet, in one transaction that holds the database's
/// migration lock: a PostgreSQL advisory lock, or SQLite's write lock (`BEGIN
/// IMMEDIATE`). Replicas starting at once on a fresh database wait for each other, and
/// each sees the versions the first one applied.
pub async fn migrate(pool: &AnyPool, engine: Engine) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    match engine {
        Engine::Sqlite => {
            conn.execute("BEGIN IMMEDIATE").await?;
        }
        Engine::Postgres => {
            conn.execute("BEGIN").await?;
            if let Err(error) = sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
            {
                let _ = conn.execute("ROLLBACK").await;
                return Err(error);
            }
        }
    }
    match apply_pending(&mut conn).await {
        Ok(()) => {
            conn.execute("COMMIT").await?;
            Ok(())
        }
        Err(error) => {
            if conn.execute("ROLLBACK").await.is_err() {
                // A connection in an unknown transaction state must not be reused.
                conn.detach();
            }
            Err(error)
        }
    }
}

async fn apply_pending(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS ozbridge_schema (version BIGINT PRIMARY KEY)")
        .execute(&mut *conn)
        .await?;
    let (current,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM ozbridge_schema")
        .fetch_one(&mut *conn)
        .await?;
    let current = current.unwrap_or(0);
    for (index, statements) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *conn).await?;
        }
        if version == 3 {
            backfill_artifacts(conn).await?;
        }
        if version == 7 {
            backfill_states(conn).await?;
        }
        sqlx::query("INSERT INTO ozbridge_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Copies the Oz state of each active run stored before runs had an `oz_state` column
/// out of its view.
async fn backfill_states(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    #[derive(serde::Deserialize)]
    struct StateOnly {
        state: Option<crate::oz::types::RunState>,
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, view FROM runs WHERE phase = 'active'")
            .fetch_all(&mut *conn)
            .await?;
    for (run, view) in rows {
        let state = serde_json::from_str::<StateOnly>(&view)
            .ok()
            .and_then(|v| v.state)
            .map(|s| s.to_string());
        sqlx::query("UPDATE runs SET oz_state = $1 WHERE id = $2")
            .bind(state)
            .bind(&run)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records the artifacts of the runs stored before artifacts had rows.
async fn backfill_artifacts(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, view FROM runs WHERE view LIKE '%artifact_uid%'")
            .fetch_all(&mut *conn)
            .await?;
    for (run, view) in rows {
        let Ok(view) = serde_json::from_str::<crate::domain::RunView>(&view) else {
            tracing::warn!(%run, "a run's stored view could not be read; its artifacts are not listed");
            continue;
        };
        for uid in view.artifacts.iter().filter_map(|a| a.uid()) {
            sqlx::query(
                "INSERT INTO artifacts (uid, run_id) VALUES ($1, $2) ON CONFLICT (uid) DO NOTHING",
            )
            .bind(uid)
            .bind(&run)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
