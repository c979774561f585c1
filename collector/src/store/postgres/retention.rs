//! The retention purge on PostgreSQL. An alert's close time is in the
//! review history, and each purge that removes anything is written to the
//! audit log: both are the console's tables, which are not kept in
//! PostgreSQL yet. Until they are, no alert counts as closed there and
//! nothing is purged (fail closed: evidence is never deleted without its
//! history and an audit entry).

use super::jobs::Jobs;
use crate::store::retention::PurgeCounts;
use crate::store::StoreError;

impl Jobs {
    pub async fn purge_closed(
        &self,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<PurgeCounts, StoreError> {
        let mut conn = self.conn().await?;
        let kept: bool = conn
            .client()
            .query_one(
                "SELECT to_regclass('console_history') IS NOT NULL
                    AND to_regclass('console_audit') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if kept {
            tracing::warn!(cutoff_ms, dry_run, "the review history is in PostgreSQL but this collector cannot purge there yet; nothing was purged (upgrade the collector)");
        } else {
            tracing::info!(cutoff_ms, dry_run, "no review history in PostgreSQL yet: no alert counts as closed, nothing was purged");
        }
        Ok(PurgeCounts::default())
    }
}
