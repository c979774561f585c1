//! Rule publishing from the console: a technician pastes or edits a pack,
//! checks it (lint findings, the terms added and removed against the live
//! version, whether the version is newer) and publishes it live or in
//! shadow. The same checks as `tutela-collector rules push`; every
//! publication is audited.

use axum::response::Response;
use maud::html;

use super::auth::{Role, Viewer};
use super::html::{csrf, page};
use super::{deny, html_response, session, wait, App, Fail, Req};
use crate::publish::{self, CheckReport, PublishError};
use crate::store::console::Console;
use crate::store::exemption::AuditNote;

/// A whole pack, pasted: far more than the console's default form limit
/// (the shipped en-GB pack is about 130 KB, and more once form-encoded).
pub const FORM_LIMIT: super::FormLimit = super::FormLimit {
    bytes: 2 * 1024 * 1024,
    instead: "Publish a pack this large on the collector with `tutela-collector rules push FILE` (add --shadow for a candidate pack).",
    back: "/rules/publish",
};

/// Technicians manage rules; the DSL and deputies may too.
pub fn may_publish(role: Role) -> bool {
    matches!(role, Role::Technician | Role::Dsl | Role::DeputyDsl)
}

pub fn page_handler(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    // A publication reaches every school's agents.
    if !may_publish(viewer.role) || !viewer.trust_wide() {
        return Err(deny(db, &viewer, "rules: publish"));
    }
    let live = wait(app.shared.latest_bundle(false))?.map(|b| b.pack_toml);
    Ok(html_response(render(
        app,
        &viewer,
        live.as_deref().unwrap_or(""),
        false,
        None,
        None,
    )))
}

pub fn submit(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    // A publication reaches every school's agents.
    if !may_publish(viewer.role) || !viewer.trust_wide() {
        return Err(deny(db, &viewer, "rules: publish"));
    }
    let text = req.f("pack").replace("\r\n", "\n");
    let shadow = req.f("shadow") == "on";
    let report = match wait(publish::check_in(&app.shared, &text, "pack", shadow)) {
        Ok(r) => r,
        Err(PublishError::Db(e)) => return Err(Fail::Db(e)),
        Err(PublishError::Store(e)) => return Err(Fail::Store(e)),
        Err(e) => {
            return Ok(html_response(render(
                app,
                &viewer,
                &text,
                shadow,
                None,
                Some(&e.to_string()),
            )))
        }
    };
    if req.f("action") != "publish" {
        return Ok(html_response(render(
            app,
            &viewer,
            &text,
            shadow,
            Some(&report),
            None,
        )));
    }
    let key = crate::secrets::load_signing_key(&app.data_dir).map_err(|e| {
        tracing::error!(error = %e, "cannot load the rule-signing key");
        Fail::BadRequest(
            "The collector cannot read its rule-signing key; check signing.key in its data directory."
                .into(),
        )
    })?;
    // The publication and its audit entry commit together, or neither does.
    let kind = if shadow { "shadow" } else { "live" };
    let note = AuditNote {
        actor: viewer.name.clone(),
        action: "rules-publish",
        target: format!("rules:{}:{}", report.pack_id, report.version),
        detail: format!(
            "{kind}; added {}; removed {}",
            rule_list(&report.added),
            rule_list(&report.removed)
        ),
    };
    let published = wait(publish::publish_checked_to(
        &app.shared,
        &key,
        &text,
        shadow,
        report.clone(),
        &note,
    ));
    match published {
        Ok(done) => {
            let body = html! {
                h1 { "Rules published" }
                p #published {
                    "Published " (kind) " version " (done.version) " of " (report.pack_id)
                    ". Connected agents receive it now; others when they reconnect. See "
                    a href="/fleet" { "Fleet" } " for the versions agents report."
                }
            };
            Ok(html_response(page("Rules published", Some(&viewer), body)))
        }
        Err(PublishError::Db(e)) => Err(Fail::Db(e)),
        Err(PublishError::Store(e)) => Err(Fail::Store(e)),
        Err(e) => Ok(html_response(render(
            app,
            &viewer,
            &text,
            shadow,
            Some(&report),
            Some(&e.to_string()),
        ))),
    }
}

/// How many rule ids an audit entry names before it only counts the rest.
pub const AUDITED_RULES: usize = 50;
/// Longer rule ids are cut to this many characters in the audit log.
const MAX_AUDITED_ID_CHARS: usize = 120;

/// `N rules: a, b, …` naming the first [`AUDITED_RULES`] rule ids (as
/// `category/term`) and counting the rest, for the audit log.
pub fn rule_list(ids: &[String]) -> String {
    if ids.is_empty() {
        return "0 rules".into();
    }
    let shown: Vec<String> = ids
        .iter()
        .take(AUDITED_RULES)
        .map(|id| {
            if id.chars().count() > MAX_AUDITED_ID_CHARS {
                let cut: String = id.chars().take(MAX_AUDITED_ID_CHARS).collect();
                format!("{cut}…")
            } else {
                id.clone()
            }
        })
        .collect();
    let more = ids.len() - shown.len();
    format!(
        "{} rule{}: {}{}",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn render(
    _app: &App,
    viewer: &Viewer,
    text: &str,
    shadow: bool,
    report: Option<&CheckReport>,
    error: Option<&str>,
) -> String {
    let body = html! {
        h1 { "Publish rules" }
        p {
            "Paste or edit a pack, check it, then publish it live or as a shadow (candidate) pack whose would-be matches are only counted. Packs up to 2 MiB (form-encoded) can be published here; larger ones with "
            code { "tutela-collector rules push" } "."
        }
        @if let Some(e) = error { p.error #publish-error { (e) } }
        @if let Some(r) = report {
            h2 { "Check of " (r.pack_id) " version " (r.version) }
            p #check-summary {
                (r.errors) " lint errors, " (r.findings.len()) " findings; "
                (r.added.len()) " terms added, " (r.removed.len()) " removed against live version "
                @match r.previous { Some(v) => (v), None => "(none)" }
                @if let Some(v) = r.not_newer_than {
                    "; version " (r.version) " is not newer than " (v) ": bump [pack] version"
                }
                "."
            }
            ul #findings { @for f in &r.findings { li { (f) } } }
            ul #diff {
                @for t in &r.added { li.added { "+ " (t) } }
                @for t in &r.removed { li.removed { "- " (t) } }
            }
        }
        form method="post" action="/rules/publish" id="publish-form" {
            (csrf(viewer)) "\n"
            label for="pack-text" { "Pack (TOML)" } "\n"
            textarea id="pack-text" name="pack" rows="30" cols="100" { (text) } "\n"
            label { input type="checkbox" name="shadow" checked[shadow]; " Shadow (candidate) pack" } "\n"
            button type="submit" name="action" value="check" { "Check" } "\n"
            button type="submit" name="action" value="publish" { "Publish" }
        }
    };
    page("Publish rules", Some(viewer), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_rule_lists_name_the_first_fifty_and_count_the_rest() {
        assert_eq!(rule_list(&[]), "0 rules");
        assert_eq!(
            rule_list(&["weapons/knife".to_owned()]),
            "1 rule: weapons/knife"
        );
        let many: Vec<String> = (0..120).map(|i| format!("drugs/t{i}")).collect();
        let text = rule_list(&many);
        assert!(
            text.starts_with("120 rules: drugs/t0, drugs/t1, "),
            "{text}"
        );
        assert!(text.contains("drugs/t49 and 70 more"), "{text}");
        assert!(!text.contains("drugs/t50"), "{text}");
    }
}
