//! Alerts written straight into a collector's database, for tests of what
//! the console and the summaries show of them.

use rusqlite::{params, Connection};

/// Inserts an alert from agent `ag-live` on station `LAB1-PC01`, with typed
/// context `SECRET typed context {seq}`; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn insert_alert(
    conn: &Connection,
    seq: i64,
    user: &str,
    time_ms: i64,
    category: &str,
    severity: i64,
    rule: &str,
    state: &str,
) -> i64 {
    conn.execute(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source, context, app,
            app_path, window_title, url, search_query, category, severity, rule_id, term, matches, rules_version,
            state, body, signature, body_hash)
         VALUES (?1, 'ag-live', ?2, ?3, ?3 + 2000, ?4, 'LAB1-PC01', 'typed', ?5, 'firefox', '/usr/bin/firefox',
            ?5, '', '', ?6, ?7, ?8, 'term', '[]', 7, ?9, x'00', x'00', x'00')",
        params![
            format!("ev-{seq}"),
            seq,
            time_ms,
            user,
            format!("SECRET typed context {seq}"),
            category,
            severity,
            rule,
            state
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}
