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

/// When a closed alert is old enough to purge: closed before its school's
/// own cut-off, where the school keeps alerts for a time of its own, else
/// before the trust's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cutoffs {
    pub trust_ms: i64,
    /// (school id, cut-off) of each school with a retention of its own.
    pub schools: Vec<(String, i64)>,
}

impl Cutoffs {
    /// The schools' ids and cut-offs, as two lists.
    pub fn columns(&self) -> (Vec<String>, Vec<i64>) {
        self.schools.iter().cloned().unzip()
    }
}

impl Jobs {
    /// Removes (or with `dry_run` counts) the alerts closed before their
    /// school's cut-off.
    pub async fn purge_closed(
        &self,
        cutoffs: &Cutoffs,
        dry_run: bool,
    ) -> Result<PurgeCounts, StoreError> {
        match self {
            Jobs::Sqlite(db) => {
                let cutoffs = cutoffs.clone();
                super::jobs::blocking(db, move |c| {
                    Ok(super::sqlite::retention::purge(c, &cutoffs, dry_run)?)
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Jobs::Postgres(p) => p.purge_closed(cutoffs, dry_run).await,
        }
    }
}
