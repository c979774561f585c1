//! The fleet page for technicians and safeguarding leads: every station with
//! its group, when it was last heard from (in its school's zone), agent and rule
//! versions, spool backlog and health — silent stations (quiet for longer
//! than `[fleet] silent_after_mins` of school time) and flagged ones (e.g. a
//! cloned identity) are highlighted. Below, the shadow pack's predicted alert
//! volume, noisiest rules first. No pupil data appears here.
//!
//! Technicians (and the DSL roles) act on a station from here, as with
//! `tutela-collector agents clear-flag` and `agents revoke`: each action has
//! a confirm step, needs the session's CSRF token and is audited
//! (`agent-clear-flag`, `agent-revoke`).

use std::collections::HashSet;

use axum::response::Response;
use maud::{html, Markup};

use super::auth::{Role, Viewer};
use super::html::{csrf, page};
use super::{deny, html_response, redirect, session, wait, App, Fail, Req};
use crate::store::console::Console;
use crate::store::fleet::StationChange;
use crate::store::now_ms;
use crate::store::schools::School;
use crate::store::users::Audited;

pub use crate::store::fleet::Station;

/// Clears flags and revokes stations: technicians, the DSL and deputies.
pub fn may_manage_stations(role: Role) -> bool {
    matches!(role, Role::Technician | Role::Dsl | Role::DeputyDsl)
}

/// The kind of device an agent version names. The browser extension
/// reports `<version> chrome-extension <os>` (the browser's own platform
/// name: `cros` on a Chromebook); the native agent reports its version only.
pub fn platform(agent_version: &str) -> &'static str {
    let mut words = agent_version.split_whitespace().skip(1);
    if words.next() != Some("chrome-extension") {
        return if agent_version.is_empty() {
            "-"
        } else {
            "desktop agent"
        };
    }
    match words.next() {
        Some("cros") => "Chromebook",
        Some("win") => "Chrome on Windows",
        Some("mac") => "Chrome on macOS",
        Some("linux") => "Chrome on Linux",
        _ => "Chrome",
    }
}

impl Station {
    /// `flagged`, `silent`, `problem` (the agent reports one) or `ok`.
    pub fn health(&self) -> &'static str {
        if !self.flag.is_empty() {
            "flagged"
        } else if self.silent {
            "silent"
        } else if !self.problems.is_empty() {
            "problem"
        } else {
            "ok"
        }
    }
}

/// Every unrevoked station of the schools `scope` allows, silent and
/// flagged ones first.
pub fn stations(
    app: &App,
    db: &Console<'_>,
    scope: &crate::store::schools::Scope,
    now: i64,
) -> Result<Vec<Station>, Fail> {
    let sightings = wait(app.shared.sightings())?;
    let silent: HashSet<String> =
        crate::coverage::silent_among(sightings, now, &app.fleet, &app.zone)
            .into_iter()
            .map(|s| s.agent_id)
            .collect();
    let mut rows = db.stations(scope)?;
    for row in &mut rows {
        row.silent = silent.contains(&row.agent_id);
    }
    rows.sort_by_key(|s| match s.health() {
        "flagged" => 0,
        "silent" => 1,
        "problem" => 2,
        _ => 3,
    });
    Ok(rows)
}

pub fn page_handler(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.sees_fleet() {
        return Err(deny(db, &viewer, "fleet"));
    }
    let now = now_ms();
    let rows = stations(app, db, &viewer.school, now)?;
    let silent = rows.iter().filter(|s| s.health() == "silent").count();
    let flagged = rows.iter().filter(|s| s.health() == "flagged").count();
    let troubled = rows.iter().filter(|s| s.health() == "problem").count();
    let manages = may_manage_stations(viewer.role);
    // A trust-wide technician may move a station to another school.
    let schools = if manages && viewer.trust_wide() {
        db.schools()?
    } else {
        Vec::new()
    };
    let schools = if schools.len() > 1 {
        schools
    } else {
        Vec::new()
    };
    let shadow = shadow_section(app)?;
    let body = html! {
        h1 { "Fleet" }
        p #fleet-summary {
            (rows.len()) " stations: " (silent) " silent, " (flagged) " flagged, " (troubled) " reporting a problem. Silent means no heartbeat or event for more than "
            (app.fleet.silent_after_mins) " minutes of school time ("
            (app.fleet.school_days.join(", ")) " " (app.fleet.school_hours) ")."
        }
        table #fleet {
            thead { tr {
                th { "Station" } th { "Platform" } th { "Group" } th { "Last seen" } th { "Agent" } th { "Rules" }
                th { "Spool backlog" } th { "Dropped" } th { "Health" }
                @if manages { th {} }
            } }
            tbody {
                @for s in &rows {
                    @let class = match s.health() {
                        "flagged" => Some("flagged"),
                        "silent" => Some("silent"),
                        "problem" => Some("problem"),
                        _ => None,
                    };
                    tr class=[class] data-agent=(s.agent_id) {
                        td { (s.station) } td { (platform(&s.agent_version)) }
                        td { (if s.grp.is_empty() { "-" } else { &s.grp }) }
                        td {
                            @match s.last_seen_ms { Some(ms) => (app.zone_of(&s.school).format(ms)), None => "never" }
                        }
                        td { (if s.agent_version.is_empty() { "-" } else { &s.agent_version }) }
                        td { (s.rules_version) } td { (s.spool_backlog) } td { (s.spool_dropped) }
                        td {
                            @if s.flag.is_empty() { (s.health()) } @else {
                                "flagged: " (s.flag) @if s.silent { " (also silent)" }
                            }
                            @if !s.problems.is_empty() {
                                "; the agent reports: " (s.problems.replace('\n', "; "))
                            }
                        }
                        @if manages { (station_actions(&viewer, s, &schools)) }
                    }
                }
            }
        }
        (shadow)
    };
    Ok(html_response(page("Fleet", Some(&viewer), body)))
}

/// The action buttons of one row; each leads to a confirm page first, but
/// a move to another school (offered among `schools`), which can be undone.
fn station_actions(viewer: &Viewer, s: &Station, schools: &[School]) -> Markup {
    let form = |action: &str, label: &str| {
        html! {
            form method="post" action={ "/fleet/" (action) } class="inline" {
                (csrf(viewer))
                input type="hidden" name="agent" value=(s.agent_id);
                button type="submit" class="secondary" { (label) }
            }
        }
    };
    html! {
        td {
            @if !s.flag.is_empty() { (form("clear-flag", "Clear flag…")) }
            (form("revoke", "Revoke…"))
            @if !schools.is_empty() {
                form method="post" action="/fleet/move-school" class="inline move-school" {
                    (csrf(viewer))
                    input type="hidden" name="agent" value=(s.agent_id);
                    select name="school" aria-label="School" {
                        @for school in schools { option value=(school.id) { (school.name) " (" (school.id) ")" } }
                    }
                    button type="submit" class="secondary" { "Move to school" }
                }
            }
        }
    }
}

/// `POST /fleet/move-school`: moves a station to another school (trust-wide
/// technicians only), audited; its later alerts are that school's.
pub fn move_school(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_manage_stations(viewer.role) || !viewer.trust_wide() {
        return Err(deny(db, &viewer, "fleet: move-school"));
    }
    let (agent_id, to) = (req.f("agent"), req.f("school"));
    if agent_id.is_empty() || agent_id.len() > 64 {
        return Err(Fail::BadRequest(
            "No station was given; go back to the Fleet page and use the station's button.".into(),
        ));
    }
    if !db.schools()?.iter().any(|s| s.id == to) {
        return Err(Fail::BadRequest(
            "Choose the school from the list on the Fleet page; ask for a new school with `tutela-collector schools add`.".into(),
        ));
    }
    let detail = format!("to school {to}");
    let target = format!("agent:{agent_id}");
    let entry = Audited {
        actor: &viewer.name,
        action: "agent-move-school",
        target: &target,
        detail: &detail,
    };
    if let Err(e) = wait(crate::notice::before_move(
        &app.shared,
        &app.data_dir,
        agent_id,
        to,
    )) {
        tracing::error!(agent_id = %agent_id, error = %e, "the new school's notice could not be issued again for the station; once moved it keeps its former notice until that school's notice changes");
    }
    let Some(from) = db.move_agent_school(agent_id, to, &entry)? else {
        return Err(Fail::BadRequest(format!(
            "There is no enrolled, unrevoked station {agent_id}; it may have been revoked. Reload the Fleet page."
        )));
    };
    crate::subscription::nudge();
    tracing::info!(agent_id = %agent_id, from = %from, to = %to, by = %viewer.name, "station moved to another school from the console");
    Ok(redirect("/fleet"))
}

/// What an action does, for its confirm page and its audit entry.
struct StationAction {
    path: &'static str,
    audit: &'static str,
    title: &'static str,
    explain: &'static str,
    button: &'static str,
}

const CLEAR_FLAG: StationAction = StationAction {
    path: "clear-flag",
    audit: "agent-clear-flag",
    title: "Clear the flag",
    explain: "Clear the flag once you have dealt with its cause (for example, the cloned station now runs under its own identity). The station stays enrolled and keeps reporting.",
    button: "Clear the flag",
};

const REVOKE: StationAction = StationAction {
    path: "revoke",
    audit: "agent-revoke",
    title: "Revoke the station",
    explain: "Revoke this identity: the collector refuses its events and heartbeats from now on (within a few seconds) and the station leaves this page. The device is monitored again only after it is enrolled with a new token. This cannot be undone from the console.",
    button: "Revoke",
};

/// `POST /fleet/clear-flag`: asks to confirm, then clears the station's flag.
pub fn clear_flag(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    station_action(app, db, req, &CLEAR_FLAG)
}

/// `POST /fleet/revoke`: asks to confirm, then revokes the station's identity.
pub fn revoke(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    station_action(app, db, req, &REVOKE)
}

fn station_action(
    _app: &App,
    db: &Console<'_>,
    req: &Req,
    action: &StationAction,
) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_manage_stations(viewer.role) {
        return Err(deny(db, &viewer, &format!("fleet: {}", action.path)));
    }
    let agent_id = req.f("agent");
    if agent_id.is_empty() || agent_id.len() > 64 {
        return Err(Fail::BadRequest(
            "No station was given; go back to the Fleet page and use the station's button.".into(),
        ));
    }
    let Some((station, grp, flag)) = db.station(&viewer.school, agent_id)? else {
        return Err(Fail::BadRequest(format!(
            "There is no enrolled, unrevoked station {agent_id}; it may have been revoked already. Reload the Fleet page."
        )));
    };
    let revoking = action.path == REVOKE.path;
    // Identities re-keyed from this one (cloned images): revoking a copied or
    // stolen key should take them too; the technician chooses.
    let descendants = if revoking {
        db.descendants(agent_id)?
    } else {
        Vec::new()
    };
    if req.f("confirm") != "yes" {
        let body = html! {
            h1 { (action.title) "?" }
            p #confirm-station {
                "Station " strong { (station) } " (group " (if grp.is_empty() { "-" } else { &grp })
                ", identity " code { (agent_id) } ")"
                @if !flag.is_empty() { ", flagged: " (flag) }
                "."
            }
            p { (action.explain) } "\n"
            form method="post" action={ "/fleet/" (action.path) } id="confirm-form" {
                (csrf(&viewer))
                input type="hidden" name="agent" value=(agent_id);
                input type="hidden" name="confirm" value="yes";
                @if !descendants.is_empty() {
                    p #descendants {
                        (descendants.len()) " other identities were re-keyed from this one (cloned stations): "
                        @for (i, d) in descendants.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (d) }
                        }
                        "."
                    }
                    p { label {
                        input type="checkbox" name="descendants" value="yes";
                        " Revoke them too (a copied or stolen key). Leave unticked to revoke this identity only, e.g. when retiring the master of a lab image."
                    } }
                }
                button type="submit" { (action.button) } " " a href="/fleet" { "Cancel" }
            }
        };
        return Ok(html_response(page(action.title, Some(&viewer), body)));
    }
    let detail = if revoking {
        format!("station {station}, group {grp}")
    } else {
        format!("station {station}; was: {flag}")
    };
    let cloned = format!("re-keyed from {agent_id}, revoked with it");
    let targets: Vec<String> = std::iter::once(agent_id.to_owned())
        .chain(
            descendants
                .iter()
                .filter(|_| revoking && req.f("descendants") == "yes")
                .cloned(),
        )
        .collect();
    let audit_targets: Vec<String> = targets.iter().map(|a| format!("agent:{a}")).collect();
    let entries: Vec<(String, Audited<'_>)> = targets
        .iter()
        .zip(&audit_targets)
        .enumerate()
        .map(|(i, (agent, target))| {
            (
                agent.clone(),
                Audited {
                    actor: &viewer.name,
                    action: action.audit,
                    target,
                    detail: if i == 0 { &detail } else { &cloned },
                },
            )
        })
        .collect();
    let change = if revoking {
        StationChange::Revoke
    } else {
        StationChange::ClearFlag
    };
    // Each change and its audit entry commit together, or not at all.
    if !db.change_stations(change, &entries)? {
        return Err(Fail::BadRequest(format!(
            "Station {agent_id} was revoked meanwhile; reload the Fleet page."
        )));
    }
    tracing::info!(agent_id = %agent_id, by = %viewer.name, action = action.audit, "station changed from the console");
    Ok(redirect("/fleet"))
}

/// The candidate (shadow) pack's would-be matches per rule, noisiest first.
fn shadow_section(app: &App) -> Result<Markup, Fail> {
    let Some(version) = wait(app.shared.latest_bundle(true))?.map(|b| b.version) else {
        return Ok(html! {
            h2 { "Candidate rules (shadow)" } p { "No shadow pack is published." }
        });
    };
    let (totals, agents) = wait(app.shared.shadow_totals(version))?;
    let sum = totals.iter().fold(0i64, |s, t| s.saturating_add(t.count));
    Ok(html! {
        h2 { "Candidate rules (shadow version " (version) ")" }
        p #shadow-volume {
            "Predicted alert volume: " (sum) " would-be matches from " (agents)
            " reporting agents (before repeats are folded). Counts only: no text is collected in shadow mode."
        }
        table #shadow {
            thead { tr { th { "Rule" } th { "Would-be matches" } th { "Agents" } } }
            tbody {
                @for t in &totals { tr { td { (t.rule_id) } td { (t.count) } td { (t.agents) } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::platform;

    #[test]
    fn platform_is_named_from_the_agent_version() {
        assert_eq!(platform("0.1.0 chrome-extension cros"), "Chromebook");
        assert_eq!(platform("0.1.0 chrome-extension linux"), "Chrome on Linux");
        assert_eq!(platform("0.1.0 chrome-extension"), "Chrome");
        assert_eq!(platform("0.1.0"), "desktop agent");
        assert_eq!(platform("0.1.0 <b>"), "desktop agent");
        assert_eq!(platform(""), "-");
    }
}
