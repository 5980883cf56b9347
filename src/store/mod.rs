//! Durable state on SQLite (default) or PostgreSQL through one `sqlx::Any` code path:
//! the inbox of commands, the runs, the outbox of notifications, leases and markers.
//! Work is claimed with leases so that several replicas never do the same thing twice.

mod admin;
mod commands;
mod group_commit;
mod inbox;
mod outbox;
mod retention;
mod runs;
mod schema;
mod tls;

pub use admin::{ParkedItem, ParkedKind};
pub use commands::ClaimedCommand;
pub use outbox::{OutboxItem, OutboxMessage};
pub use runs::{
    EDIT_ATTEMPTS, Revision, RunEdit, RunIntent, RunPhase, RunRecord, STALE_MS, Written,
};
pub use tls::{TlsSettingError, Transport, prepare_postgres_url};

use crate::clock::Clock;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

/// Milliseconds since the Unix epoch, the unit of every time column.
pub use crate::clock::{Millis, ms};

/// Text for a TEXT column: PostgreSQL cannot store U+0000, so a NUL that got past
/// intake is replaced rather than failing the write again and again.
pub(crate) fn clean(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A store error; callers only log and retry these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A run kept changing while a change decided from it was being written.
    #[error("the run kept changing while it was being written")]
    Contended,
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// One owner's uninterrupted hold of a lease: it changes whenever the lease changes
/// owner ([`Store::try_lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerm(i64);

/// The database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Inbox inserts: the request's answer waits for them, so they have connections of
    /// their own and never queue behind the pipeline for one.
    inbox: inbox::Inbox,
    /// The time every stored time is read against.
    clock: Clock,
    /// SQLite or PostgreSQL.
    engine: schema::Engine,
}

impl Store {
    /// Connects, creating a SQLite file (and its folder) if missing, and migrates.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`], with the times of leases, retries and ages read from `clock`.
    pub async fn connect_with_clock(url: &str, clock: Clock) -> anyhow::Result<Self> {
        Self::connect_with(
            url,
            StoreOptions {
                clock,
                durable: false,
            },
        )
        .await
    }

    /// [`Store::connect`] as `options` say.
    pub async fn connect_with(url: &str, options: StoreOptions) -> anyhow::Result<Self> {
        let StoreOptions { clock, durable } = options;
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite {
            prepare_sqlite_url(url)?
        } else {
            prepare_postgres_url(url)?
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let sqlite = is_sqlite.then_some(Sqlite {
            durable,
            checkpoints: true,
        });
        let pool = open_pool(&options, if is_sqlite { 8 } else { 16 }, sqlite).await?;
        // The inbox's writer never checkpoints the WAL itself (see `group_commit`).
        let inbox_sqlite = sqlite.map(|s| Sqlite {
            checkpoints: false,
            ..s
        });
        let inbox_pool = open_pool(&options, if is_sqlite { 1 } else { 4 }, inbox_sqlite).await?;
        let inbox = if is_sqlite {
            // One writer at a time on SQLite: concurrent inserts commit together.
            inbox::Inbox::GroupCommit(group_commit::GroupCommit::start(inbox_pool, pool.clone()))
        } else {
            inbox::Inbox::Direct(inbox_pool)
        };
        let engine = if is_sqlite {
            schema::Engine::Sqlite
        } else {
            schema::Engine::Postgres
        };
        let store = Self {
            pool,
            inbox,
            clock,
            engine,
        };
        schema::migrate(&store.pool, engine).await?;
        Ok(store)
    }

    /// The time this store goes by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// How this store's connections reach the database: for PostgreSQL, whether the
    /// server sees this session encrypted (`pg_stat_ssl`).
    pub async fn transport(&self) -> StoreResult<Transport> {
        if self.engine == schema::Engine::Sqlite {
            return Ok(Transport::Embedded);
        }
        let session = sqlx::query_as(tls::SESSION_TLS)
            .fetch_one(&self.pool)
            .await?;
        Ok(Transport::of_session(session))
    }

    /// How a store at `url` would reach its database, found with one connection and
    /// without touching the schema (for `check-config --online`).
    pub async fn probe_transport(url: &str) -> anyhow::Result<Transport> {
        use sqlx::Connection;
        if url.starts_with("sqlite:") {
            return Ok(Transport::Embedded);
        }
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&prepare_postgres_url(url)?).await?;
        let session = sqlx::query_as(tls::SESSION_TLS)
            .fetch_one(&mut connection)
            .await?;
        connection.close().await?;
        Ok(Transport::of_session(session))
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Takes or renews the named lease for `owner`: its term when taken, `None` while
    /// another owner holds it. The term changes whenever the lease changes owner, so a
    /// holder can tell later whether anyone else held it meanwhile ([`Self::hold_lease`]).
    pub async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<LeaseTerm>> {
        let now = self.clock.now_ms();
        sqlx::query("INSERT INTO leases (name, owner, until) VALUES ($1, '', 0) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await?;
        let taken: Option<(i64,)> = sqlx::query_as(
            "UPDATE leases SET owner = $1, until = $2,
                 term = CASE WHEN owner = $1 THEN term ELSE term + 1 END
             WHERE name = $3 AND (owner = $1 OR until <= $4)
             RETURNING term",
        )
        .bind(owner)
        .bind(now + ms(ttl))
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.map(|(term,)| LeaseTerm(term)))
    }

    /// Holds the named lease for `owner` for at least half of `ttl` from now, only if no
    /// other owner took it since `owner` took it in `term` (even when it ran out
    /// meanwhile: then nobody else acted under it); false when another owner did, and
    /// what `owner` decided in `term` may be outdated by what the other did. A read while
    /// more than half of `ttl` is left; a renewal (a write) otherwise.
    pub async fn hold_lease(
        &self,
        name: &str,
        owner: &str,
        term: LeaseTerm,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let until: Option<(i64,)> =
            sqlx::query_as("SELECT until FROM leases WHERE name = $1 AND owner = $2 AND term = $3")
                .bind(name)
                .bind(owner)
                .bind(term.0)
                .fetch_optional(&self.pool)
                .await?;
        let Some((until,)) = until else {
            return Ok(false);
        };
        let now = self.clock.now_ms();
        if until - now >= ms(ttl) / 2 {
            return Ok(true);
        }
        let renewed = sqlx::query(
            "UPDATE leases SET until = $1 WHERE name = $2 AND owner = $3 AND term = $4",
        )
        .bind(now + ms(ttl))
        .bind(name)
        .bind(owner)
        .bind(term.0)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Reads a stored marker (e.g. the tracker's watermark).
    pub async fn get_marker(&self, key: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM markers WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Writes a stored marker.
    pub async fn set_marker(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO markers (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs a fenced attempt record: `sql` sets the attempt's `lookup_after` ($1) and
    /// extends the claim to $2, for row $3, only while owner $4's claim runs past now
    /// ($5). True when written.
    async fn note_fenced_attempt(
        &self,
        sql: &'static str,
        id: &str,
        owner: &str,
        lookup_after: Millis,
        lease: Duration,
    ) -> StoreResult<bool> {
        let now = self.clock.now_ms();
        let noted = sqlx::query(sql)
            .bind(lookup_after.max(1))
            .bind(now + ms(lease))
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(noted.rows_affected() == 1)
    }

    /// How many items the pipeline still has to work on: pending and queued commands
    /// (those still in the inbox too), pending notifications, runs starting or followed,
    /// and status posts behind their run.
    /// Zero means nothing more happens until a new command arrives (parked work waits
    /// for an operator).
    pub async fn pending_work(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM commands WHERE status IN ('pending', 'queued'))
                  + (SELECT COUNT(*) FROM inbox)
                  + (SELECT COUNT(*) FROM outbox WHERE status = 'pending')
                  + (SELECT COUNT(*) FROM runs WHERE phase IN ('starting', 'active')
                                                OR posted_version < version)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Claims the first due row of one kind of work for `owner` until `lease` has passed:
    /// one statement, so two workers never claim the same row, and a claim whose holder
    /// died is taken over once its lease has run out.
    async fn claim_due(
        &self,
        work: &Claimable<'_>,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<sqlx::any::AnyRow>> {
        let Claimable {
            table,
            owner_column,
            lease_column,
            also_set,
            returning,
            ..
        } = work;
        let candidate = work.candidate();
        let sql = format!(
            "UPDATE {table} SET {owner_column} = $1, {lease_column} = $2{also_set}
             WHERE id = ({candidate}) AND {lease_column} <= $3
             RETURNING {returning}"
        );
        let now = self.clock.now_ms();
        Ok(sqlx::query(composed(sql))
            .bind(owner)
            .bind(now + ms(lease))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.inbox.pool().close().await;
    }
}

/// How a pool's SQLite connections are set up.
#[derive(Clone, Copy)]
struct Sqlite {
    /// Every commit synced before it is acknowledged.
    durable: bool,
    /// A commit that leaves the WAL long copies it back into the database (SQLite's
    /// automatic checkpoint); off for the inbox's writer, whose WAL is checkpointed
    /// beside it.
    checkpoints: bool,
}

/// A pool of up to `max` connections; SQLite connections get their pragmas.
async fn open_pool(
    options: &AnyConnectOptions,
    max: u32,
    sqlite: Option<Sqlite>,
) -> anyhow::Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(Sqlite {
                    durable,
                    checkpoints,
                }) = sqlite
                {
                    // WAL lets readers run beside the writer. NORMAL loses the last
                    // transactions on power loss (never on a crash of the process);
                    // FULL syncs each commit before it is acknowledged, and group
                    // commit lets concurrent webhooks share one sync.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(if durable {
                        "PRAGMA synchronous = FULL"
                    } else {
                        "PRAGMA synchronous = NORMAL"
                    })
                    .await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    if !checkpoints {
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?)
}

/// SQL put together at run time from this module's own constants (column lists, table
/// names, numbered placeholders); every value is bound, never written into the text.
fn composed(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// How a store connects.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// The time leases, retries and ages are read from.
    pub clock: Clock,
    /// Every commit reaches the disk before it is acknowledged, so a power loss loses
    /// nothing acknowledged (SQLite's `synchronous = FULL`; PostgreSQL is durable by its
    /// own `synchronous_commit`, which this leaves alone).
    pub durable: bool,
}

/// One kind of claimable work, for [`Store::claim_due`]: its rows, the columns of their
/// claim, and which rows are due (`c` is the candidate row, `$3` the time now).
struct Claimable<'a> {
    table: &'static str,
    owner_column: &'static str,
    lease_column: &'static str,
    /// More to set on the claimed row, starting with a comma.
    also_set: &'static str,
    due: &'static str,
    order_by: &'static str,
    returning: &'a str,
}

impl Claimable<'_> {
    /// The statement that finds the row to claim (`$3`: the time now).
    fn candidate(&self) -> String {
        let Claimable {
            table,
            lease_column,
            due,
            order_by,
            ..
        } = self;
        format!(
            "SELECT c.id FROM {table} c WHERE c.{lease_column} <= $3 AND ({due})
             ORDER BY c.{order_by} LIMIT 1"
        )
    }
}

/// Adds `mode=rwc` and creates the folder of a SQLite file.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if !path.is_empty()
        && path != ":memory:"
        && let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the database folder {}: {e}",
                parent.display()
            )
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[tokio::test]
    async fn a_durable_store_syncs_every_commit_on_every_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (durable, expected) in [(false, 1), (true, 2)] {
            let url = format!("sqlite://{}/durable-{durable}.db", dir.path().display());
            let options = StoreOptions {
                durable,
                ..StoreOptions::default()
            };
            let store = Store::connect_with(&url, options).await.expect("store");
            // Hold several connections at once, so that each is asked.
            let mut held = Vec::new();
            for _ in 0..4 {
                let mut conn = store.pool.acquire().await.expect("connection");
                let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .expect("pragma");
                assert_eq!(level, expected, "durable: {durable}");
                held.push(conn);
            }
        }
    }

    /// The inbox's writer never checkpoints the WAL (a checkpoint in its commit would
    /// hold every request waiting for it); a task beside it copies what it wrote into
    /// the database a moment after.
    #[tokio::test]
    async fn the_inbox_writer_leaves_checkpoints_to_a_task_beside_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("inbox.db");
        let store = Store::connect_with(
            &format!("sqlite://{}", file.display()),
            StoreOptions::default(),
        )
        .await
        .expect("store");
        let inbox::Inbox::GroupCommit(group) = &store.inbox else {
            panic!("SQLite's inbox commits in groups");
        };
        for (pool, expected) in [(group.pool(), 0), (&store.pool, 1000)] {
            let (pages,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
                .fetch_one(pool)
                .await
                .expect("pragma");
            assert_eq!(pages, expected);
        }
        let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
        let before = size();
        let command = crate::testkit::commands::github_command(1, "fix it");
        let stored = store.insert_command("comment:1", &command).await;
        assert!(stored.expect("insert").is_some());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was never checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SQLite's plan of `statement`, one line per step.
    async fn query_plan(store: &Store, statement: &str) -> Vec<String> {
        let sql = format!("EXPLAIN QUERY PLAN {statement}");
        sqlx::query(composed(sql))
            .fetch_all(&store.pool)
            .await
            .expect("plan")
            .iter()
            .map(|row| row.try_get::<String, _>("detail").expect("detail"))
            .collect()
    }

    /// Every claim finds its row through an index that holds only what may be due, in
    /// claim order: no scan of the table, no sort of the backlog. So a claim costs the
    /// same with ten pending commands or a hundred thousand, and a hundred thousand
    /// finished runs cost nothing. The same holds for the counts every new command
    /// makes (the abuse limits): they read the runs going on, not all ever started.
    #[tokio::test]
    async fn every_claim_is_an_indexed_lookup_in_claim_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/plans.db", dir.path().display());
        let store = Store::connect(&url).await.expect("store");
        let claims = [
            (
                "commands",
                commands::COMMAND_CLAIM.candidate(),
                "commands_pending",
            ),
            ("outbox", outbox::OUTBOX_CLAIM.candidate(), "outbox_pending"),
            (
                "runs to start",
                runs::START_CLAIM.candidate(),
                "runs_followed",
            ),
            (
                "status posts",
                runs::POST_CLAIM.candidate(),
                "runs_unposted",
            ),
            (
                "a person's runs",
                runs::GOING_OF_ACTOR.into(),
                "runs_actor_going",
            ),
            (
                "a place's runs",
                runs::GOING_IN_PLACE.into(),
                "runs_place_going",
            ),
        ];
        for (what, statement, index) in claims {
            let statement = statement.replace("$3", "0").replace("$1", "'x'");
            let plan = query_plan(&store, &statement).await;
            let outer = plan.first().cloned().unwrap_or_default();
            assert!(
                outer.contains(&format!("USING INDEX {index}"))
                    || outer.contains(&format!("USING COVERING INDEX {index}")),
                "{what}: {plan:?}"
            );
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{what}: the backlog is sorted: {plan:?}"
            );
            assert!(
                plan.iter()
                    .all(|step| !matches!(step.as_str(), "SCAN c" | "SCAN o" | "SCAN runs")),
                "{what}: a table is scanned: {plan:?}"
            );
        }
    }

    /// The gauges (read every 15 seconds) and the tracker's queries of every tick find
    /// what is going on through indexes that hold only that, or seek straight to it:
    /// their cost does not grow with finished history nor with the runs followed.
    #[tokio::test]
    async fn every_gauge_and_tick_query_reads_an_index_of_what_is_going_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/gauges.db", dir.path().display());
        let store = Store::connect(&url).await.expect("store");
        let mut gauges = vec![
            // Either index that leads with the phase.
            (
                "runs going on",
                runs::RUNS_GOING_ON,
                "runs_phase|runs_followed",
            ),
            ("oldest unposted", runs::OLDEST_UNPOSTED, "runs_unposted"),
            (
                "pending commands",
                commands::PENDING_COMMANDS,
                "commands_pending",
            ),
            (
                "pending notifications",
                outbox::PENDING_NOTIFICATIONS,
                "outbox_pending",
            ),
            ("oldest followed", runs::OLDEST_FOLLOWED, "runs_followed"),
            ("oldest retried", runs::OLDEST_RETRIED, "runs_retried"),
            (
                "active runs' states",
                runs::ACTIVE_STATES,
                "runs_active_state",
            ),
        ];
        let parked = [
            "commands_parked",
            "runs_phase|runs_followed",
            "outbox_parked",
        ];
        for ((_, sql), index) in admin::PARKED_COUNTS.iter().zip(parked) {
            gauges.push(("parked", sql, index));
        }
        for (what, statement, index) in gauges {
            let statement = statement.replace("$1", "0");
            let plan = query_plan(&store, &statement).await;
            assert!(
                plan.iter().any(|step| index
                    .split('|')
                    .any(|index| step.contains(&format!("INDEX {index}")))),
                "{what}: {plan:?}"
            );
            // A scan is only of a partial index (what is pending) or of the inbox
            // (which holds only commands not yet taken), never of history (a sum of
            // counts "scans" its one constant row).
            assert!(
                plan.iter()
                    .filter(|step| step.starts_with("SCAN"))
                    .all(|step| ["SCAN inbox", "SCAN CONSTANT ROW"]
                        .iter()
                        .any(|s| step.starts_with(s))
                        || ["_pending", "_unposted", "_parked", "_active_state"]
                            .iter()
                            .any(|p| step.contains(p))),
                "{what} reads history: {plan:?}"
            );
        }
    }
}
