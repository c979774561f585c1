//! The tables background work uses on SQLite.

use rusqlite::Connection;

/// Creates the tables of the mail and webhook outboxes, urgent
/// notifications and weekly summaries (and those of the console and rule publication, which the
/// summary and the staff scoping read).
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    super::mail::ensure_schema(conn)?;
    crate::console::schema::create(conn)?;
    crate::publish::ensure_schema(conn)?;
    super::summary::upgrade(conn)?;
    conn.execute_batch(super::urgent::SCHEMA)?;
    super::webhook::ensure_schema(conn)?;
    Ok(())
}
