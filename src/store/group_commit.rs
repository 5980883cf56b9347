//! Group commit of inbox inserts on SQLite: one writer task takes every insert waiting
//! at that moment and commits them in one transaction. SQLite has one writer at a time,
//! so a burst of webhooks otherwise queues on the write lock one transaction each. Each
//! request still gets its answer only after its row is committed.

use super::{StoreError, StoreResult};
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

/// Most inserts in one transaction.
const MAX_BATCH: usize = 256;

/// One row of the `commands` table, ready to insert.
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
}

impl GroupCommit {
    /// Starts the writer task on `pool`.
    pub fn start(pool: AnyPool) -> Self {
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool.clone(), receiver));
        Self { jobs, pool }
    }

    /// The pool its writer commits on.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
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

/// The insert shared with the direct (PostgreSQL) path.
pub const INSERT_COMMAND: &str = "INSERT INTO commands (id, dedupe_key, thread_key, payload, status, next_attempt_at, received_at)
     VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (dedupe_key) DO NOTHING";

/// Binds one row to [`INSERT_COMMAND`].
pub fn bind(row: &NewCommandRow) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(INSERT_COMMAND)
        .bind(row.id.as_str())
        .bind(row.dedupe_key.as_str())
        .bind(row.thread_key.as_str())
        .bind(row.payload.as_str())
        .bind(row.now)
}

async fn writer(pool: AnyPool, mut receiver: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match commit(&pool, &batch).await {
            Ok(stored) => {
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

/// Inserts the batch in one statement (one round trip to the database's thread, one
/// commit); which rows were stored, in order (a row whose dedupe key was seen before,
/// in the database or earlier in the batch, is not).
async fn commit(pool: &AnyPool, batch: &[Job]) -> Result<Vec<bool>, sqlx::Error> {
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let p = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, 'pending', ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 5
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO commands (id, dedupe_key, thread_key, payload, status, next_attempt_at, received_at)
         VALUES {} ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (row, _) in batch {
        query = query
            .bind(row.id.as_str())
            .bind(row.dedupe_key.as_str())
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
