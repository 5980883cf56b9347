//! Embedded, ordered migrations written in the SQL that SQLite and PostgreSQL share:
//! TEXT ids, BIGINT times (ms) and flags, no engine-specific types.

use sqlx::AnyPool;

/// Each migration is a list of statements; its index + 1 is its version.
const MIGRATIONS: &[&[&str]] = &[&[
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
]];

/// Applies the migrations not applied yet. Statements are idempotent, so two replicas
/// starting at once cannot break each other.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS ozbridge_schema (version BIGINT PRIMARY KEY)")
        .execute(pool)
        .await?;
    let current: Option<(i64,)> = sqlx::query_as("SELECT MAX(version) FROM ozbridge_schema")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
    let current = current.map(|r| r.0).unwrap_or(0);
    for (index, statements) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        for statement in *statements {
            sqlx::query(statement).execute(pool).await?;
        }
        sqlx::query(
            "INSERT INTO ozbridge_schema (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .execute(pool)
        .await?;
    }
    Ok(())
}
