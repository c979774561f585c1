//! Captures in object storage, on SQLite: the row's object key, and the
//! queue of objects whose rows were deleted.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::blob::StoredCapture;

/// Adds the object key column and the deletion queue to a database made by
/// an earlier version (additive: nothing is renamed).
pub(super) fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    super::add_column(conn, "captures", "object_key", "TEXT")?;
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS captures_object_key ON captures (object_key)
             WHERE object_key IS NOT NULL;
         CREATE TABLE IF NOT EXISTS capture_objects_gone (object_key TEXT PRIMARY KEY);
         CREATE TRIGGER IF NOT EXISTS captures_object_gone AFTER DELETE ON captures
             WHEN OLD.object_key IS NOT NULL
         BEGIN
             INSERT OR IGNORE INTO capture_objects_gone (object_key) VALUES (OLD.object_key);
         END;",
    )
}

/// What the row of alert `alert_id` holds of its capture.
pub fn stored_capture(conn: &Connection, alert_id: i64) -> rusqlite::Result<Option<StoredCapture>> {
    conn.prepare_cached("SELECT sealed, object_key FROM captures WHERE alert_id = ?1")?
        .query_row([alert_id], |r| {
            Ok(match r.get::<_, Option<String>>(1)? {
                Some(key) => StoredCapture::Object(key),
                None => StoredCapture::Inline(r.get(0)?),
            })
        })
        .optional()
}

/// Up to `limit` keys of objects whose rows were deleted.
pub fn objects_gone(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT object_key FROM capture_objects_gone ORDER BY object_key LIMIT ?1")?
        .query_map([limit as i64], |r| r.get(0))?
        .collect()
}

/// Forgets deleted objects.
pub fn forget_objects(conn: &Connection, keys: &[String]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM capture_objects_gone WHERE object_key = ?1")?;
    for key in keys {
        stmt.execute(params![key])?;
    }
    Ok(())
}

/// Whether a row names the object `key`.
pub fn object_known(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM captures WHERE object_key = ?1)")?
        .query_row([key], |r| r.get(0))
}
