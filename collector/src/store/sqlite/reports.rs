//! Pupils' reports on SQLite.

use rusqlite::{params, Connection};

use crate::store::exemption::AuditNote;
use crate::store::reports::NewReport;

/// Stores `report` as an alert and `note` in the audit log, in one
/// transaction (a savepoint inside the caller's, if there is one).
pub fn insert(
    conn: &Connection,
    report: &NewReport<'_>,
    note: impl FnOnce(i64) -> AuditNote,
) -> rusqlite::Result<i64> {
    crate::store::in_savepoint(conn, "pupil_report", || {
        conn.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                term, matches, rules_version, state, repeat_of, body, signature, body_hash, signed_as, school)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM alerts WHERE agent_id = ?2), ?3, ?3,
                ?4, '', ?5, ?6, '', '', '', '', '', ?7, ?8, ?9, '', '[]', 0, 'new', '', x'', x'', x'', 0, ?10)",
            params![
                report.event_id,
                report.agent_id,
                report.time_ms,
                report.user,
                report.source,
                report.text,
                report.category,
                report.severity,
                report.rule_id,
                report.school,
            ],
        )?;
        let id = conn.last_insert_rowid();
        super::exemption::audit(conn, &note(id))?;
        Ok(id)
    })
}
