//! The retention purge on SQLite: closed alerts past their time are
//! deleted with their folded repeats, captures and review row, in one
//! transaction, freed pages zeroed.

use rusqlite::{params, Connection};

use crate::retention::TERMINAL_STATES;
use crate::store::retention::{Cutoffs, PurgeCounts};

/// Removes (or with `dry_run` counts) the alerts closed before their
/// school's cut-off.
pub fn purge(conn: &Connection, cutoffs: &Cutoffs, dry_run: bool) -> rusqlite::Result<PurgeCounts> {
    // The console makes its tables at start; a collector whose console never
    // ran has no history, so nothing counts as closed.
    crate::console::schema::create(conn)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = purge_in_transaction(conn, cutoffs, dry_run);
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
    cutoffs: &Cutoffs,
    dry_run: bool,
) -> rusqlite::Result<PurgeCounts> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS temp.purge_alerts;
         CREATE TEMP TABLE purge_alerts (id INTEGER PRIMARY KEY, primary_alert INTEGER NOT NULL);
         DROP TABLE IF EXISTS temp.purge_cutoffs;
         CREATE TEMP TABLE purge_cutoffs (school TEXT PRIMARY KEY, cutoff_ms INTEGER NOT NULL);",
    )?;
    for (school, cutoff_ms) in &cutoffs.schools {
        conn.execute(
            "INSERT INTO temp.purge_cutoffs (school, cutoff_ms) VALUES (?1, ?2)",
            params![school, cutoff_ms],
        )?;
    }
    let alerts = conn.execute(
        "INSERT INTO temp.purge_alerts (id, primary_alert)
         SELECT a.id, 1 FROM alerts a
         WHERE a.state IN (?1, ?2)
           AND (SELECT MAX(h.time_ms) FROM console_history h
                WHERE h.alert_id = a.id AND h.to_state = a.state)
               < COALESCE((SELECT c.cutoff_ms FROM temp.purge_cutoffs c WHERE c.school = a.school), ?3)",
        params![TERMINAL_STATES[0], TERMINAL_STATES[1], cutoffs.trust_ms],
    )? as u64;
    conn.execute_batch("DROP TABLE temp.purge_cutoffs")?;
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
    let report = PurgeCounts {
        alerts,
        repeats,
        captures: captures as u64,
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
        &crate::retention::audit_detail(cutoffs, &report),
    )?;
    Ok(report)
}
