//! Reviewing alerts: state changes along the workflow (false positives
//! with a reason, one at a time or in bulk), assignment, notes, and each
//! rule's false-positive rate. Every change is one store call with its
//! history and audit entry.

use axum::response::Response;
use maud::html;

use super::alert::{load, next_states, percent, reviewer, Alert};
use super::auth;
use super::html::page as layout;
use super::queue::{state_label, STATES};
use super::{html_response, redirect, staff, App, Fail, Req};
use crate::store::console::Console;
use crate::store::now_ms;
use crate::store::review::Transition;

/// The longest reason (for a reveal or a false positive) the console takes:
/// it goes into the audit log and the state history. Details belong in a note.
pub const MAX_REASON_BYTES: usize = 1024;

/// Refuses a reason longer than [`MAX_REASON_BYTES`].
pub fn check_reason(reason: &str) -> Result<(), Fail> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(Fail::BadRequest(format!(
            "The reason is too long ({} bytes): keep it to at most {MAX_REASON_BYTES} bytes (about 1,000 letters) and put any detail in a note on the alert.",
            reason.len()
        )));
    }
    Ok(())
}

/// Checks that the workflow lets `alert` move to `to` (false positives need
/// a reason); the move itself is the store's, with its history and audit.
pub fn transition<'a>(
    alert: &'a Alert,
    to: &'a str,
    reason: &'a str,
) -> Result<Transition<'a>, Fail> {
    if !next_states(&alert.state).contains(&to) {
        return Err(Fail::BadRequest(format!(
            "An alert that is {} cannot become {}.",
            state_label(&alert.state),
            state_label(to)
        )));
    }
    let reason = reason.trim();
    if to == "false_positive" && reason.is_empty() {
        return Err(Fail::BadRequest("Say why this is a false positive.".into()));
    }
    check_reason(reason)?;
    Ok(Transition {
        alert_id: alert.id,
        from: &alert.state,
        to,
        reason,
    })
}

pub fn change_state(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    if !STATES.iter().any(|(s, _)| *s == req.f("to")) {
        return Err(Fail::BadRequest("Unknown state.".into()));
    }
    let t = transition(&alert, req.f("to"), req.f("reason"))?;
    if db.transitions(&viewer.name, &[t], now_ms(), None)? == 0 {
        return Err(Fail::Conflict(
            "Someone else changed this alert's state meanwhile; reload the alert to see it.".into(),
        ));
    }
    Ok(redirect(&format!("/alerts/{}", alert.id)))
}

pub fn assign(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    let who = req.f("assignee");
    if !who.is_empty()
        && !auth::reviewers(db, viewer.role.sees_staff_alerts(), &alert.school)?
            .iter()
            .any(|p| p == who)
    {
        return Err(Fail::BadRequest(
            "That account cannot be assigned this alert.".into(),
        ));
    }
    db.assign(&viewer.name, alert.id, who, now_ms())?;
    Ok(redirect(&format!("/alerts/{}", alert.id)))
}

pub fn add_note(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    let text = req.f("text").trim();
    if text.is_empty() || text.len() > 20_000 {
        return Err(Fail::BadRequest(
            "A note needs text (at most 20,000 characters).".into(),
        ));
    }
    db.add_note(&viewer.name, alert.id, text, now_ms())?;
    Ok(redirect(&format!("/alerts/{}#notes", alert.id)))
}

pub fn bulk_false_positive(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let reason = req.f("reason").trim();
    if reason.is_empty() {
        return Err(Fail::BadRequest(
            "Say why these are false positives.".into(),
        ));
    }
    check_reason(reason)?;
    let ids: Vec<i64> = req
        .f_all("id")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut alerts = Vec::new();
    for id in &ids {
        let Ok(alert) = load(app, db, &viewer, *id) else {
            continue;
        };
        if next_states(&alert.state).contains(&"false_positive") {
            alerts.push(alert);
        }
    }
    let moves = alerts
        .iter()
        .map(|a| transition(a, "false_positive", reason))
        .collect::<Result<Vec<_>, _>>()?;
    let selected = ids.len();
    let closing = |closed: usize| {
        (
            "bulk_false_positive".to_owned(),
            "queue".to_owned(),
            format!("{closed} of {selected} selected alerts; reason: {reason}"),
        )
    };
    db.transitions(&viewer.name, &moves, now_ms(), Some(&closing))?;
    Ok(redirect("/queue"))
}

/// Each rule's alerts and false-positive rate.
pub fn rules_page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    // Only the alerts in the viewer's scope, as in the queue: the head's
    // staff alerts do not show in the DSL's figures, nor pupils' in the head's.
    let rows = db.rule_rates(&staff::of(&viewer, &app.staff_pattern))?;
    let body = html! {
        h1 { "Rules: false-positive rates" }
        p.muted { "The neutral id is what a technician's category-only queue shows for the rule." }
        table #rules {
            thead { tr {
                th { "Rule" } th { "Category" } th { "Alerts" } th { "False positives" } th { "Rate" }
                th { "Neutral id" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.rule_id) } td { (r.category) } td { (r.total) } td { (r.false_positives) }
                        td { (percent(r.false_positives, r.total)) }
                        td { (super::settings::neutral_rule_id(&app.rule_key, &r.rule_id)) }
                    }
                }
            }
        }
    };
    Ok(html_response(layout("Rules", Some(&viewer), body)))
}
