//! Group commit of inbox inserts on SQLite: one writer task takes every insert waiting
//! at that moment and commits them in one transaction. SQLite has one writer at a time,
//! so a burst of webhooks otherwise queues on the write lock one transaction each. Each
//! request still gets its answer only after its row is committed. The rows go into the
//! narrow `inbox` table, which [`super::inbox`] moves into `commands` for the pipeline.
//!
//! The writer never copies the WAL back into the database (a checkpoint, which SQLite
//! otherwise does in the commit that finds the WAL long, syncing the database file while
//! every waiting request waits): a task beside it does, on another connection, a moment
//! after commits (a passive checkpoint runs beside the writer).

use super::{StoreError, StoreResult};
use sqlx::AnyPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most inserts in one transaction.
const MAX_BATCH: usize = 256;
/// How long after a commit the WAL is checkpointed (the commits of that moment share it).
const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// One command, ready to insert.
pub struct NewCommandRow {
    pub id: String,
    pub dedupe_key: String,
    pub thread_key: String,
    pub payload: String,
    pub now: i64,
}

type Job = (NewCommandRow, oneshot::Sender<StoreResult<bool>>);

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    pool: AnyPool,
    /// Set once the writer has stored a row, cleared by whoever moves the rows on: the
    /// `inbox` table may hold rows. True at start (rows left by an earlier process).
    stored: Arc<AtomicBool>,
}

impl GroupCommit {
    /// Starts the writer task on `pool` (one connection, which never checkpoints), and
    /// its checkpoints on `checkpoint_pool`.
    pub fn start(pool: AnyPool, checkpoint_pool: AnyPool) -> Self {
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        // At most one commit waiting for a checkpoint: the ones after it share it.
        let (committed, commits) = mpsc::channel(1);
        let stored = Arc::new(AtomicBool::new(true));
        tokio::spawn(writer(pool.clone(), receiver, committed, stored.clone()));
        tokio::spawn(checkpoints(checkpoint_pool, commits));
        Self { jobs, pool, stored }
    }

    /// The pool its writer commits on.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when rows may have been stored since the last call (or since the start);
    /// the caller then moves them on, and calls [`Self::may_hold_more`] if it leaves
    /// some behind.
    pub fn take_stored(&self) -> bool {
        self.stored.swap(false, Ordering::AcqRel)
    }

    /// The `inbox` table may still hold rows (a move left some, or failed).
    pub fn may_hold_more(&self) {
        self.stored.store(true, Ordering::Release);
    }

    /// Inserts a row; true when stored, false when its dedupe key was seen before.
    pub async fn insert(&self, row: NewCommandRow) -> StoreResult<bool> {
        let (answer, receive) = oneshot::channel();
        self.jobs.send((row, answer)).await.map_err(|_| closed())?;
        receive.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

async fn writer(
    pool: AnyPool,
    mut receiver: mpsc::Receiver<Job>,
    committed: mpsc::Sender<()>,
    any_stored: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = commit(&pool, &batch).await;
        let _ = committed.try_send(());
        match result {
            Ok(stored) => {
                if stored.contains(&true) {
                    any_stored.store(true, Ordering::Release);
                }
                for ((_, answer), stored) in batch.drain(..).zip(stored) {
                    let _ = answer.send(Ok(stored));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(Err(StoreError::Database(sqlx::Error::Protocol(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

/// Copies the WAL back into the database a moment after commits, until the writer is
/// gone (a passive checkpoint: it never waits for the writer, nor the writer for it).
async fn checkpoints(pool: AnyPool, mut commits: mpsc::Receiver<()>) {
    while commits.recv().await.is_some() {
        tokio::time::sleep(CHECKPOINT_AFTER).await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "could not checkpoint the inbox's WAL");
        }
    }
}

/// Inserts the batch into the `inbox` table in one statement (one round trip to the
/// database's thread, one commit); which rows were stored, in order. A row is not
/// stored when its dedupe key was seen before: in the inbox, earlier in the batch, or in
/// `commands` (a key is in exactly one of the two tables: the move is one transaction).
///
/// The inbox holds only what a command needs until the pipeline takes it (its key as
/// primary key, id, thread, payload, time), so a commit writes two B-trees, where a
/// row of `commands` is in five (two of them at random places: the key and the thread):
/// about half the pages per commit (BENCHMARKS.md, "The narrow inbox").
async fn commit(pool: &AnyPool, batch: &[Job]) -> Result<Vec<bool>, sqlx::Error> {
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let p = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            )
        })
        .collect();
    // SQLite names the columns of a VALUES list column1, column2, ...; the WHERE
    // clause also keeps ON CONFLICT from being read as part of a join.
    let sql = format!(
        "INSERT INTO inbox (dedupe_key, id, thread_key, payload, received_at)
         SELECT column1, column2, column3, column4, column5 FROM (VALUES {}) AS v
         WHERE NOT EXISTS (SELECT 1 FROM commands c WHERE c.dedupe_key = v.column1)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (row, _) in batch {
        query = query
            .bind(row.dedupe_key.as_str())
            .bind(row.id.as_str())
            .bind(row.thread_key.as_str())
            .bind(row.payload.as_str())
            .bind(row.now);
    }
    let inserted: std::collections::HashSet<String> = query
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| sqlx::Row::try_get::<String, _>(row, "id"))
        .collect::<Result<_, _>>()?;
    Ok(batch
        .iter()
        .map(|(row, _)| inserted.contains(&row.id))
        .collect())
}
