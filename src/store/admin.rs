//! The operator's view of the store: work parked after its retry budget, putting it
//! back in line, and waking work that waits on an upstream that answers again.

use super::{Millis, Store, StoreResult};
use sqlx::Row;

/// The marker of the kill switch shared by all replicas.
const PAUSED: &str = "admin.paused";

/// What kind of work a parked item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedKind {
    /// An inbox command (its handling needed a service that did not answer).
    Command,
    /// A run Oz did not accept in time.
    Run,
    /// A reaction, reply or note that could not be delivered.
    Notification,
}

impl ParkedKind {
    /// The name used in listings and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Run => "run",
            Self::Notification => "notification",
        }
    }
}

/// One parked item.
#[derive(Debug, Clone)]
pub struct ParkedItem {
    pub kind: ParkedKind,
    pub id: String,
    /// The thread it belongs to, when known.
    pub thread: String,
    pub since: Millis,
    /// Why it was parked (operator detail).
    pub reason: String,
}

/// How many items of each kind are parked (a gauge), each counted from a partial index.
pub(super) const PARKED_COUNTS: [(ParkedKind, &str); 3] = [
    (
        ParkedKind::Command,
        "SELECT COUNT(*) FROM commands WHERE status = 'parked'",
    ),
    (
        ParkedKind::Run,
        "SELECT COUNT(*) FROM runs WHERE phase = 'parked'",
    ),
    (
        ParkedKind::Notification,
        "SELECT COUNT(*) FROM outbox WHERE status = 'parked'",
    ),
];

impl Store {
    /// Every parked item, oldest first.
    pub async fn parked(&self) -> StoreResult<Vec<ParkedItem>> {
        let mut items = Vec::new();
        let queries = [
            (
                ParkedKind::Command,
                "SELECT id, thread_key AS thread, COALESCE(finished_at, 0) AS since,
                    COALESCE(error, '') AS reason FROM commands WHERE status = 'parked'",
            ),
            (
                ParkedKind::Run,
                "SELECT id, thread_key AS thread, updated_at AS since,
                    COALESCE(parked_reason, '') AS reason FROM runs WHERE phase = 'parked'",
            ),
            (
                ParkedKind::Notification,
                "SELECT id, '' AS thread, COALESCE(sent_at, 0) AS since,
                    COALESCE(error, '') AS reason FROM outbox WHERE status = 'parked'",
            ),
        ];
        for (kind, sql) in queries {
            for row in sqlx::query(sql).fetch_all(&self.pool).await? {
                items.push(ParkedItem {
                    kind,
                    id: row.try_get("id")?,
                    thread: row.try_get("thread")?,
                    since: row.try_get("since")?,
                    reason: row.try_get("reason")?,
                });
            }
        }
        items.sort_by_key(|i| i.since);
        Ok(items)
    }

    /// Parked items by kind, for metrics.
    pub async fn parked_counts(&self) -> StoreResult<Vec<(ParkedKind, i64)>> {
        let mut counts = Vec::new();
        for (kind, sql) in PARKED_COUNTS {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&self.pool).await?;
            counts.push((kind, n));
        }
        Ok(counts)
    }

    /// Puts a parked item back in line with a fresh retry budget; the kind it was, or
    /// `None` when no parked item has this id. A run keeps its create attempts, so it
    /// is looked up at Oz before it is ever created again.
    pub async fn requeue_parked(&self, id: &str) -> StoreResult<Option<ParkedKind>> {
        let requeues = [
            (
                ParkedKind::Command,
                "UPDATE commands SET status = 'pending', give_up_at = 0, next_attempt_at = $1,
                    lease_until = 0, finished_at = NULL WHERE id = $2 AND status = 'parked'",
            ),
            (
                ParkedKind::Run,
                "UPDATE runs SET phase = 'starting', start_give_up_at = 0, start_next_at = $1,
                    start_lease_until = 0, parked_reason = NULL WHERE id = $2 AND phase = 'parked'",
            ),
            (
                ParkedKind::Notification,
                "UPDATE outbox SET status = 'pending', give_up_at = 0, next_attempt_at = $1,
                    lease_until = 0, sent_at = NULL WHERE id = $2 AND status = 'parked'",
            ),
        ];
        let now = self.clock.now_ms();
        for (kind, sql) in requeues {
            let done = sqlx::query(sql)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            if done.rows_affected() == 1 {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    /// Pauses (or resumes) new runs for every replica.
    pub async fn set_paused(&self, paused: bool) -> StoreResult<()> {
        self.set_marker(PAUSED, if paused { "1" } else { "0" })
            .await
    }

    /// True when an operator paused new runs.
    pub async fn is_paused(&self) -> StoreResult<bool> {
        Ok(self.get_marker(PAUSED).await?.as_deref() == Some("1"))
    }

    /// Makes every deferred retry due now: called when an upstream answers again, so
    /// that work waiting on it resumes at once rather than at its next scheduled try.
    /// Work waiting on another upstream meets that one's breaker and waits again,
    /// without a request being sent.
    pub async fn resume_waiting(&self) -> StoreResult<()> {
        let now = self.clock.now_ms();
        for sql in [
            "UPDATE commands SET next_attempt_at = $1 WHERE status = 'pending' AND next_attempt_at > $1",
            "UPDATE outbox SET next_attempt_at = $1 WHERE status = 'pending' AND next_attempt_at > $1",
            "UPDATE runs SET start_next_at = $1 WHERE phase = 'starting' AND start_next_at > $1",
            "UPDATE runs SET notify_next_at = $1 WHERE notify_next_at > $1 AND posted_version < version",
        ] {
            sqlx::query(sql).bind(now).execute(&self.pool).await?;
        }
        Ok(())
    }
}
