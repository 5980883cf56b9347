//! Where intake's commands are committed before the webhook is answered, and how they
//! reach the `commands` table the pipeline claims from. On SQLite they go into the
//! narrow `inbox` table in groups ([`super::group_commit`]) and move into `commands`
//! when the pipeline has nothing else to claim; on PostgreSQL straight into `commands`.

use super::StoreResult;
use super::group_commit::{GroupCommit, NewCommandRow};
use sqlx::AnyPool;

/// Most rows moved from `inbox` into `commands` in one transaction: enough that a
/// burst moves in few transactions, few enough that intake's commits never wait long
/// for SQLite's one writer.
const MOVE_BATCH: i64 = 256;

/// Copies the oldest `$1` rows of `inbox` into `commands`, pending and due now.
/// Its own write starts the transaction, so it takes SQLite's write lock at once
/// (a transaction that read first could find its snapshot outdated when it writes).
/// A key already in `commands` cannot be in the inbox (its insert checks); should one
/// be, it is a repeated delivery, and dropping it beats stopping every move.
const MOVE_TO_COMMANDS: &str = "INSERT INTO commands
        (id, dedupe_key, thread_key, payload, status, next_attempt_at, received_at)
     SELECT id, dedupe_key, thread_key, payload, 'pending', received_at, received_at FROM inbox
     WHERE rowid IN (SELECT rowid FROM inbox ORDER BY rowid LIMIT $1)
     ON CONFLICT (dedupe_key) DO NOTHING";

/// Deletes the rows [`MOVE_TO_COMMANDS`] copied: the same oldest `$1`, as nothing else
/// writes between the two statements of the transaction.
const DELETE_MOVED: &str =
    "DELETE FROM inbox WHERE rowid IN (SELECT rowid FROM inbox ORDER BY rowid LIMIT $1)";

/// The insert of the direct (PostgreSQL) path.
const INSERT_COMMAND: &str = "INSERT INTO commands (id, dedupe_key, thread_key, payload, status, next_attempt_at, received_at)
     VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (dedupe_key) DO NOTHING";

/// Where inbox inserts go.
#[derive(Clone, Debug)]
pub(super) enum Inbox {
    /// SQLite: one writer task commits every insert waiting at that moment together,
    /// into the `inbox` table.
    GroupCommit(GroupCommit),
    /// PostgreSQL: each insert on its own, from a pool of their own, into `commands`.
    Direct(AnyPool),
}

impl Inbox {
    /// The connections inserts are committed on.
    pub(super) fn pool(&self) -> &AnyPool {
        match self {
            Self::GroupCommit(group) => group.pool(),
            Self::Direct(pool) => pool,
        }
    }

    /// Commits a row; true when stored, false when its dedupe key was seen before.
    pub(super) async fn insert(&self, row: NewCommandRow) -> StoreResult<bool> {
        Ok(match self {
            Self::GroupCommit(group) => group.insert(row).await?,
            Self::Direct(pool) => {
                let done = sqlx::query(INSERT_COMMAND)
                    .bind(row.id.as_str())
                    .bind(row.dedupe_key.as_str())
                    .bind(row.thread_key.as_str())
                    .bind(row.payload.as_str())
                    .bind(row.now)
                    .execute(pool)
                    .await?;
                done.rows_affected() == 1
            }
        })
    }

    /// Moves the oldest rows of the `inbox` table into `commands` on `pool`, in one
    /// transaction (so a dedupe key is always in exactly one of them); how many left the
    /// inbox. Nothing to do, and no statement, unless rows were stored since the last
    /// move; a full batch or a failure leaves the flag set for the next call.
    pub(super) async fn move_to_commands(&self, pool: &AnyPool) -> StoreResult<u64> {
        let Self::GroupCommit(group) = self else {
            return Ok(0);
        };
        if !group.take_stored() {
            return Ok(0);
        }
        let moved = async {
            let mut transaction = pool.begin().await?;
            sqlx::query(MOVE_TO_COMMANDS)
                .bind(MOVE_BATCH)
                .execute(&mut *transaction)
                .await?;
            let moved = sqlx::query(DELETE_MOVED)
                .bind(MOVE_BATCH)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(moved)
        }
        .await;
        if !matches!(moved, Ok(n) if n < MOVE_BATCH.unsigned_abs()) {
            group.may_hold_more();
        }
        Ok(moved?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use std::time::Duration;

    async fn in_inbox(store: &Store) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM inbox")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        n
    }

    /// Commands wait in the narrow inbox while the pipeline has older ones to take, and
    /// move (the oldest first, a batch at a time) only when nothing in `commands` can be
    /// claimed: moving costs SQLite's one writer only as fast as the pipeline works.
    #[tokio::test]
    async fn the_inbox_moves_only_when_nothing_else_can_be_claimed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/inbox.db", dir.path().display());
        let store = Store::connect(&url).await.expect("store");
        let command = |n| crate::testkit::commands::github_command(n, "fix");
        for n in 1..=2 {
            let stored = store.insert_command(&format!("k{n}"), &command(n)).await;
            assert!(stored.expect("insert").is_some());
        }
        assert_eq!(in_inbox(&store).await, 2);
        let lease = Duration::from_secs(30);
        let first = store.claim_command("w", lease).await.expect("claim");
        assert!(first.is_some());
        assert_eq!(
            in_inbox(&store).await,
            0,
            "nothing could be claimed: both moved"
        );
        let stored = store.insert_command("k3", &command(3)).await;
        assert!(stored.expect("insert").is_some());
        let second = store.claim_command("w", lease).await.expect("claim");
        assert!(second.is_some());
        assert_eq!(in_inbox(&store).await, 1, "the second came from `commands`");
        let third = store.claim_command("w", lease).await.expect("claim");
        assert_eq!(
            third.map(|c| c.command.origin.thread_key()),
            Some(command(3).origin.thread_key())
        );
        assert_eq!(in_inbox(&store).await, 0);
        let batch = usize::try_from(super::MOVE_BATCH).expect("small");
        for n in 0..batch + 10 {
            let key = format!("burst-{n}");
            let stored = store.insert_command(&key, &command(100 + n as u64)).await;
            assert!(stored.expect("insert").is_some());
        }
        assert!(
            store
                .claim_command("w", lease)
                .await
                .expect("claim")
                .is_some()
        );
        assert_eq!(in_inbox(&store).await, 10, "one batch moved");
    }
}
