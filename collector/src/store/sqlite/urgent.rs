//! Urgent notifications' records on SQLite.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::store::urgent::{UrgentAlert, UrgentQueue, UrgentScan, URGENT_SEVERITY};
use crate::store::StoreError;

/// Every urgent alert at or below this id has been notified (or predates mail).
pub const FLOOR: &str = "urgent_floor_id";
/// Cursors of earlier versions, one per audience: pupils' alerts (the DSLs)
/// and staff alerts (the head); turned into the floor and records once.
pub const CURSOR: &str = "urgent_alert_id";
pub const STAFF_CURSOR: &str = "urgent_staff_alert_id";

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS urgent_notified (
    alert_id INTEGER PRIMARY KEY,
    audience TEXT NOT NULL,
    notified_ms INTEGER NOT NULL
);
";

/// The SQL expression (on alias `a`) that is true for alerts about staff,
/// with its parameters; `pattern` is lower-case.
pub fn staff_condition(conn: &Connection, pattern: &str) -> rusqlite::Result<(String, Vec<Value>)> {
    Ok(crate::console::staff::scope(
        conn,
        &crate::urgent::role_viewer(crate::console::auth::Role::Head),
        pattern,
    )?
    .unwrap_or_else(|| ("0".to_owned(), Vec::new())))
}

pub fn init_cursor(conn: &Connection, started_ms: i64) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if cursor(conn, CURSOR)?.is_none() {
        conn.execute(
            "INSERT OR IGNORE INTO mail_cursor (name, value)
             SELECT ?1, COALESCE(MAX(id), 0) FROM alerts WHERE received_ms < ?2",
            rusqlite::params![FLOOR, started_ms],
        )?;
    }
    Ok(())
}

pub fn cursor(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM mail_cursor WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
}

fn set_cursor(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO mail_cursor (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = ?2",
        rusqlite::params![name, value],
    )?;
    Ok(())
}

/// The urgent alerts above `floor` (up to `newest`) not yet notified, most
/// severe first.
fn pending(
    conn: &Connection,
    staff_pattern: &str,
    floor: i64,
    newest: i64,
) -> rusqlite::Result<Vec<UrgentAlert>> {
    let (staff, mut values) = staff_condition(conn, staff_pattern)?;
    values.push(Value::Integer(floor));
    values.push(Value::Integer(newest));
    values.push(Value::Integer(URGENT_SEVERITY));
    let sql = format!(
        "SELECT a.id, a.time_ms, a.severity, ({staff}), a.school FROM alerts a
         WHERE a.id > ? AND a.id <= ? AND a.severity >= ? AND a.state <> 'folded'
           AND NOT EXISTS (SELECT 1 FROM urgent_notified n WHERE n.alert_id = a.id)
         ORDER BY a.severity DESC, a.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        Ok(UrgentAlert {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            severity: r.get(2)?,
            staff: r.get(3)?,
            school: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Turns the per-audience cursors of an earlier version into the floor and
/// records: an alert at or below its audience's cursor counts as notified.
fn migrate_cursors(conn: &Connection, staff_pattern: &str) -> rusqlite::Result<()> {
    let (Some(pupils), staff) = (cursor(conn, CURSOR)?, cursor(conn, STAFF_CURSOR)?) else {
        return Ok(());
    };
    let staff = staff.unwrap_or(pupils);
    let (floor, top) = (pupils.min(staff), pupils.max(staff));
    let now = crate::store::now_ms();
    for alert in pending(conn, staff_pattern, floor, top)? {
        let (done, audience) = if alert.staff {
            (alert.id <= staff, "staff")
        } else {
            (alert.id <= pupils, "pupils")
        };
        if done {
            conn.execute(
                "INSERT OR IGNORE INTO urgent_notified (alert_id, audience, notified_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![alert.id, audience, now],
            )?;
        }
    }
    set_cursor(conn, FLOOR, floor)?;
    conn.execute(
        "DELETE FROM mail_cursor WHERE name IN (?1, ?2)",
        [CURSOR, STAFF_CURSOR],
    )?;
    Ok(())
}

pub fn scan(conn: &mut Connection, staff_pattern: &str) -> Result<UrgentScan, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    migrate_cursors(&tx, staff_pattern)?;
    let floor = cursor(&tx, FLOOR)?.unwrap_or(0);
    let newest: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |r| r.get(0))?;
    let pending = if newest > floor {
        pending(&tx, staff_pattern, floor, newest)?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok(UrgentScan {
        floor,
        newest,
        pending,
    })
}

pub fn record(conn: &mut Connection, queue: &UrgentQueue) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if cursor(&tx, FLOOR)?.unwrap_or(0) != queue.floor_was {
        return Ok(false);
    }
    for email in &queue.emails {
        super::mail::enqueue(&tx, email)?;
    }
    for (id, audience) in &queue.notified {
        tx.execute(
            "INSERT INTO urgent_notified (alert_id, audience, notified_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, audience, queue.now_ms],
        )?;
    }
    // Every urgent alert below the lowest waiting one is notified: raise
    // the floor there and forget the records beneath it.
    set_cursor(&tx, FLOOR, queue.floor)?;
    tx.execute(
        "DELETE FROM urgent_notified WHERE alert_id <= ?1",
        [queue.floor],
    )?;
    tx.commit()?;
    Ok(true)
}
