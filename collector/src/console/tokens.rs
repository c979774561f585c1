//! Enrolment tokens in the console: technicians (and the DSL roles) make a
//! token for a group with an expiry and a number of uses, see every token's
//! state (never its secret, which is shown once, when made) and revoke one.
//! Every creation and revocation is audited. A trust-wide account chooses
//! the school a token enrols into; a school's account makes its school's.

use crate::store::console::Console;
use axum::response::Response;
use maud::{html, Markup};

use super::html::{csrf, page};
use super::publish::may_publish;
use super::{deny, html_response, redirect, session, App, Fail, Req};
use crate::enrolment::{self, TokenSpec};
use crate::store::now_ms;
use crate::store::schools::{Scope, DEFAULT_SCHOOL};
use crate::store::users::Audited;

/// Longest validity a console token may have.
const MAX_VALID_MS: i64 = 90 * 86_400_000;

pub fn list_page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_publish(viewer.role) {
        return Err(deny(db, &viewer, "tokens"));
    }
    Ok(html_response(page(
        "Enrolment tokens",
        Some(&viewer),
        render(app, db, &viewer, None)?,
    )))
}

fn render(
    app: &App,
    db: &Console<'_>,
    viewer: &super::auth::Viewer,
    error: Option<&str>,
) -> Result<Markup, crate::store::StoreError> {
    let now = now_ms();
    let listed = db.tokens(&viewer.school)?;
    // Only an account over several schools (or the trust) chooses, among
    // its schools; a school's tokens are its own.
    let schools = match &viewer.school {
        Scope::School(_) => Vec::new(),
        scope => db
            .schools()?
            .into_iter()
            .filter(|s| scope.allows(&s.id))
            .collect(),
    };
    let schools = if schools.len() > 1 {
        schools
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { "Enrolment tokens" }
        @if let Some(e) = error { p.error { (e) } }
        table #tokens {
            thead { tr {
                th { "Id" } th { "State" }
                @if !schools.is_empty() { th { "School" } }
                th { "Group" } th { "Uses" } th { "Expires" } th { "Label" } th {}
            } }
            tbody {
                @for t in &listed {
                    @let state = t.state(now);
                    tr data-token=(t.id) {
                        td { (t.id) } td { (state) }
                        @if !schools.is_empty() { td.school { (t.school) } }
                        td { (if t.group.is_empty() { "-" } else { &t.group }) }
                        td { (t.uses) "/" (t.max_uses) }
                        td { (app.zone_of(&t.school).format(t.expires_ms)) } td { (t.label) }
                        td {
                            @if state == "valid" {
                                form method="post" action="/tokens/revoke" class="inline" {
                                    (csrf(viewer))
                                    input type="hidden" name="id" value=(t.id);
                                    button type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Make a token" }
        form method="post" action="/tokens/create" id="create-token" {
            (csrf(viewer)) "\n"
            @if !schools.is_empty() {
                label { "School "
                    select name="school" required {
                        @for s in &schools {
                            option value=(s.id) selected[s.id == DEFAULT_SCHOOL] { (s.name) " (" (s.id) ")" }
                        }
                    }
                } "\n"
            }
            label { "Group " input name="group" required; } "\n"
            label { "Valid for " input name="expires" value="24h" size="6"; } "\n"
            label { "Uses " input name="uses" value="1" size="4"; } "\n"
            label { "Label " input name="label"; } "\n"
            button type="submit" { "Make token" }
        }
    };
    Ok(body)
}

pub fn create(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_publish(viewer.role) {
        return Err(deny(db, &viewer, "tokens: create"));
    }
    let now = now_ms();
    let valid_for = crate::exemption::parse_until(req.f("expires"), now)
        .ok()
        .map(|end| end - now)
        .filter(|ms| (1..=MAX_VALID_MS).contains(ms));
    let uses = req
        .f("uses")
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|u| (1..=1000).contains(u));
    let group = req.f("group").trim();
    let label = req.f("label").trim();
    // A school's account makes its own school's tokens, whatever the form
    // says; one over several schools names one of them; a trust-wide one
    // names an existing school (the only one, when there is one).
    let school = match &viewer.school {
        Scope::School(id) => Some(id.clone()),
        Scope::Several(ids) => {
            let id = req.f("school").trim();
            ids.iter().find(|s| *s == id).cloned()
        }
        Scope::Trust => {
            let schools = db.schools()?;
            let id = req.f("school").trim();
            match &schools[..] {
                [only] if id.is_empty() => Some(only.id.clone()),
                _ => schools.into_iter().find(|s| s.id == id).map(|s| s.id),
            }
        }
    };
    let problem = match (valid_for, uses) {
        _ if school.is_none() => Some("Choose the school the token enrols devices into (from the list); ask for a new school with `tutela-collector schools add`."),
        _ if group.is_empty() || group.len() > 100 || label.len() > 200 => {
            Some("Give a group (at most 100 characters) and a label of at most 200.")
        }
        (None, _) => Some("Valid for: a duration such as 30m, 24h or 7d, at most 90 days."),
        (_, None) => Some("Uses: a number from 1 to 1000."),
        _ => None,
    };
    if let Some(p) = problem {
        return Ok(html_response(page(
            "Enrolment tokens",
            Some(&viewer),
            render(app, db, &viewer, Some(p))?,
        )));
    }
    let (Some(valid_for_ms), Some(max_uses), Some(school)) = (valid_for, uses, school) else {
        return Err(Fail::BadRequest("invalid token request".into()));
    };
    let config = crate::config::CollectorConfig::load(&app.data_dir.join("collector.toml"))
        .map_err(|e| Fail::BadRequest(e.to_string()))?;
    let tls = crate::secrets::load_tls(&app.data_dir).map_err(|e| {
        tracing::error!(error = %e, "cannot read the collector certificate");
        Fail::BadRequest(
            "The collector cannot read its certificate; check its data directory.".into(),
        )
    })?;
    let (mut token, row) = enrolment::new_token(
        &TokenSpec {
            valid_for_ms,
            max_uses,
            group: group.to_owned(),
            label: label.to_owned(),
            school: school.clone(),
        },
        &config.advertised(),
        &tls.fingerprint,
    );
    db.create_token(
        &row,
        &Audited {
            actor: &viewer.name,
            action: "token-create",
            target: &format!("group:{group}"),
            detail: &format!(
                "{max_uses} uses, valid {} s, label {label}, school {school}",
                valid_for_ms / 1000
            ),
        },
    )?;
    token.fallbacks = config.advertise_also;
    let text = token.encode();
    let body = html! {
        h1 { "Token made" }
        p { "Copy it now: it is not shown again. On each device, as an administrator:" }
        pre #token { "tutela-agent enrol '" (text) "'" }
        p { "School " (school) ", group " (group) ", " (max_uses) " uses, valid until " (app.zone_of(&school).format(token.expires_ms)) "." }
        p { a href="/tokens" { "Back to tokens" } }
    };
    Ok(html_response(page("Token made", Some(&viewer), body)))
}

pub fn revoke(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_publish(viewer.role) {
        return Err(deny(db, &viewer, "tokens: revoke"));
    }
    match enrolment::token_by_prefix(&db.tokens(&viewer.school)?, req.f("id")) {
        Ok(id) => {
            db.revoke_token(
                &id,
                &Audited {
                    actor: &viewer.name,
                    action: "token-revoke",
                    target: &format!("token:{id}"),
                    detail: "",
                },
            )?;
            tracing::info!(token = %id, "enrolment token revoked");
            Ok(redirect("/tokens"))
        }
        Err(e) => Ok(html_response(page(
            "Enrolment tokens",
            Some(&viewer),
            render(app, db, &viewer, Some(&e.to_string()))?,
        ))),
    }
}
