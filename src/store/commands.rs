//! Commands: verified commands written before the webhook is answered (through
//! [`super::inbox`]), then claimed one at a time per thread (oldest first) by the
//! dispatcher, and what became of each.

use super::group_commit::NewCommandRow;
use super::{Claimable, Millis, Store, StoreResult, clean, ms};
use crate::domain::InboxCommand;
use crate::ids::{CommandId, ThreadKey};
use sqlx::Row;
use std::time::Duration;

/// A command claimed for processing.
#[derive(Debug, Clone)]
pub struct ClaimedCommand {
    pub id: CommandId,
    pub command: InboxCommand,
    /// 1 on the first try.
    pub attempts: i64,
    pub received_at: Millis,
    /// When retrying stops and the command is parked (0: it has not failed yet).
    pub give_up_at: Millis,
}

/// How many commands wait to be handled (a gauge): pending, or not yet moved out of the
/// inbox.
pub(super) const PENDING_COMMANDS: &str =
    "SELECT (SELECT COUNT(*) FROM commands WHERE status = 'pending')
         + (SELECT COUNT(*) FROM inbox)";

/// Commands due: the oldest due command whose thread has no older pending command.
pub(super) const COMMAND_CLAIM: Claimable<'static> = Claimable {
        table: "commands",
        owner_column: "lease_owner",
        lease_column: "lease_until",
        also_set: ", attempts = attempts + 1",
        // The oldest command of its thread: a thread's commands run in order.
        due: "c.status = 'pending' AND c.next_attempt_at <= $3
              AND NOT EXISTS (
                SELECT 1 FROM commands o WHERE o.thread_key = c.thread_key AND o.status = 'pending'
                  AND (o.received_at < c.received_at OR (o.received_at = c.received_at AND o.id < c.id)))",
        order_by: "received_at",
        returning: "id, payload, attempts, received_at, give_up_at",
    };

impl Store {
    /// Stores a command unless one with the same dedupe key exists; its id when stored.
    /// Returns only once the row is committed.
    pub async fn insert_command(
        &self,
        dedupe_key: &str,
        command: &InboxCommand,
    ) -> StoreResult<Option<CommandId>> {
        let id = CommandId::generate();
        let row = NewCommandRow {
            id: id.to_string(),
            dedupe_key: dedupe_key.to_owned(),
            thread_key: command.origin.thread_key().to_string(),
            payload: serde_json::to_string(command)?,
            now: self.clock.now_ms(),
        };
        Ok(self.inbox.insert(row).await?.then_some(id))
    }

    /// Claims the oldest due command whose thread has no older pending command.
    ///
    /// Commands still in the inbox came after every command in `commands` (they move in
    /// the order they were committed), so they are moved only when nothing there can be
    /// claimed: a backlog stays in the narrow inbox until the pipeline is ready for it,
    /// and moving it costs SQLite's one writer only as fast as the pipeline works. None
    /// means nothing is due, in `commands` or the inbox.
    pub async fn claim_command(
        &self,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<ClaimedCommand>> {
        let row = loop {
            if let Some(row) = self.claim_due(&COMMAND_CLAIM, owner, lease).await? {
                break row;
            }
            if self.inbox.move_to_commands(&self.pool).await? == 0 {
                return Ok(None);
            }
        };
        let payload: String = row.try_get("payload")?;
        Ok(Some(ClaimedCommand {
            id: CommandId(row.try_get("id")?),
            command: serde_json::from_str(&payload)?,
            attempts: row.try_get("attempts")?,
            received_at: row.try_get("received_at")?,
            give_up_at: row.try_get("give_up_at")?,
        }))
    }

    /// Marks a command handled (`done`) or given up (`failed`, with the reason).
    pub async fn finish_command(
        &self,
        id: &CommandId,
        failed_reason: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE commands SET status = $1, finished_at = $2, error = $3, lease_until = 0 WHERE id = $4")
            .bind(if failed_reason.is_some() { "failed" } else { "done" })
            .bind(self.clock.now_ms())
            .bind(failed_reason.map(clean))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts a command back to be tried again after `delay`; retrying stops at
    /// `give_up_at`.
    pub async fn retry_command(
        &self,
        id: &CommandId,
        delay: Duration,
        reason: &str,
        give_up_at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE commands SET next_attempt_at = $1, lease_until = 0, error = $2, give_up_at = $3
             WHERE id = $4",
        )
        .bind(self.clock.now_ms() + ms(delay))
        .bind(clean(reason))
        .bind(give_up_at)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Parks a command that could not be handled within its retry budget.
    pub async fn park_command(&self, id: &CommandId, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE commands SET status = 'parked', finished_at = $1, error = $2, lease_until = 0
             WHERE id = $3",
        )
        .bind(self.clock.now_ms())
        .bind(clean(reason))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets a claimed command aside as its thread's next instruction (`queued`): it is
    /// not claimed again until [`Store::release_next_queued`] lets it go.
    pub async fn queue_command(&self, id: &CommandId) -> StoreResult<()> {
        sqlx::query("UPDATE commands SET status = 'queued', lease_until = 0 WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lets the first queued instruction of one free thread go (back to `pending`, due
    /// now): a thread is free when none of its runs is going on and none of its
    /// commands is pending. One statement, so two replicas never let the same one go,
    /// nor two of one thread. Returns its thread.
    pub async fn release_next_queued(&self) -> StoreResult<Option<ThreadKey>> {
        let row: Option<(String,)> = sqlx::query_as(
            "UPDATE commands SET status = 'pending', next_attempt_at = $1
             WHERE id = (
               SELECT q.id FROM commands q
               WHERE q.status = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM commands o WHERE o.thread_key = q.thread_key
                                   AND o.status = 'queued'
                                   AND (o.received_at < q.received_at
                                        OR (o.received_at = q.received_at AND o.id < q.id)))
                 AND NOT EXISTS (SELECT 1 FROM commands p WHERE p.thread_key = q.thread_key
                                   AND p.status = 'pending')
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_key = q.thread_key
                                   AND r.phase <> 'done')
               ORDER BY q.received_at, q.id LIMIT 1)
             AND status = 'queued'
             RETURNING thread_key",
        )
        .bind(self.clock.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(thread,)| ThreadKey(thread)))
    }

    /// The thread's queued instructions, first first.
    pub async fn queued_in_thread(
        &self,
        thread: &ThreadKey,
    ) -> StoreResult<Vec<(CommandId, InboxCommand)>> {
        self.commands_in_thread(thread, "queued").await
    }

    /// The thread's commands of `status` (`queued`, `awaiting`), first first.
    async fn commands_in_thread(
        &self,
        thread: &ThreadKey,
        status: &str,
    ) -> StoreResult<Vec<(CommandId, InboxCommand)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, payload FROM commands WHERE thread_key = $1 AND status = $2
             ORDER BY received_at, id",
        )
        .bind(thread.as_str())
        .bind(status)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, payload)| Ok((CommandId(id), serde_json::from_str(&payload)?)))
            .collect()
    }

    /// True when the thread holds a queued instruction that came before `command`
    /// (received at `received_at`): a new instruction waits behind it.
    pub async fn queued_before(
        &self,
        thread: &ThreadKey,
        command: &CommandId,
        received_at: Millis,
    ) -> StoreResult<bool> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM commands WHERE thread_key = $1 AND status = 'queued'
               AND (received_at < $2 OR (received_at = $2 AND id < $3))",
        )
        .bind(thread.as_str())
        .bind(received_at)
        .bind(command.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Empties the thread's queue; how many instructions were dropped.
    pub async fn drop_queued(&self, thread: &ThreadKey) -> StoreResult<u64> {
        let dropped = sqlx::query(
            "UPDATE commands SET status = 'done', finished_at = $1, error = 'dropped from the queue'
             WHERE thread_key = $2 AND status = 'queued'",
        )
        .bind(self.clock.now_ms())
        .bind(thread.as_str())
        .execute(&self.pool)
        .await?;
        Ok(dropped.rows_affected())
    }

    /// Sets a claimed command aside until someone with write access approves it
    /// (`awaiting`): it is not claimed again until [`Store::approve_awaiting`].
    pub async fn await_approval(&self, id: &CommandId) -> StoreResult<()> {
        sqlx::query("UPDATE commands SET status = 'awaiting', lease_until = 0 WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The thread's requests waiting for approval, oldest first.
    pub async fn awaiting_in_thread(
        &self,
        thread: &ThreadKey,
    ) -> StoreResult<Vec<(CommandId, InboxCommand)>> {
        self.commands_in_thread(thread, "awaiting").await
    }

    /// Lets a waiting request go (back to `pending`, due now), stored as `command` (which
    /// names its approver); false when it was not waiting any more (another replica
    /// approved, denied or expired it).
    pub async fn approve_awaiting(
        &self,
        id: &CommandId,
        command: &InboxCommand,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'pending', payload = $1, next_attempt_at = $2
             WHERE id = $3 AND status = 'awaiting'",
        )
        .bind(serde_json::to_string(command)?)
        .bind(self.clock.now_ms())
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a waiting request (denied, replaced, expired: `reason`); false when it was
    /// not waiting any more.
    pub async fn close_awaiting(&self, id: &CommandId, reason: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'done', finished_at = $1, error = $2
             WHERE id = $3 AND status = 'awaiting'",
        )
        .bind(self.clock.now_ms())
        .bind(clean(reason))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to 50 requests waiting for approval since before `before`, oldest first.
    pub async fn awaiting_since_before(
        &self,
        before: Millis,
    ) -> StoreResult<Vec<(CommandId, InboxCommand)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, payload FROM commands WHERE status = 'awaiting' AND received_at < $1
             ORDER BY received_at LIMIT 50",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, payload)| Ok((CommandId(id), serde_json::from_str(&payload)?)))
            .collect()
    }

    /// Every command stored, whatever became of it (those still in the inbox too).
    pub async fn command_count(&self) -> StoreResult<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM commands) + (SELECT COUNT(*) FROM inbox)")
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }

    /// Commands not yet handled, for metrics and tests.
    pub async fn pending_command_count(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(PENDING_COMMANDS)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
