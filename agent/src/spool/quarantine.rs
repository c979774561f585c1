//! The quarantine: events the collector refused for good, kept apart for a
//! technician and bounded in rows and bytes.

use rusqlite::{params, OptionalExtension};

use super::{Spool, SpoolError};

/// Most events kept in the quarantine.
pub const MAX_QUARANTINE_ROWS: i64 = 200;
/// Most bytes (bodies, signatures, captures) kept in the quarantine; the
/// newest event is kept whatever its size.
pub const MAX_QUARANTINE_BYTES: i64 = 8 * 1024 * 1024;

impl Spool {
    /// Moves an event the collector refused for good out of the send queue,
    /// keeping it locally for a technician to inspect.
    pub fn quarantine(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO quarantine (seq, reason, body, signature, capture)
             SELECT seq, ?2, body, signature, capture FROM events WHERE seq = ?1",
            params![seq as i64, reason],
        )?;
        let size: Option<i64> = tx
            .query_row(
                "DELETE FROM events WHERE seq = ?1 RETURNING size",
                [seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        // Newest first: delete what is past the row or byte bound.
        let purged = tx.execute(
            "DELETE FROM quarantine WHERE seq IN (
                SELECT seq FROM (
                    SELECT seq,
                        ROW_NUMBER() OVER newest AS n,
                        SUM(length(body) + length(signature) + length(capture)) OVER newest AS total
                    FROM quarantine
                    WINDOW newest AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING)
                ) WHERE n > ?1 OR (n > 1 AND total > ?2)
            )",
            params![MAX_QUARANTINE_ROWS, MAX_QUARANTINE_BYTES],
        )? as u64;
        let dropped = self.dropped + purged;
        if purged > 0 {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?1)",
                [dropped.to_le_bytes().to_vec()],
            )?;
        }
        tx.commit()?;
        if purged > 0 {
            tracing::warn!(
                purged,
                dropped_total = dropped,
                "quarantine full: deleted the oldest refused events"
            );
        }
        self.dropped = dropped;
        self.bytes = self.bytes.saturating_sub(size.unwrap_or(0) as u64);
        Ok(())
    }
}
