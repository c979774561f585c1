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

use rusqlite::{params, Connection};

use crate::config::Retention;
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

/// Days since 1970-01-01 of a civil (proleptic Gregorian) date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn date_utc(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `now_ms` minus `months` calendar months (UTC); the day is clamped to the
/// length of the target month (31 March minus one month is 28/29 February).
pub fn months_before(now_ms: i64, months: u32) -> i64 {
    let day_ms = 86_400_000;
    let days = now_ms.div_euclid(day_ms);
    let time_of_day = now_ms.rem_euclid(day_ms);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) - i64::from(months);
    let (ty, tm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let next_month_start = if tm == 12 {
        days_from_civil(ty + 1, 1, 1)
    } else {
        days_from_civil(ty, tm + 1, 1)
    };
    let month_len = next_month_start - days_from_civil(ty, tm, 1);
    days_from_civil(ty, tm, d.min(month_len)) * day_ms + time_of_day
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

    const DAY: i64 = 86_400_000;

    #[test]
    fn months_are_calendar_months() {
        let at = |y, m, d| days_from_civil(y, m, d) * DAY;
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            months_before(at(2026, 11, 22) + 5, 12),
            at(2025, 11, 22) + 5
        );
        assert_eq!(months_before(at(2024, 3, 31), 1), at(2024, 2, 29));
        assert_eq!(months_before(at(2026, 1, 15), 1), at(2025, 12, 15));
        assert_eq!(months_before(at(2026, 1, 15), 25), at(2023, 12, 15));
        assert_eq!(date_utc(at(2025, 11, 22) + 3_600_000), "2025-11-22");
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
