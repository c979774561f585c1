//! The spool's SQLite connection: schema, page size, WAL and its sync level,
//! and the retry while another process holds the file.

use std::path::Path;

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    severity INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    capture BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_severity ON events (severity, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    capture BLOB NOT NULL
);
";

const SPOOL_PAGE_SIZE: i64 = 2048;

/// How long opening the spool is retried while another process holds it.
pub(super) const OPEN_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Each append commits a handful of pages; small pages keep the bytes
    // written (and checksummed) per event low. Takes effect on a new spool.
    conn.pragma_update(None, "page_size", SPOOL_PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: a commit survives the agent being killed; only a power
    // cut can lose the last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Appends do not pay for checkpoints: the uplink checkpoints before it
    // sends (see `make_durable`). This only bounds the WAL (64 MiB) while
    // nothing is sent, as on a laptop away from school.
    conn.pragma_update(None, "wal_autocheckpoint", 32768)?;
    Ok(conn)
}
