//! A school's own settings on the Settings page: its time zone (the weekly
//! summary's week, the console's times for its accounts) and its retention
//! of closed alerts, each the trust's (collector.toml) until set. The rule
//! is the Settings page's, per scope: a DSL changes them, a trust-wide DSL
//! for any school, a school's DSL for the schools of its grant; every
//! change is audited (`school_settings`).

use std::collections::HashMap;

use axum::response::Response;
use maud::{html, Markup};

use super::auth::{token_hash, Role, Viewer, SESSION_COOKIE};
use super::html::csrf;
use super::tz::Zone;
use super::{deny, redirect, session, App, Fail, Req};
use crate::schools::{checked_retention, checked_time_zone};
use crate::store::console::Console;
use crate::store::schools::{School, Scope, SettingsChange, MAX_RETENTION_MONTHS};
use crate::store::users::Audited;
use crate::store::StoreError;

/// The zones of a signed-in request's pages: the account's own (its
/// school's, when its grant is of one school with a zone of its own; else
/// `None`: the trust's), which its date filters are read in, and every
/// school's own zone by id, which each alert's and audit entry's time is
/// shown in (an account over several schools or the trust sees each
/// school's in that school's time). `None` without a session.
pub fn zones_of_session(
    db: &Console<'_>,
    req: &Req,
) -> Option<(Option<Zone>, HashMap<String, Zone>)> {
    let token = req.cookie(SESSION_COOKIE)?;
    let row = db.session(&token_hash(token)).ok()??;
    let zones: HashMap<String, Zone> = db
        .schools()
        .ok()?
        .into_iter()
        .filter(|s| !s.time_zone.is_empty())
        .filter_map(|s| Some((s.id, Zone::parse(&s.time_zone).ok()?)))
        .collect();
    let own = Scope::from_grant(&row.school)
        .only_school()
        .and_then(|id| zones.get(id).cloned());
    Some((own, zones))
}

/// Whether the viewer may change school settings at all (the same role as
/// the trust's settings).
pub fn may_change(viewer: &Viewer) -> bool {
    viewer.role == Role::Dsl && !viewer.school.is_none()
}

/// The schools whose settings the viewer may change.
pub fn schools_of(db: &Console<'_>, viewer: &Viewer) -> Result<Vec<School>, StoreError> {
    Ok(db
        .schools()?
        .into_iter()
        .filter(|s| viewer.school.allows(&s.id))
        .collect())
}

/// The section of the Settings page: one form per school.
pub fn section(app: &App, schools: &[School], viewer: &Viewer) -> Markup {
    html! {
        h2 { "Each school's own settings" } "\n"
        p.muted {
            "Unset (an empty time zone, 0 months), a school keeps the trust's time zone \
             ([console] time_zone) and retention (closed alerts kept " (app.retention_months)
            " months). A time zone is an IANA name such as Europe/London, UTC, or an offset \
             such as +01:00. Changes are recorded in the audit log."
        }
        table #school-settings {
            thead { tr { th { "School" } th { "Time zone" } th { "Keep closed alerts (months)" } th {} } }
            tbody {
                @for s in schools {
                    tr {
                        td { (s.name) " (" (s.id) ")" }
                        td colspan="3" {
                            form method="post" action="/settings/school" class="inline" {
                                (csrf(viewer))
                                input type="hidden" name="school" value=(s.id);
                                input type="text" name="time_zone" value=(s.time_zone)
                                    placeholder="the trust's";
                                " "
                                input type="number" name="retention_months" min="0"
                                    max=(MAX_RETENTION_MONTHS) value=(s.retention_months)
                                    title="0 keeps the trust's";
                                " "
                                button type="submit" { "Save " (s.id) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /settings/school`: sets a school's time zone and retention (empty
/// and 0 give them back to the trust's), checked first; another school than
/// the grant's answers 404 as one that does not exist.
pub fn submit(_app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_change(&viewer) {
        return Err(deny(db, &viewer, "settings: school"));
    }
    let school = req.f("school");
    if !viewer.school.allows(school) {
        return Err(Fail::NotFound);
    }
    let time_zone = checked_time_zone(req.f("time_zone")).map_err(|e| {
        Fail::BadRequest(format!("The school's time zone: {e}. Nothing was changed."))
    })?;
    let months_text = req.f("retention_months").trim();
    let months = if months_text.is_empty() {
        0
    } else {
        months_text.parse::<u32>().map_err(|_| {
            Fail::BadRequest(format!(
                "Keep closed alerts for a whole number of months, 1-{MAX_RETENTION_MONTHS} (0 for the trust's). Nothing was changed."
            ))
        })?
    };
    let months = checked_retention(months)
        .map_err(|e| Fail::BadRequest(format!("{e}. Nothing was changed.")))?;
    let change = SettingsChange {
        time_zone: Some(&time_zone),
        retention_months: Some(months),
    };
    let detail = change.detail(school);
    let target = format!("school:{school}");
    let found = db.set_school_settings(
        school,
        &change,
        &Audited {
            actor: &viewer.name,
            action: "school_settings",
            target: &target,
            detail: &detail,
        },
    )?;
    if !found {
        return Err(Fail::NotFound);
    }
    tracing::info!(account = %viewer.name, school, "a school's settings changed");
    Ok(redirect("/settings"))
}
