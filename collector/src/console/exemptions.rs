//! Curriculum exemptions in the console: the DSL and deputy DSLs add and
//! revoke them (each change is audited); technicians and the head teacher
//! may view the list.

use std::fmt::Write;

use axum::response::Response;
use rusqlite::Connection;

use super::auth::{Role, Viewer};
use super::html::{csrf_field, esc, page};
use super::{deny, html_response, redirect, session, App, Fail, Req};
use crate::exemption::{self, NewExemption};
use crate::store::now_ms;

fn owns_exemptions(viewer: &Viewer) -> bool {
    matches!(viewer.role, Role::Dsl | Role::DeputyDsl)
}

/// Parses the form's end: a local `YYYY-MM-DDTHH:MM` (a datetime-local
/// field, in the school's time zone), an RFC 3339 time or a duration (`7d`).
fn parse_end(app: &App, text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = exemption::parse_until(text, now) {
        return Ok(ms);
    }
    app.zone.wall_clock_ms(text).ok_or_else(|| {
        format!("`{text}` is not an end time; use the date picker, a time like 2026-11-27T15:30:00Z or a duration like 7d")
    })
}

pub fn list_page(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !viewer.role.sees_fleet() {
        return Err(deny(conn, &viewer, "exemptions"));
    }
    Ok(html_response(render(app, conn, &viewer, None)?))
}

fn render(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    error: Option<&str>,
) -> rusqlite::Result<String> {
    let now = now_ms();
    let mut body = String::from(
        "<h1>Curriculum exemptions</h1><p>While an exemption runs, matches of its category or term raise no alert on that group's stations. It ends by itself.</p>",
    );
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error">{}</p>"#, esc(e));
    }
    body.push_str(
        r#"<table id="exemptions"><thead><tr><th>#</th><th>State</th><th>Group</th><th>Exempt</th><th>From</th><th>Until</th><th>By</th><th>Reason</th><th></th></tr></thead><tbody>"#,
    );
    for e in exemption::list(conn)? {
        let state = e.state(now);
        let action = if owns_exemptions(viewer) && matches!(state, "active" | "scheduled") {
            format!(
                r#"<form method="post" action="/exemptions/{}/revoke" class="inline">{}<button type="submit">Revoke</button></form>"#,
                e.id,
                csrf_field(viewer)
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            r#"<tr data-id="{}" class="{state}"><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>"#,
            e.id,
            e.id,
            esc(&e.grp),
            esc(&e.target()),
            esc(&app.zone.format(e.starts_ms)),
            esc(&app.zone.format(e.ends_ms)),
            esc(&e.created_by),
            esc(&e.reason),
        );
    }
    body.push_str("</tbody></table>");
    if owns_exemptions(viewer) {
        let groups: Vec<String> = conn
            .prepare("SELECT DISTINCT grp FROM agents WHERE grp <> '' ORDER BY grp")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut options = String::new();
        for g in &groups {
            let _ = write!(options, r#"<option value="{}">"#, esc(g));
        }
        let _ = write!(
            body,
            r#"<h2>Add an exemption</h2><form method="post" action="/exemptions/add" id="add-exemption">{}
<label>Group <input name="group" list="groups" required></label><datalist id="groups">{options}</datalist>
<label>Category <input name="category"></label> or <label>term <input name="term"></label>
<label>Until <input name="until" type="datetime-local" required></label>
<label>Reason <input name="reason" required size="40"></label>
<button type="submit">Add</button></form>"#,
            csrf_field(viewer)
        );
    }
    Ok(page("Exemptions", Some(viewer), &body))
}

pub fn add(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !owns_exemptions(&viewer) {
        return Err(deny(conn, &viewer, "exemptions: add"));
    }
    let now = now_ms();
    let ends_ms = match parse_end(app, req.f("until"), now) {
        Ok(ms) => ms,
        Err(e) => return Ok(html_response(render(app, conn, &viewer, Some(&e))?)),
    };
    let new = NewExemption {
        group: req.f("group").to_owned(),
        category: req.f("category").to_owned(),
        term: req.f("term").to_owned(),
        reason: req.f("reason").to_owned(),
        created_by: viewer.name.clone(),
        starts_ms: now,
        ends_ms,
    };
    match exemption::add(conn, &new) {
        Ok(_) => Ok(redirect("/exemptions")),
        Err(exemption::ExemptionError::Db(e)) => Err(Fail::Db(e)),
        Err(e) => Ok(html_response(render(
            app,
            conn,
            &viewer,
            Some(&e.to_string()),
        )?)),
    }
}

pub fn revoke(_app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !owns_exemptions(&viewer) {
        return Err(deny(conn, &viewer, "exemptions: revoke"));
    }
    match exemption::revoke(conn, req.id(), &viewer.name) {
        Ok(()) => Ok(redirect("/exemptions")),
        Err(exemption::ExemptionError::NotFound(_)) => Err(Fail::NotFound),
        Err(exemption::ExemptionError::Db(e)) => Err(Fail::Db(e)),
        Err(e) => Err(Fail::BadRequest(e.to_string())),
    }
}
