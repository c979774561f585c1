//! The monitoring notice in the console: the DSL and deputy DSLs write each
//! group's notice (a new version each time, audited); the reviewing roles
//! see who has and has not accepted the current version. Technicians and
//! auditors see neither (the lists name pupils).

use std::fmt::Write;

use axum::response::Response;
use rusqlite::Connection;
use tutela_proto::limits::MAX_NOTICE_CHARS;

use super::auth::{Role, Viewer};
use super::html::{csrf_field, esc, page, url_value};
use super::{deny, html_response, redirect, session, App, Fail, FormLimit, Req};
use crate::notice::{self, Mode, NewNotice, NoticeError};

/// 4,000 characters of any script, percent-encoded, and the other fields.
pub const FORM_LIMIT: FormLimit = FormLimit {
    bytes: 64 * 1024,
    instead: "A notice is limited to 4,000 characters: shorten it, and link to the full acceptable use policy instead of pasting it.",
    back: "/notices",
};

fn writes_notices(viewer: &Viewer) -> bool {
    matches!(viewer.role, Role::Dsl | Role::DeputyDsl)
}

/// The 'Report a concern' address offered by default: the console's own.
fn default_concern_url(app: &App) -> String {
    crate::config::CollectorConfig::load(&app.data_dir.join("collector.toml"))
        .map(|c| format!("{}/concern", crate::mail::console_url(&c)))
        .unwrap_or_default()
}

pub fn page_handler(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !viewer.role.reviews() {
        return Err(deny(conn, &viewer, "notices"));
    }
    let group = req.q("group").trim().to_owned();
    Ok(html_response(render(app, conn, &viewer, &group, None)?))
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
    conn: &Connection,
    viewer: &Viewer,
    selected: &str,
    draft: Option<Draft<'_>>,
) -> rusqlite::Result<String> {
    let mut body = String::from(
        "<h1>Monitoring notice</h1><p>Each group's stations show its notice when a pupil signs in; the pupil must acknowledge it before the window closes. Each acknowledgement is signed by the station and kept here. A change makes a new version, which is shown again.</p>",
    );
    let groups = notice::groups(conn)?;
    body.push_str(r#"<table id="notices"><thead><tr><th>Group</th><th>Version</th><th>Shown</th><th>Set by</th><th>Set at</th><th>Accepted</th><th>Not yet</th></tr></thead><tbody>"#);
    for g in &groups {
        let current = notice::current(conn, g)?;
        let acceptance = notice::acceptance(conn, g)?;
        let (version, mode, by, at) = match &current {
            Some(n) => (
                n.version.to_string(),
                Mode::parse(&n.mode).map_or("", Mode::describe),
                n.created_by.as_str(),
                app.zone.format(n.created_ms),
            ),
            None => ("none".to_owned(), "", "", String::new()),
        };
        let _ = write!(
            body,
            r#"<tr data-group="{g_attr}"><td><a href="/notices?group={g_url}">{g_attr}</a></td><td>{version}</td><td>{mode}</td><td>{}</td><td>{}</td><td class="accepted">{}</td><td class="pending">{}</td></tr>"#,
            esc(by),
            esc(&at),
            acceptance.accepted.len(),
            acceptance.pending.len(),
            g_attr = esc(g),
            g_url = url_value(g),
        );
    }
    body.push_str("</tbody></table>");
    if !selected.is_empty() {
        group_section(app, conn, viewer, selected, draft, &mut body)?;
    } else if writes_notices(viewer) {
        let _ = write!(
            body,
            r#"<form method="get" action="/notices" id="pick-group"><label>Group <input name="group" required></label> <button type="submit">Open</button></form>"#
        );
    }
    Ok(page("Monitoring notice", Some(viewer), &body))
}

fn group_section(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    group: &str,
    draft: Option<Draft<'_>>,
    body: &mut String,
) -> rusqlite::Result<()> {
    let current = notice::current(conn, group)?;
    let _ = write!(body, r#"<h2 id="group">Group {}</h2>"#, esc(group));
    match &current {
        Some(n) => {
            let _ = write!(
                body,
                r#"<p>Version <span id="version">{}</span>, shown {}.</p><pre id="current-text">{}</pre>"#,
                n.version,
                Mode::parse(&n.mode).map_or("", Mode::describe),
                esc(&n.text)
            );
            if !n.concern_url.is_empty() {
                let _ = write!(
                    body,
                    r#"<p>Report a concern: <span id="current-url">{}</span></p>"#,
                    esc(&n.concern_url)
                );
            }
        }
        None => body.push_str(
            r#"<p id="version-none">This group has no notice yet: its stations show nothing.</p>"#,
        ),
    }
    let acceptance = notice::acceptance(conn, group)?;
    body.push_str(r#"<h3>Accepted the current version</h3><table id="accepted"><thead><tr><th>Pupil</th><th>Station</th><th>When</th></tr></thead><tbody>"#);
    for s in &acceptance.accepted {
        let _ = write!(
            body,
            r#"<tr><td class="user">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&s.user),
            esc(&s.station),
            esc(&s.time_ms.map(|t| app.zone.format(t)).unwrap_or_default())
        );
    }
    body.push_str(r#"</tbody></table><h3>Not yet accepted</h3><table id="pending"><thead><tr><th>Pupil</th><th>Last version accepted</th></tr></thead><tbody>"#);
    for s in &acceptance.pending {
        let last = if s.version == 0 {
            "none".to_owned()
        } else {
            s.version.to_string()
        };
        let _ = write!(
            body,
            r#"<tr><td class="user">{}</td><td>{last}</td></tr>"#,
            esc(&s.user)
        );
    }
    body.push_str("</tbody></table><p>Pupils are listed once they have signed in on one of the group's stations since the notice began, or are named by an alert from one.</p>");
    if !writes_notices(viewer) {
        return Ok(());
    }
    let (text, mode, url, error) = match &draft {
        Some(d) => (
            d.text.to_owned(),
            d.mode.to_owned(),
            d.concern_url.to_owned(),
            Some(d.error.as_str()),
        ),
        None => match &current {
            Some(n) => (n.text.clone(), n.mode.clone(), n.concern_url.clone(), None),
            None => (
                String::new(),
                Mode::EverySignIn.as_str().to_owned(),
                default_concern_url(app),
                None,
            ),
        },
    };
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="notice-error">{}</p>"#, esc(e));
    }
    let option = |m: Mode| {
        format!(
            r#"<option value="{}"{}>{}</option>"#,
            m.as_str(),
            if mode == m.as_str() { " selected" } else { "" },
            m.describe()
        )
    };
    let _ = write!(
        body,
        r#"<h2>Set a new version</h2><form method="post" action="/notices" id="set-notice">{}
<input type="hidden" name="group" value="{}">
<label>Notice (plain text, at most {MAX_NOTICE_CHARS} characters; addresses in it are shown as they are)<br><textarea name="text" rows="12" cols="80" required>{}</textarea></label><br>
<label>Shown <select name="mode">{}{}</select></label>
<label>'Report a concern' address <input name="concern_url" size="50" value="{}"></label>
<button type="submit">Publish new version</button></form>"#,
        csrf_field(viewer),
        esc(group),
        esc(&text),
        option(Mode::EverySignIn),
        option(Mode::OncePerVersion),
        esc(&url),
    );
    Ok(())
}

pub fn submit(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !writes_notices(&viewer) {
        return Err(deny(conn, &viewer, "notices: set"));
    }
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
            html_response(render(app, conn, &viewer, group, Some(draft))?),
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
    };
    let tx = super::write_tx(conn)?;
    match notice::set(&tx, &key, &new) {
        Ok(_) => {
            tx.commit()?;
            Ok(redirect(&format!("/notices?group={}", url_value(group))))
        }
        Err(NoticeError::Db(e)) => Err(Fail::Db(e)),
        Err(e) => {
            drop(tx);
            refused(e.to_string())
        }
    }
}
