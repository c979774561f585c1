//! Reading stored alerts for the command line.

use rusqlite::{params, Connection};
use serde::Serialize;

/// One stored alert, as `alerts list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub event_id: String,
    pub agent_id: String,
    pub seq: i64,
    pub time_ms: i64,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub chain_ok: bool,
    pub user: String,
    pub station: String,
    pub source: String,
    pub context: String,
    pub app: String,
    pub window_title: String,
    pub url: String,
    pub search_query: String,
    pub category: String,
    pub severity: i64,
    pub rule_id: String,
    pub term: String,
    pub rules_version: i64,
    pub count: i64,
    pub has_capture: bool,
    pub state: String,
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub agent_id: Option<String>,
    /// Include folded repeats and extra burst shots (normally shown within their alert).
    pub include_folded: bool,
    pub limit: Option<u64>,
}

pub fn list(conn: &Connection, filter: &AlertFilter) -> rusqlite::Result<Vec<AlertRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, event_id, agent_id, seq, time_ms, received_ms, clock_skew, chain_ok, user, station,
            source, context, app, window_title, url, search_query, category, severity, rule_id, term,
            rules_version, repeat_count, has_capture, state
         FROM alerts WHERE (?1 IS NULL OR agent_id = ?1) AND (?3 OR state != 'folded') ORDER BY id LIMIT ?2",
    )?;
    let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
    let rows = stmt.query_map(
        params![filter.agent_id, limit, filter.include_folded],
        |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                event_id: r.get(1)?,
                agent_id: r.get(2)?,
                seq: r.get(3)?,
                time_ms: r.get(4)?,
                received_ms: r.get(5)?,
                clock_skew: r.get(6)?,
                chain_ok: r.get(7)?,
                user: r.get(8)?,
                station: r.get(9)?,
                source: r.get(10)?,
                context: r.get(11)?,
                app: r.get(12)?,
                window_title: r.get(13)?,
                url: r.get(14)?,
                search_query: r.get(15)?,
                category: r.get(16)?,
                severity: r.get(17)?,
                rule_id: r.get(18)?,
                term: r.get(19)?,
                rules_version: r.get(20)?,
                count: r.get(21)?,
                has_capture: r.get(22)?,
                state: r.get(23)?,
            })
        },
    )?;
    rows.collect()
}

/// Recorded sequence gaps: (agent, from, to).
pub fn gaps(conn: &Connection) -> rusqlite::Result<Vec<(String, i64, i64)>> {
    let mut stmt =
        conn.prepare("SELECT agent_id, from_seq, to_seq FROM gaps ORDER BY agent_id, from_seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}
