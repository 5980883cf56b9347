//! The outbox: one-off notifications (reactions, replies) written once and sent until
//! they land. A reply that may have been posted is looked up before it is posted again.

use super::{Claimable, Millis, Store, StoreResult, clean, ms};
use crate::domain::Origin;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::time::Duration;

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxMessage {
    /// Add a reaction to the command's message (idempotent on every platform).
    Reaction {
        origin: Origin,
        #[serde(alias = "reaction")]
        mark: crate::surface::Mark,
    },
    /// Post a reply in the command's thread.
    Reply { origin: Origin, text: String },
    /// Tell the user something only they should see (where the platform allows).
    Private { origin: Origin, text: String },
    /// Post a moment's text (already in the surface's markup) in a run's thread.
    RunReply {
        run: crate::ids::RunRef,
        text: String,
    },
}

/// A claimed outbox row.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: String,
    pub message: OutboxMessage,
    pub attempts: i64,
    /// A previous try may have reached the platform; from this time on it may be
    /// looked up (before it, an answer in doubt could still land).
    pub lookup_after: Option<Millis>,
    /// When retrying stops and the message is parked (0: it has not failed yet).
    pub give_up_at: Millis,
}

/// Messages due, oldest first.
pub(super) const OUTBOX_CLAIM: Claimable<'static> = Claimable {
    table: "outbox",
    owner_column: "lease_owner",
    lease_column: "lease_until",
    also_set: ", attempts = attempts + 1",
    due: "c.status = 'pending' AND c.next_attempt_at <= $3",
    order_by: "created_at",
    returning: "id, payload, attempts, attempted, give_up_at",
};

/// How many messages wait to be delivered (a gauge).
pub(super) const PENDING_NOTIFICATIONS: &str =
    "SELECT COUNT(*) FROM outbox WHERE status = 'pending'";

impl Store {
    /// Queues a message unless one with the same key exists.
    pub async fn enqueue(&self, dedupe_key: &str, message: &OutboxMessage) -> StoreResult<()> {
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO outbox (id, dedupe_key, payload, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'pending', $4, $4) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(crate::ids::new_uuid())
        .bind(dedupe_key)
        .bind(serde_json::to_string(message)?)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims the oldest due message.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<OutboxItem>> {
        let row = self.claim_due(&OUTBOX_CLAIM, owner, lease).await?;
        let Some(row) = row else { return Ok(None) };
        let payload: String = row.try_get("payload")?;
        Ok(Some(OutboxItem {
            id: row.try_get("id")?,
            message: serde_json::from_str(&payload)?,
            attempts: row.try_get("attempts")?,
            lookup_after: Some(row.try_get::<i64, _>("attempted")?).filter(|t| *t != 0),
            give_up_at: row.try_get("give_up_at")?,
        }))
    }

    /// Records that a send by `owner` is about to happen, which may land until
    /// `lookup_after`, and extends the claim by `lease`. False (nothing written) when
    /// `owner` no longer holds the claim: another worker has the message now.
    pub async fn note_outbox_attempt(
        &self,
        id: &str,
        owner: &str,
        lookup_after: Millis,
        lease: Duration,
    ) -> StoreResult<bool> {
        self.note_fenced_attempt(
            "UPDATE outbox SET attempted = $1, lease_until = $2 WHERE id = $3 AND lease_owner = $4 AND lease_until > $5",
            id,
            owner,
            lookup_after,
            lease,
        )
        .await
    }

    /// Marks a message delivered (`sent`) or abandoned (`dead`, with the reason).
    pub async fn finish_outbox(&self, id: &str, dead_reason: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE outbox SET status = $1, sent_at = $2, error = $3, lease_until = 0 WHERE id = $4")
            .bind(if dead_reason.is_some() { "dead" } else { "sent" })
            .bind(self.clock.now_ms())
            .bind(dead_reason.map(clean))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts a message back to be tried after `delay`; retrying stops at `give_up_at`.
    /// `answered`: the last send was answered, so a lookup may conclude at once.
    pub async fn retry_outbox(
        &self,
        id: &str,
        delay: Duration,
        reason: &str,
        answered: bool,
        give_up_at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, lease_until = 0, error = $2, give_up_at = $3,
                attempted = CASE WHEN $4 = 1 AND attempted > 0 THEN 1 ELSE attempted END
             WHERE id = $5",
        )
        .bind(self.clock.now_ms() + ms(delay))
        .bind(clean(reason))
        .bind(give_up_at)
        .bind(i64::from(answered))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a message back without counting a failure (it must wait first).
    pub async fn release_outbox(&self, id: &str, delay: Duration) -> StoreResult<()> {
        sqlx::query("UPDATE outbox SET next_attempt_at = $1, lease_until = 0 WHERE id = $2")
            .bind(self.clock.now_ms() + ms(delay))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Parks a message that could not be delivered within its retry budget.
    pub async fn park_outbox(&self, id: &str, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'parked', sent_at = $1, error = $2, lease_until = 0 WHERE id = $3",
        )
        .bind(self.clock.now_ms())
        .bind(clean(reason))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Messages not delivered yet.
    pub async fn pending_outbox_count(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(PENDING_NOTIFICATIONS)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
