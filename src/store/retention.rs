//! Forgetting finished work once it is older than the retention time: commands handled,
//! messages delivered or abandoned, and runs finished whose status post is final, with
//! their artifact links. Deleted in small batches by a background task, never on the
//! path of a request; what is pending, active or parked is never touched.

use super::{Millis, Store, StoreResult, composed};

/// Statements that each delete up to `$2` finished rows of one kind older than `$1`
/// (runs apart: their artifacts go with them, in one transaction).
const FINISHED: [&str; 2] = [
    "DELETE FROM commands WHERE id IN (
        SELECT id FROM commands WHERE status IN ('done', 'failed') AND finished_at < $1 LIMIT $2)",
    "DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE status IN ('sent', 'dead') AND sent_at < $1 LIMIT $2)",
];

impl Store {
    /// Deletes at most `batch` finished items of each kind that finished before
    /// `before`; how many rows went (fewer than `batch` of each: nothing more is due).
    pub async fn forget_finished(&self, before: Millis, batch: i64) -> StoreResult<u64> {
        let mut forgotten = 0;
        for sql in FINISHED {
            let done = sqlx::query(sql)
                .bind(before)
                .bind(batch)
                .execute(&self.pool)
                .await?;
            forgotten += done.rows_affected();
        }
        Ok(forgotten + self.forget_finished_runs(before, batch).await?)
    }

    /// Deletes up to `batch` runs that finished before `before` and whose status post
    /// shows their end, with their artifact links.
    async fn forget_finished_runs(&self, before: Millis, batch: i64) -> StoreResult<u64> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE phase = 'done' AND posted_version >= version
               AND updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let list = placeholders.join(", ");
        let mut transaction = self.pool.begin().await?;
        let mut forgotten = 0;
        for sql in [
            format!("DELETE FROM artifacts WHERE run_id IN ({list})"),
            // Only if still finished and posted (a late note would have bumped it).
            format!(
                "DELETE FROM runs WHERE id IN ({list}) AND phase = 'done' AND posted_version >= version"
            ),
        ] {
            let mut query = sqlx::query(composed(sql));
            for (id,) in &ids {
                query = query.bind(id.as_str());
            }
            forgotten += query.execute(&mut *transaction).await?.rows_affected();
        }
        transaction.commit().await?;
        Ok(forgotten)
    }
}
