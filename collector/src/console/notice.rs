//! The monitoring notice in the console: the DSL and deputy DSLs write each
//! group's notice (a new version each time, audited); the reviewing roles
//! see who has and has not accepted the current version. Technicians and
//! auditors see neither (the lists name pupils). A school's account sees
//! and writes its school's notice of a group (its stations show the
//! trust's until it has one); a trust-wide account writes the trust's or
//! chooses a school.

use axum::response::Response;
use maud::{html, Markup};
use tutela_proto::limits::MAX_NOTICE_CHARS;

use super::auth::{Role, Viewer};
use super::html::{csrf, page, url_value};
use super::{deny, html_response, redirect, session, wait, App, Fail, FormLimit, Req};
use crate::notice::{self, Mode, NewNotice, NoticeError};
use crate::store::console::Console;
use crate::store::notice::StoredNotice;
use crate::store::StoreError;

/// 4,000 characters of any script, percent-encoded, and the other fields.
pub const FORM_LIMIT: FormLimit = FormLimit {
    bytes: 64 * 1024,
    instead: "A notice is limited to 4,000 characters: shorten it, and link to the full acceptable use policy instead of pasting it.",
    back: "/notices",
};

/// Who has and has not accepted `group`'s notice among the pupils of the
/// viewer's schools only (each school against the notice its stations show).
fn acceptance(app: &App, viewer: &Viewer, group: &str) -> Result<notice::Acceptance, StoreError> {
    let Some(ids) = viewer.school.schools() else {
        return wait(notice::acceptance_in(&app.shared, group));
    };
    let mut all = notice::Acceptance {
        group: group.to_owned(),
        ..Default::default()
    };
    for id in ids {
        let one = wait(notice::acceptance_at(&app.shared, group, id))?;
        all.version = all.version.max(one.version);
        all.accepted.extend(one.accepted);
        all.pending.extend(one.pending);
    }
    Ok(all)
}

fn writes_notices(viewer: &Viewer) -> bool {
    matches!(viewer.role, Role::Dsl | Role::DeputyDsl)
}

/// The 'Report a concern' address offered by default: the console's own.
fn default_concern_url(app: &App) -> String {
    crate::config::CollectorConfig::load(&app.data_dir.join("collector.toml"))
        .map(|c| format!("{}/concern", crate::mail::console_url(&c)))
        .unwrap_or_default()
}

pub fn page_handler(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.reviews() {
        return Err(deny(db, &viewer, "notices"));
    }
    let group = req.q("group").trim().to_owned();
    Ok(html_response(render(app, &viewer, &group, None)?))
}

/// What the form held when it was refused, to show it again.
struct Draft<'a> {
    text: &'a str,
    mode: &'a str,
    concern_url: &'a str,
    error: String,
}

fn render(
    app: &App,
    viewer: &Viewer,
    selected: &str,
    draft: Option<Draft<'_>>,
) -> Result<String, StoreError> {
    // What the viewer's stations show: one school's account its school's
    // notice of each group (else the trust's); others the trust's.
    let home = viewer.school.only_school().unwrap_or("");
    let notices = crate::store::notice::shown_at(wait(app.shared.current_notices())?, home);
    let several = super::exemptions::several_schools(app)?;
    // Groups with a notice or with enrolled stations, sorted.
    let mut groups: Vec<String> = notices.iter().map(|n| n.grp.clone()).collect();
    groups.extend(wait(app.shared.group_agents(""))?.groups);
    groups.sort();
    groups.dedup();
    let mut rows = Vec::with_capacity(groups.len());
    for g in &groups {
        let current = notices.iter().find(|n| &n.grp == g).cloned();
        rows.push((g, current, acceptance(app, viewer, g)?));
    }
    let section = if selected.is_empty() {
        None
    } else {
        let current = notices.iter().find(|n| n.grp == selected).cloned();
        Some(group_section(app, viewer, selected, current, draft)?)
    };
    let body = html! {
        h1 { "Monitoring notice" }
        p {
            "Each group's stations show its notice when a pupil signs in; the pupil must acknowledge it before the window closes. Each acknowledgement is signed by the station and kept here. A change makes a new version, which is shown again."
        }
        table #notices {
            thead { tr {
                th { "Group" } @if several { th { "School" } } th { "Version" } th { "Shown" } th { "Set by" } th { "Set at" }
                th { "Accepted" } th { "Not yet" }
            } }
            tbody {
                @for (g, current, acceptance) in &rows {
                    tr data-group=(g) {
                        td { a href={ "/notices?group=" (url_value(g)) } { (g) } }
                        @if several {
                            td.school { (current.as_ref().map_or("", |n| if n.school.is_empty() { "every school" } else { n.school.as_str() })) }
                        }
                        @match current {
                            Some(n) => {
                                td { (n.version) }
                                td { (Mode::parse(&n.mode).map_or("", Mode::describe)) }
                                td { (n.created_by) }
                                td { (app.zone.format(n.created_ms)) }
                            }
                            None => { td { "none" } td {} td {} td {} }
                        }
                        td.accepted { (acceptance.accepted.len()) }
                        td.pending { (acceptance.pending.len()) }
                    }
                }
            }
        }
        @if let Some(section) = section {
            (section)
        } @else if writes_notices(viewer) {
            form method="get" action="/notices" id="pick-group" {
                label { "Group " input name="group" required; } " " button type="submit" { "Open" }
            }
        }
    };
    Ok(page("Monitoring notice", Some(viewer), body))
}

fn group_section(
    app: &App,
    viewer: &Viewer,
    group: &str,
    current: Option<StoredNotice>,
    draft: Option<Draft<'_>>,
) -> Result<Markup, StoreError> {
    let acceptance = acceptance(app, viewer, group)?;
    let (text, mode, url, error) = match &draft {
        Some(d) => (
            d.text.to_owned(),
            d.mode.to_owned(),
            d.concern_url.to_owned(),
            Some(d.error.as_str()),
        ),
        None => match &current {
            Some(n) => (n.text.clone(), n.mode.clone(), n.concern_url.clone(), None),
            None if writes_notices(viewer) => (
                String::new(),
                Mode::EverySignIn.as_str().to_owned(),
                default_concern_url(app),
                None,
            ),
            None => (String::new(), String::new(), String::new(), None),
        },
    };
    let schools = if writes_notices(viewer) {
        super::exemptions::choosable(app, viewer)?
    } else {
        Vec::new()
    };
    let option = |m: Mode| {
        html! { option value=(m.as_str()) selected[mode == m.as_str()] { (m.describe()) } }
    };
    Ok(html! {
        h2 #group { "Group " (group) }
        @match &current {
            Some(n) => {
                p {
                    "Version " span #version { (n.version) } ", shown "
                    (Mode::parse(&n.mode).map_or("", Mode::describe)) "."
                }
                pre #current-text { (n.text) }
                @if !n.concern_url.is_empty() {
                    p { "Report a concern: " span #current-url { (n.concern_url) } }
                }
            }
            None => p #version-none { "This group has no notice yet: its stations show nothing." },
        }
        h3 { "Accepted the current version" }
        table #accepted {
            thead { tr { th { "Pupil" } th { "Station" } th { "When" } } }
            tbody {
                @for s in &acceptance.accepted {
                    tr {
                        td.user { (s.user) } td { (s.station) }
                        td { (s.time_ms.map(|t| app.zone.format(t)).unwrap_or_default()) }
                    }
                }
            }
        }
        h3 { "Not yet accepted" }
        table #pending {
            thead { tr { th { "Pupil" } th { "Last version accepted" } } }
            tbody {
                @for s in &acceptance.pending {
                    tr {
                        td.user { (s.user) }
                        td { @if s.version == 0 { "none" } @else { (s.version) } }
                    }
                }
            }
        }
        p {
            "Pupils are listed once they have signed in on one of the group's stations since the notice began, or are named by an alert from one."
        }
        @if writes_notices(viewer) {
            @if let Some(e) = error { p.error #notice-error { (e) } }
            h2 { "Set a new version" }
            form method="post" action="/notices" id="set-notice" {
                (csrf(viewer)) "\n"
                input type="hidden" name="group" value=(group); "\n"
                @if !schools.is_empty() {
                    label { "For " select name="school" {
                        @for s in &schools { option value=(s.id) { (s.name) } }
                    } } "\n"
                }
                label {
                    "Notice (plain text, at most " (MAX_NOTICE_CHARS) " characters; addresses in it are shown as they are)"
                    br;
                    textarea name="text" rows="12" cols="80" required { (text) }
                }
                br; "\n"
                label {
                    "Shown "
                    select name="mode" { (option(Mode::EverySignIn)) (option(Mode::OncePerVersion)) }
                }
                "\n"
                label { "'Report a concern' address " input name="concern_url" size="50" value=(url); }
                "\n"
                button type="submit" { "Publish new version" }
            }
        }
    })
}

pub fn submit(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !writes_notices(&viewer) {
        return Err(deny(db, &viewer, "notices: set"));
    }
    let Some(school) = super::exemptions::chosen_school(&viewer, req.f("school")) else {
        return Err(deny(db, &viewer, "notices: set for another school"));
    };
    let group = req.f("group").trim();
    let refused = |error: String| -> Result<Response, Fail> {
        let draft = Draft {
            text: req.f("text"),
            mode: req.f("mode"),
            concern_url: req.f("concern_url"),
            error,
        };
        Ok(super::with_status(
            axum::http::StatusCode::BAD_REQUEST,
            html_response(render(app, &viewer, group, Some(draft))?),
        ))
    };
    let Some(mode) = Mode::parse(req.f("mode")) else {
        return refused(NoticeError::BadMode.to_string());
    };
    let key = crate::secrets::load_signing_key(&app.data_dir).map_err(|e| {
        tracing::error!(error = %e, "cannot load the rule-signing key");
        Fail::BadRequest(
            "The collector cannot read its signing key; check signing.key in its data directory."
                .into(),
        )
    })?;
    let new = NewNotice {
        group: group.to_owned(),
        text: req.f("text").to_owned(),
        mode,
        concern_url: req.f("concern_url").to_owned(),
        created_by: viewer.name.clone(),
        school,
    };
    match wait(notice::set_in(&app.shared, &key, &new)) {
        Ok(_) => Ok(redirect(&format!("/notices?group={}", url_value(group)))),
        Err(NoticeError::Db(e)) => Err(Fail::Db(e)),
        Err(NoticeError::Store(e)) => Err(Fail::Store(e)),
        Err(e) => refused(e.to_string()),
    }
}
