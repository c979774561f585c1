//! Curriculum exemptions in the console: the DSL and deputy DSLs add and
//! revoke them (each change is audited); technicians and the head teacher
//! may view the list. An exemption holds for one school or for every
//! school of the trust: a school's account sees its school's and the
//! trust-wide ones and changes only its school's; a trust-wide account
//! chooses the school (or the trust) and changes any.

use axum::response::Response;
use maud::html;

use super::auth::{Role, Viewer};
use super::html::{csrf, page};
use super::{deny, html_response, redirect, session, wait, App, Fail, Req};
use crate::exemption::{self, NewExemption};
use crate::store::console::Console;
use crate::store::schools::{School, Scope};
use crate::store::{now_ms, StoreError};

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

pub fn list_page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.sees_fleet() {
        return Err(deny(db, &viewer, "exemptions"));
    }
    Ok(html_response(render(app, &viewer, None)?))
}

/// Whether the trust has more than one school (only then are schools
/// shown and chosen: a single school's pages stay as before schools).
pub(super) fn several_schools(app: &App) -> Result<bool, StoreError> {
    Ok(wait(app.shared.schools())?.len() > 1)
}

/// The schools an account may set exemptions for, to choose from: none
/// for one school's account (its own is taken) or while the trust has one
/// school (trust-wide then); '' (every school) first for a trust-wide one.
pub(super) fn choosable(app: &App, viewer: &Viewer) -> Result<Vec<School>, StoreError> {
    let all = wait(app.shared.schools())?;
    if all.len() < 2 {
        return Ok(Vec::new());
    }
    let mut schools: Vec<School> = match &viewer.school {
        Scope::School(_) => return Ok(Vec::new()),
        scope => all.into_iter().filter(|s| scope.allows(&s.id)).collect(),
    };
    if viewer.trust_wide() {
        schools.insert(
            0,
            School {
                id: String::new(),
                name: "Every school (the trust)".into(),
                ..School::default()
            },
        );
    }
    Ok(schools)
}

/// The school a new exemption (or notice) holds for: a school's account's own, else
/// one the account may choose ('' for the trust: trust-wide accounts
/// only); `None` when the form names another.
pub(super) fn chosen_school(viewer: &Viewer, asked: &str) -> Option<String> {
    let asked = asked.trim();
    match &viewer.school {
        Scope::School(id) => Some(id.clone()),
        Scope::Several(ids) => ids.iter().find(|s| *s == asked).cloned(),
        Scope::Trust => Some(asked.to_owned()),
    }
}

fn render(app: &App, viewer: &Viewer, error: Option<&str>) -> Result<String, StoreError> {
    let now = now_ms();
    let exemptions = wait(app.shared.exemptions(&viewer.school))?;
    let owns = owns_exemptions(viewer);
    let schools = if owns {
        choosable(app, viewer)?
    } else {
        Vec::new()
    };
    let several = several_schools(app)?;
    let groups: Vec<String> = if owns {
        wait(app.shared.group_agents(""))?.groups
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { "Curriculum exemptions" }
        p { "While an exemption runs, matches of its category or term raise no alert on that group's stations. It ends by itself." }
        @if let Some(e) = error { p.error { (e) } }
        table #exemptions {
            thead { tr {
                th { "#" } th { "State" } @if several { th { "School" } } th { "Group" } th { "Exempt" } th { "From" } th { "Until" }
                th { "By" } th { "Reason" } th {}
            } }
            tbody {
                @for e in &exemptions {
                    @let state = e.state(now);
                    tr data-id=(e.id) data-school=(e.school) class=(state) {
                        td { (e.id) } td { (state) }
                        @if several {
                            td.school { @if e.school.is_empty() { "every school" } @else { (e.school) } }
                        }
                        td { (e.grp) } td { (e.target()) }
                        td { (app.zone_of(&e.school).format(e.starts_ms)) } td { (app.zone_of(&e.school).format(e.ends_ms)) }
                        td { (e.created_by) } td { (e.reason) }
                        td {
                            @if owns && matches!(state, "active" | "scheduled")
                                && (viewer.trust_wide() || !e.school.is_empty()) {
                                form method="post" action={ "/exemptions/" (e.id) "/revoke" } class="inline" {
                                    (csrf(viewer))
                                    button type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if owns {
            h2 { "Add an exemption" }
            form method="post" action="/exemptions/add" id="add-exemption" {
                (csrf(viewer)) "\n"
                @if !schools.is_empty() {
                    label { "School " select name="school" {
                        @for s in &schools { option value=(s.id) { (s.name) } }
                    } } "\n"
                }
                label { "Group " input name="group" list="groups" required; }
                datalist id="groups" { @for g in &groups { option value=(g); } } "\n"
                label { "Category " input name="category"; } " or " label { "term " input name="term"; } "\n"
                label { "Until " input name="until" type="datetime-local" required; } "\n"
                label { "Reason " input name="reason" required size="40"; } "\n"
                button type="submit" { "Add" }
            }
        }
    };
    Ok(page("Exemptions", Some(viewer), body))
}

pub fn add(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !owns_exemptions(&viewer) {
        return Err(deny(db, &viewer, "exemptions: add"));
    }
    let Some(school) = chosen_school(&viewer, req.f("school")) else {
        return Err(deny(db, &viewer, "exemptions: add for another school"));
    };
    let now = now_ms();
    let ends_ms = match parse_end(app, req.f("until"), now) {
        Ok(ms) => ms,
        Err(e) => return Ok(html_response(render(app, &viewer, Some(&e))?)),
    };
    let new = NewExemption {
        group: req.f("group").to_owned(),
        category: req.f("category").to_owned(),
        term: req.f("term").to_owned(),
        reason: req.f("reason").to_owned(),
        created_by: viewer.name.clone(),
        starts_ms: now,
        ends_ms,
        school,
    };
    match wait(exemption::add_to(&app.shared, &new)) {
        Ok(_) => Ok(redirect("/exemptions")),
        Err(exemption::ExemptionError::Db(e)) => Err(Fail::Db(e)),
        Err(exemption::ExemptionError::Store(e)) => Err(Fail::Store(e)),
        Err(e) => Ok(html_response(render(app, &viewer, Some(&e.to_string()))?)),
    }
}

pub fn revoke(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !owns_exemptions(&viewer) {
        return Err(deny(db, &viewer, "exemptions: revoke"));
    }
    match wait(exemption::revoke_in(
        &app.shared,
        &viewer.school,
        req.id(),
        &viewer.name,
    )) {
        Ok(()) => Ok(redirect("/exemptions")),
        Err(exemption::ExemptionError::NotFound(_)) => Err(Fail::NotFound),
        Err(exemption::ExemptionError::TrustWide(id)) => {
            Err(deny(db, &viewer, &format!("exemption:{id} (trust-wide)")))
        }
        Err(exemption::ExemptionError::Db(e)) => Err(Fail::Db(e)),
        Err(exemption::ExemptionError::Store(e)) => Err(Fail::Store(e)),
        Err(e) => Err(Fail::BadRequest(e.to_string())),
    }
}
