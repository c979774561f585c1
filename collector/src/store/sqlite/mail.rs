//! The mail outbox on SQLite (one process sends: claims are plain updates).

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::mail::{ClaimedEmail, EmailOutcome, NewEmail, OutboxRow};
use crate::store::now_ms;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    message BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    -- Set when the server refused the email for good (5xx): not retried.
    failed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (sent_ms, next_attempt_ms);
CREATE TABLE IF NOT EXISTS mail_cursor (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Creates the outbox tables if they do not exist (and adds `failed_ms` to
/// an outbox created before it).
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if conn
        .prepare("SELECT failed_ms FROM mail_outbox LIMIT 0")
        .is_err()
    {
        conn.execute_batch("ALTER TABLE mail_outbox ADD COLUMN failed_ms INTEGER")?;
    }
    Ok(())
}

/// Writes `email` to the outbox (in the caller's transaction); returns its id.
pub fn enqueue(conn: &Connection, email: &NewEmail) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO mail_outbox (kind, recipient, subject, envelope_from, message, created_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            email.kind,
            email.recipient,
            email.subject,
            email.envelope_from,
            email.message,
            now_ms()
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Claims the next due row for `claim_ms`. Urgent notifications go before
/// summaries. Only rows due at `cutoff` are claimed, so a pass never
/// retries a row it has just failed, however long the attempt took.
pub fn claim_due(
    conn: &Connection,
    cutoff: i64,
    claim_ms: i64,
) -> rusqlite::Result<Option<ClaimedEmail>> {
    let now = now_ms();
    loop {
        let row = conn
            .query_row(
                "SELECT id, recipient, envelope_from, message, attempts FROM mail_outbox
                 WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?1
                 ORDER BY kind <> 'urgent', next_attempt_ms, id LIMIT 1",
                [cutoff],
                |r| {
                    Ok(ClaimedEmail {
                        id: r.get(0)?,
                        recipient: r.get(1)?,
                        envelope_from: r.get(2)?,
                        message: r.get(3)?,
                        attempts: r.get(4)?,
                    })
                },
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let claimed = conn.execute(
            "UPDATE mail_outbox SET next_attempt_ms = ?2
             WHERE id = ?1 AND sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?3",
            params![row.id, now + claim_ms, cutoff],
        )?;
        if claimed == 1 {
            return Ok(Some(row));
        }
    }
}

pub fn attempted(
    conn: &Connection,
    id: i64,
    attempts: i64,
    outcome: &EmailOutcome,
) -> rusqlite::Result<()> {
    match outcome {
        EmailOutcome::Sent => conn.execute(
            "UPDATE mail_outbox SET sent_ms = ?2, attempts = ?3, last_error = '' WHERE id = ?1",
            params![id, now_ms(), attempts],
        ),
        EmailOutcome::Refused(error) => conn.execute(
            "UPDATE mail_outbox SET failed_ms = ?2, attempts = ?3, last_error = ?4 WHERE id = ?1",
            params![id, now_ms(), attempts, error],
        ),
        EmailOutcome::Retry { next_ms, error } => conn.execute(
            "UPDATE mail_outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_ms, error],
        ),
    }?;
    Ok(())
}

pub fn defer_due(
    conn: &Connection,
    cutoff: i64,
    next_ms: i64,
    error: &str,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE mail_outbox SET next_attempt_ms = ?1,
            last_error = 'not tried: ' || ?2
         WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?3",
        params![next_ms, error, cutoff],
    )
}

pub fn prune_sent(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM mail_outbox WHERE sent_ms < ?1 OR failed_ms < ?1",
        [before_ms],
    )
}

pub fn outbox(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, recipient, subject, created_ms, attempts, next_attempt_ms, sent_ms, last_error, failed_ms
         FROM mail_outbox ORDER BY sent_ms IS NOT NULL, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            recipient: r.get(2)?,
            subject: r.get(3)?,
            created_ms: r.get(4)?,
            attempts: r.get(5)?,
            next_attempt_ms: r.get(6)?,
            sent_ms: r.get(7)?,
            last_error: r.get(8)?,
            failed_ms: r.get(9)?,
        })
    })?;
    rows.collect()
}

pub fn retry_failed(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE mail_outbox SET failed_ms = NULL, attempts = 0, next_attempt_ms = ?1,
            last_error = 'queued again after: ' || last_error
         WHERE failed_ms IS NOT NULL AND sent_ms IS NULL",
        [now_ms()],
    )
}
