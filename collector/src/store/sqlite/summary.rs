//! Weekly summaries' records on SQLite (one school per file).

use rusqlite::{params, Connection};

use crate::config::CollectorConfig;
use crate::store::summary::{SummaryQueue, SummaryRun};
use crate::store::StoreError;
use crate::summary::content::{Audience, Figures};
use crate::summary::schedule::Week;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS summary_runs (
    week_start TEXT PRIMARY KEY,
    queued_ms INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    emails INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS summary_alerts_time ON alerts (time_ms);
";

pub fn done(conn: &Connection, _school: &str, week_start: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM summary_runs WHERE week_start = ?1)",
        [week_start],
        |r| r.get(0),
    )
}

/// The figures, read in one read transaction (without the write lock:
/// ingest must not wait while the week is scanned).
pub fn figures(
    conn: &mut Connection,
    config: &CollectorConfig,
    week: &Week,
    audience: Audience,
    now_ms: i64,
) -> Result<Figures, StoreError> {
    let read = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let figures = crate::summary::content::figures(&read, config, week, audience, now_ms)?;
    read.finish()?;
    Ok(figures)
}

pub fn queue(conn: &mut Connection, queue: &SummaryQueue) -> Result<Option<usize>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if queue.scheduled && done(&tx, &queue.school, &queue.week_start)? {
        // Queued by another process while this one rendered.
        return Ok(None);
    }
    for email in &queue.emails {
        super::mail::enqueue(&tx, email)?;
    }
    let emails = queue.emails.len();
    tx.execute(
        "INSERT INTO summary_runs (week_start, queued_ms, trigger, emails) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(week_start) DO UPDATE SET emails = emails + ?4",
        params![
            queue.week_start,
            queue.queued_ms,
            if queue.scheduled {
                "schedule"
            } else {
                "manual"
            },
            emails as i64
        ],
    )?;
    tx.commit()?;
    Ok(Some(emails))
}

pub fn runs(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<SummaryRun>> {
    let mut stmt = conn.prepare(
        "SELECT week_start, queued_ms, trigger, emails FROM summary_runs ORDER BY week_start DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(SummaryRun {
            week_start: r.get(0)?,
            queued_ms: r.get(1)?,
            trigger: r.get(2)?,
            emails: r.get(3)?,
        })
    })?;
    rows.collect()
}
