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

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Span;
use rusqlite::{params, Connection};

use crate::config::Retention;
use crate::console::tz::timestamp;
use crate::store;

/// States in which an alert's review is finished.
pub const TERMINAL_STATES: [&str; 2] = ["closed", "false_positive"];

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("[retention] closed_alert_months = 0 would delete alerts as soon as they close; set at least 1")]
    ZeroMonths,
    #[error("retention purge failed in the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What a purge removed, or would remove with `dry_run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub cutoff_ms: i64,
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
        )
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
    // The console makes its tables at start; a collector whose console never
    // ran has no history, so nothing counts as closed.
    crate::console::schema::create(conn)?;
    let cutoff_ms = months_before(now_ms, policy.closed_alert_months);
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = purge_in_transaction(conn, cutoff_ms, dry_run);
    match (&result, dry_run) {
        (Ok(_), false) => conn.execute_batch("COMMIT")?,
        _ => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    let report = result?;
    if !dry_run && report.alerts > 0 {
        // Freed pages were zeroed (secure_delete); fold the WAL back so the
        // old pages do not linger there either. Busy readers only delay this.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    Ok(report)
}

fn purge_in_transaction(
    conn: &Connection,
    cutoff_ms: i64,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS temp.purge_alerts;
         CREATE TEMP TABLE purge_alerts (id INTEGER PRIMARY KEY, primary_alert INTEGER NOT NULL);",
    )?;
    let alerts = conn.execute(
        "INSERT INTO temp.purge_alerts (id, primary_alert)
         SELECT a.id, 1 FROM alerts a
         WHERE a.state IN (?1, ?2)
           AND (SELECT MAX(h.time_ms) FROM console_history h
                WHERE h.alert_id = a.id AND h.to_state = a.state) < ?3",
        params![TERMINAL_STATES[0], TERMINAL_STATES[1], cutoff_ms],
    )? as u64;
    let repeats = conn.execute(
        "INSERT OR IGNORE INTO temp.purge_alerts (id, primary_alert)
         SELECT f.id, 0 FROM alerts f
         JOIN alerts a ON a.id IN (SELECT id FROM temp.purge_alerts WHERE primary_alert = 1)
         WHERE f.repeat_of <> '' AND f.agent_id = a.agent_id AND f.repeat_of = a.event_id",
        [],
    )? as u64;
    let captures: i64 = conn.query_row(
        "SELECT COUNT(*) FROM captures WHERE alert_id IN (SELECT id FROM temp.purge_alerts)",
        [],
        |r| r.get(0),
    )?;
    let report = PurgeReport {
        cutoff_ms,
        alerts,
        repeats,
        captures: captures as u64,
        dry_run,
    };
    if dry_run || alerts == 0 {
        conn.execute_batch("DROP TABLE temp.purge_alerts")?;
        return Ok(report);
    }
    // Overwrite what is freed, so deleted evidence does not stay in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.execute(
        "DELETE FROM captures WHERE alert_id IN (SELECT id FROM temp.purge_alerts)",
        [],
    )?;
    conn.execute(
        "DELETE FROM console_review WHERE alert_id IN (SELECT id FROM temp.purge_alerts)",
        [],
    )?;
    conn.execute(
        "DELETE FROM alerts WHERE id IN (SELECT id FROM temp.purge_alerts)",
        [],
    )?;
    conn.execute_batch("DROP TABLE temp.purge_alerts")?;
    crate::console::audit::append(
        conn,
        "retention",
        "retention_purge",
        "alerts",
        &format!(
            "removed {} alerts closed before {} ({} folded repeats or burst shots, {} captures); notes and history kept",
            report.alerts,
            date_utc(cutoff_ms),
            report.repeats,
            report.captures
        ),
    )?;
    Ok(report)
}

/// Runs the purge once a day while `serve` runs: first a minute after start,
/// then every 24 hours. Failures are logged and retried the next day.
pub fn spawn_daily(dir: PathBuf, policy: Retention) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !policy.purge_daily {
            tracing::info!("daily retention purge is off ([retention] purge_daily = false)");
            return;
        }
        let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep_until(next).await;
            next += Duration::from_secs(24 * 3600);
            let dir = dir.clone();
            let policy = policy.clone();
            let outcome = tokio::task::spawn_blocking(move || run_once(&dir, &policy, false)).await;
            match outcome {
                Ok(Ok(report)) => tracing::info!(
                    alerts = report.alerts,
                    repeats = report.repeats,
                    captures = report.captures,
                    cutoff_ms = report.cutoff_ms,
                    "retention purge done"
                ),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "retention purge failed; retrying tomorrow")
                }
                Err(e) => tracing::error!(error = %e, "retention purge task failed"),
            }
        }
    })
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
