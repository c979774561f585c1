//! The store reads behind the metrics' gauges, taken at each scrape on a
//! read-only connection (WAL: they never wait for the writer).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::store::{now_ms, DB_FILE};

/// What the store holds now, as the gauges show it.
#[derive(Debug, Default)]
pub struct Readings {
    pub agents_enrolled: i64,
    pub agents_silent: i64,
    pub agents_revoked: i64,
    pub spool_backlog: i64,
    pub spool_dropped: i64,
    /// (state, severity, alerts)
    pub queue: Vec<(String, i64, i64)>,
    pub mail_pending: i64,
    pub mail_failed: i64,
    pub webhook_pending: i64,
    pub webhook_failed: i64,
    pub live_publications: i64,
    pub live_version: i64,
    pub shadow_publications: i64,
    pub shadow_version: i64,
}

pub fn read(dir: &Path, silent_after: Duration) -> rusqlite::Result<Readings> {
    let conn = Connection::open_with_flags(
        dir.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(2))?;
    let silent_since = now_ms().saturating_sub(silent_after.as_millis() as i64);
    let mut r = Readings::default();
    (
        r.agents_enrolled,
        r.agents_silent,
        r.agents_revoked,
        r.spool_backlog,
        r.spool_dropped,
    ) = conn.query_row(
        "SELECT COALESCE(SUM(revoked = 0), 0),
                COALESCE(SUM(revoked = 0 AND COALESCE(last_seen_ms, enrolled_ms) < ?1), 0),
                COALESCE(SUM(revoked != 0), 0),
                COALESCE(SUM(CASE WHEN revoked = 0 THEN spool_backlog END), 0),
                COALESCE(SUM(CASE WHEN revoked = 0 THEN spool_dropped END), 0)
         FROM agents",
        [silent_since],
        |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        },
    )?;
    let mut queue = conn.prepare(
        "SELECT state, severity, COUNT(*) FROM alerts GROUP BY state, severity ORDER BY state, severity",
    )?;
    r.queue = queue
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if table_exists(&conn, "mail_outbox")? {
        (r.mail_pending, r.mail_failed) = conn.query_row(
            "SELECT COALESCE(SUM(sent_ms IS NULL AND failed_ms IS NULL), 0),
                    COALESCE(SUM(failed_ms IS NOT NULL), 0)
             FROM mail_outbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    }
    if table_exists(&conn, "webhook_outbox")? {
        (r.webhook_pending, r.webhook_failed) = conn.query_row(
            "SELECT COALESCE(SUM(sent_ms IS NULL AND failed_ms IS NULL), 0),
                    COALESCE(SUM(failed_ms IS NOT NULL), 0)
             FROM webhook_outbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    }
    if table_exists(&conn, "rule_bundles")? {
        for (shadow, count, version) in [
            (0, &mut r.live_publications, &mut r.live_version),
            (1, &mut r.shadow_publications, &mut r.shadow_version),
        ] {
            (*count, *version) = conn.query_row(
                "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM rule_bundles WHERE shadow = ?1",
                [shadow],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
        }
    }
    Ok(r)
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
