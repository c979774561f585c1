//! The fleet page for technicians and safeguarding leads: every station with
//! its group, when it was last heard from (school time zone), agent and rule
//! versions, spool backlog and health — silent stations (quiet for longer
//! than `[fleet] silent_after_mins` of school time) and flagged ones (e.g. a
//! cloned identity) are highlighted. Below, the shadow pack's predicted alert
//! volume, noisiest rules first. No pupil data appears here.

use std::collections::HashSet;
use std::fmt::Write;

use axum::response::Response;
use rusqlite::Connection;

use super::html::{esc, page};
use super::{deny, html_response, session, App, Fail, Req};
use crate::store::now_ms;

/// One row of the fleet table.
#[derive(Debug, Clone)]
pub struct Station {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
    pub agent_version: String,
    pub rules_version: i64,
    pub spool_backlog: i64,
    pub spool_dropped: i64,
    pub flag: String,
    pub silent: bool,
}

impl Station {
    /// `flagged`, `silent` or `ok`.
    pub fn health(&self) -> &'static str {
        if !self.flag.is_empty() {
            "flagged"
        } else if self.silent {
            "silent"
        } else {
            "ok"
        }
    }
}

/// Every unrevoked station, silent and flagged ones first.
pub fn stations(app: &App, conn: &Connection, now: i64) -> rusqlite::Result<Vec<Station>> {
    let silent: HashSet<String> =
        crate::coverage::silent_stations(conn, now, &app.fleet, &app.zone)?
            .into_iter()
            .map(|s| s.agent_id)
            .collect();
    let mut stmt = conn.prepare(
        "SELECT agent_id, station, grp, last_seen_ms, agent_version, rules_version,
                spool_backlog, spool_dropped, COALESCE(flag, '')
         FROM agents WHERE revoked = 0 ORDER BY grp, station",
    )?;
    let mut rows = stmt
        .query_map([], |r| {
            let agent_id: String = r.get(0)?;
            Ok(Station {
                silent: silent.contains(&agent_id),
                agent_id,
                station: r.get(1)?,
                grp: r.get(2)?,
                last_seen_ms: r.get(3)?,
                agent_version: r.get(4)?,
                rules_version: r.get(5)?,
                spool_backlog: r.get(6)?,
                spool_dropped: r.get(7)?,
                flag: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.sort_by_key(|s| match s.health() {
        "flagged" => 0,
        "silent" => 1,
        _ => 2,
    });
    Ok(rows)
}

pub fn page_handler(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !viewer.role.sees_alerts() {
        return Err(deny(conn, &viewer, "fleet"));
    }
    let now = now_ms();
    let rows = stations(app, conn, now)?;
    let silent = rows.iter().filter(|s| s.health() == "silent").count();
    let flagged = rows.iter().filter(|s| s.health() == "flagged").count();
    let mut body = format!(
        r#"<h1>Fleet</h1><p id="fleet-summary">{} stations: {silent} silent, {flagged} flagged. Silent means no heartbeat or event for more than {} minutes of school time ({} {}).</p>"#,
        rows.len(),
        app.fleet.silent_after_mins,
        esc(&app.fleet.school_days.join(", ")),
        esc(&app.fleet.school_hours),
    );
    body.push_str(
        r#"<table id="fleet"><thead><tr><th>Station</th><th>Group</th><th>Last seen</th><th>Agent</th><th>Rules</th><th>Spool backlog</th><th>Dropped</th><th>Health</th></tr></thead><tbody>"#,
    );
    for s in &rows {
        let class = match s.health() {
            "flagged" => r#" class="flagged""#,
            "silent" => r#" class="silent""#,
            _ => "",
        };
        let health = if s.flag.is_empty() {
            s.health().to_owned()
        } else {
            format!(
                "flagged: {}{}",
                s.flag,
                if s.silent { " (also silent)" } else { "" }
            )
        };
        let _ = write!(
            body,
            r#"<tr{class} data-agent="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&s.agent_id),
            esc(&s.station),
            esc(if s.grp.is_empty() { "-" } else { &s.grp }),
            s.last_seen_ms
                .map(|ms| esc(&app.zone.format(ms)))
                .unwrap_or_else(|| "never".into()),
            esc(if s.agent_version.is_empty() {
                "-"
            } else {
                &s.agent_version
            }),
            s.rules_version,
            s.spool_backlog,
            s.spool_dropped,
            esc(&health),
        );
    }
    body.push_str("</tbody></table>");
    shadow_section(conn, &mut body)?;
    Ok(html_response(page("Fleet", Some(&viewer), &body)))
}

/// The candidate (shadow) pack's would-be matches per rule, noisiest first.
fn shadow_section(conn: &Connection, body: &mut String) -> rusqlite::Result<()> {
    crate::publish::ensure_schema(conn)?;
    let Some((version, _, _)) = crate::publish::latest(conn, true)? else {
        body.push_str("<h2>Candidate rules (shadow)</h2><p>No shadow pack is published.</p>");
        return Ok(());
    };
    let (totals, agents) = crate::publish::shadow_totals(conn, version)?;
    let sum: i64 = totals.iter().map(|t| t.count).sum();
    let _ = write!(
        body,
        r#"<h2>Candidate rules (shadow version {version})</h2><p id="shadow-volume">Predicted alert volume: {sum} would-be matches from {agents} reporting agents (before repeats are folded). Counts only: no text is collected in shadow mode.</p><table id="shadow"><thead><tr><th>Rule</th><th>Would-be matches</th><th>Agents</th></tr></thead><tbody>"#
    );
    for t in &totals {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.rule_id),
            t.count,
            t.agents
        );
    }
    body.push_str("</tbody></table>");
    Ok(())
}
