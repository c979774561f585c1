//! Retention: alerts closed (or closed as false positives) longer ago than
//! `[retention] closed_alert_months` are deleted with their captures, their
//! folded repeats and burst shots, and their review row.
//!
//! An alert's close time is its last transition into its current terminal
//! state in `console_history`; an alert with no such record is kept (fail
//! closed). The review record is left alone: notes, state history and reveals
//! are append-only (triggers refuse deletes) and form the DSL's safeguarding
//! record, which follows the school's records policy, not the monitoring
//! evidence's. They hold the alert id only, no capture and no typed context.
//! Each purge that removes anything appends one entry to the audit log.

use std::path::Path;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Span;
use rusqlite::Connection;

use crate::config::Retention;
use crate::console::tz::timestamp;
use crate::store::lease::Lease;
use crate::store::retention::{Cutoffs, PurgeCounts};
use crate::store::schools::School;
use crate::store::{self, Jobs, Location};

/// States in which an alert's review is finished.
pub const TERMINAL_STATES: [&str; 2] = ["closed", "false_positive"];

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("[retention] closed_alert_months = 0 would delete alerts as soon as they close; set at least 1")]
    ZeroMonths,
    #[error("retention purge failed in the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("retention purge failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What a purge removed, or would remove with `dry_run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// The trust's cut-off.
    pub cutoff_ms: i64,
    /// (school, cut-off) of each school with a retention of its own.
    pub schools: Vec<(String, i64)>,
    /// Closed alerts (the reviewed rows).
    pub alerts: u64,
    /// Folded repeats and burst shots of those alerts.
    pub repeats: u64,
    pub captures: u64,
    pub dry_run: bool,
}

impl std::fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "purge{}: {} {} alerts closed before {} ({} folded repeats or burst shots, {} captures)",
            if self.dry_run { " (dry run)" } else { "" },
            if self.dry_run {
                "would remove"
            } else {
                "removed"
            },
            self.alerts,
            date_utc(self.cutoff_ms),
            self.repeats,
            self.captures
        )?;
        for (school, cutoff_ms) in &self.schools {
            write!(
                f,
                "; school {school}: closed before {}",
                date_utc(*cutoff_ms)
            )?;
        }
        Ok(())
    }
}

fn date_utc(ms: i64) -> String {
    timestamp(ms).strftime("%Y-%m-%d").to_string()
}

/// `now_ms` minus `months` calendar months (UTC); the day is clamped to the
/// length of the target month (31 March minus one month is 28/29 February).
/// Beyond the calendar's range, nothing counts as old enough.
pub fn months_before(now_ms: i64, months: u32) -> i64 {
    Span::new()
        .try_months(i64::from(months))
        .and_then(|span| {
            timestamp(now_ms)
                .to_zoned_datetime(TimeZone::UTC)
                .checked_sub(span)
        })
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(i64::MIN)
}

/// Removes (or with `dry_run` counts) the alerts whose retention has run out
/// at `now_ms`.
pub fn purge(
    conn: &Connection,
    policy: &Retention,
    now_ms: i64,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    if policy.closed_alert_months == 0 {
        return Err(RetentionError::ZeroMonths);
    }
    let schools = crate::store::sqlite::schools::list(conn)?;
    let cutoffs = cutoffs(policy, &schools, now_ms);
    let counts = crate::store::sqlite::retention::purge(conn, &cutoffs, dry_run)?;
    Ok(report(cutoffs, counts, dry_run))
}

/// The cut-offs at `now_ms`: the trust's by `[retention]
/// closed_alert_months`, and each school's with a retention of its own
/// (`schools set <id> --retention-months`).
pub fn cutoffs(policy: &Retention, schools: &[School], now_ms: i64) -> Cutoffs {
    Cutoffs {
        trust_ms: months_before(now_ms, policy.closed_alert_months),
        schools: schools
            .iter()
            .filter(|s| s.retention_months > 0)
            .map(|s| (s.id.clone(), months_before(now_ms, s.retention_months)))
            .collect(),
    }
}

fn report(cutoffs: Cutoffs, counts: PurgeCounts, dry_run: bool) -> PurgeReport {
    PurgeReport {
        cutoff_ms: cutoffs.trust_ms,
        schools: cutoffs.schools,
        alerts: counts.alerts,
        repeats: counts.repeats,
        captures: counts.captures,
        dry_run,
    }
}

/// The entry the audit log gets for a purge that removed something.
pub fn audit_detail(cutoffs: &Cutoffs, counts: &PurgeCounts) -> String {
    let mut detail = format!(
        "removed {} alerts closed before {} ({} folded repeats or burst shots, {} captures); notes and history kept",
        counts.alerts,
        date_utc(cutoffs.trust_ms),
        counts.repeats,
        counts.captures
    );
    for (school, cutoff_ms) in &cutoffs.schools {
        detail.push_str(&format!(
            "; school {school}: closed before {}",
            date_utc(*cutoff_ms)
        ));
    }
    detail
}

/// The lease under which the daily purge runs on a shared store.
pub const RETENTION_LEASE: &str = "retention-purge";

/// Runs the purge once a day while `serve` runs: first a minute after start,
/// then every 24 hours. Failures are logged and retried the next day.
///
/// On a store several collectors share, the collector holding the
/// retention lease purges; the others skip the day.
pub fn spawn_daily(
    location: Location,
    policy: Retention,
    lease_ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !policy.purge_daily {
            tracing::info!("daily retention purge is off ([retention] purge_daily = false)");
            return;
        }
        if policy.closed_alert_months == 0 {
            tracing::error!(error = %RetentionError::ZeroMonths, "no retention purge");
            return;
        }
        let jobs = match Jobs::open(&location).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "the retention purge cannot open the store; no purge until the collector restarts");
                return;
            }
        };
        let lease = Lease::keep(
            &jobs,
            RETENTION_LEASE,
            &crate::store::lease::holder_id(),
            lease_ttl,
        );
        let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep_until(next).await;
            next += Duration::from_secs(24 * 3600);
            if !lease.held_handle().now() {
                tracing::info!("the retention purge runs on the collector holding its lease");
                continue;
            }
            let cutoffs = match jobs.schools().await {
                Ok(schools) => cutoffs(&policy, &schools, store::now_ms()),
                Err(e) => {
                    tracing::error!(error = %e, "the retention purge cannot read the schools' retention; retrying tomorrow");
                    continue;
                }
            };
            let cutoff_ms = cutoffs.trust_ms;
            match jobs.purge_closed(&cutoffs, false).await {
                Ok(counts) => tracing::info!(
                    alerts = counts.alerts,
                    repeats = counts.repeats,
                    captures = counts.captures,
                    cutoff_ms,
                    "retention purge done"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "retention purge failed; retrying tomorrow")
                }
            }
        }
    })
}

/// Purges once at the current time in the store at `location`, SQLite or
/// PostgreSQL (where several collectors may share it; the purge is one
/// transaction, so running it beside the daily one is safe).
pub async fn run_once_at(
    location: &Location,
    policy: &Retention,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    if policy.closed_alert_months == 0 {
        return Err(RetentionError::ZeroMonths);
    }
    let jobs = Jobs::open(location).await?;
    let cutoffs = cutoffs(policy, &jobs.schools().await?, store::now_ms());
    let counts = jobs.purge_closed(&cutoffs, dry_run).await?;
    Ok(report(cutoffs, counts, dry_run))
}

/// Opens the store in `dir` and purges once at the current time.
pub fn run_once(
    dir: &Path,
    policy: &Retention,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    let conn = store::open(dir)?;
    purge(&conn, policy, store::now_ms(), dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months() {
        let at = |y, m, d| crate::console::tz::utc_ms(y, m, d, 0, 0);
        assert_eq!(at(1970, 1, 1), 0);
        assert_eq!(
            months_before(at(2026, 11, 22) + 5, 12),
            at(2025, 11, 22) + 5
        );
        assert_eq!(months_before(at(2024, 3, 31), 1), at(2024, 2, 29));
        assert_eq!(months_before(at(2026, 1, 15), 1), at(2025, 12, 15));
        assert_eq!(months_before(at(2026, 1, 15), 25), at(2023, 12, 15));
        assert_eq!(date_utc(at(2025, 11, 22) + 3_600_000), "2025-11-22");
        // Out of the calendar's range: nothing is old enough to purge.
        assert_eq!(months_before(0, u32::MAX), i64::MIN);
    }

    #[test]
    fn zero_months_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        let policy = Retention {
            closed_alert_months: 0,
            ..Retention::default()
        };
        assert!(matches!(
            purge(&conn, &policy, 0, true),
            Err(RetentionError::ZeroMonths)
        ));
    }
}
