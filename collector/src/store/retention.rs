//! The retention purge: alerts closed before a cut-off are deleted with
//! their folded repeats, captures and review row (the rules, and the
//! report, are in `retention.rs`).

use super::{Jobs, StoreError};

/// What a purge removed, or would remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Closed alerts (the reviewed rows).
    pub alerts: u64,
    /// Folded repeats and burst shots of those alerts.
    pub repeats: u64,
    pub captures: u64,
}

impl Jobs {
    /// Removes (or with `dry_run` counts) the alerts closed before `cutoff_ms`.
    pub async fn purge_closed(
        &self,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<PurgeCounts, StoreError> {
        match self {
            Jobs::Sqlite(db) => {
                super::jobs::blocking(db, move |c| {
                    Ok(super::sqlite::retention::purge(c, cutoff_ms, dry_run)?)
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Jobs::Postgres(p) => p.purge_closed(cutoff_ms, dry_run).await,
        }
    }
}
