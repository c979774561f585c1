//! An account's grants in the console: an account may hold several (DSL at
//! one school, technician at another; auditor for the trust and DSL at a
//! school) and acts under one at a time, its session's. A sign-in acts
//! under the first and, when there are several, shows this page to choose;
//! the header's "Switch role" comes back to it. Every check of a request
//! (the role's pages, the scope given to the store) is the active grant's;
//! a switch is audited (`account_grant_switched`).

use axum::http::header;
use axum::response::Response;
use maud::html;

use super::auth::{fresh_token, token_hash, Role, Viewer, SESSION_COOKIE};
use super::html::{csrf, page};
use super::login::cookie;
use super::{deny, html_response, redirect, session, App, Fail, Req};
use crate::store::console::Console;
use crate::store::schools::Scope;
use crate::store::users::{Audited, Rotated};

/// `GET /grants`: the account's grants, the active one marked, each other
/// with a button acting under it.
pub fn page_handler(_app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    let grants = db.grants_of(&viewer.name)?;
    let body = html! {
        h1 { "Your roles" }
        p { "This account holds " (grants.len()) " grant(s) and acts under one at a time. \
             Pages and alerts are those of the role and schools it acts under now." }
        table #grants {
            thead { tr { th { "Role" } th { "Schools" } th {} } }
            tbody {
                @for (role, school) in &grants {
                    @let scope = Scope::from_grant(school);
                    @let active = role == viewer.role.as_str();
                    tr.active[active] {
                        td { (role) }
                        td { (scope_text(&scope)) }
                        td {
                            @if active {
                                b { "Acting under this now" }
                            } @else {
                                form method="post" action="/grants" class="inline" {
                                    (csrf(&viewer))
                                    input type="hidden" name="role" value=(role);
                                    button type="submit" { "Act as " (role) }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href=(landing(&viewer)) { "Continue as " (viewer.role.as_str()) } }
    };
    Ok(html_response(page("Your roles", Some(&viewer), body)))
}

/// `POST /grants`: acts under the account's grant of the form's `role`
/// from now on, audited; a role the account does not hold is refused (and
/// the refusal audited). A switch rotates the session: the browser gets a
/// new session cookie and pages a new CSRF token, and the old ones stop
/// working at once (a token taken while acting under one grant is no use
/// under another). Reveals made before the switch belong to the old session.
pub fn switch(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    let Some(role) = Role::parse(req.f("role")) else {
        return Err(Fail::BadRequest(
            "Choose one of your roles on the Your roles page (/grants).".to_owned(),
        ));
    };
    let detail = format!("from={}; to={}", viewer.role.as_str(), role.as_str());
    let token = fresh_token();
    let csrf_token = fresh_token();
    let hash = token_hash(&token);
    let switched = db.switch_grant(
        &viewer.session_hash,
        role.as_str(),
        &Rotated {
            token_hash: &hash,
            csrf: &csrf_token,
        },
        &Audited {
            actor: &viewer.name,
            action: "account_grant_switched",
            target: "console",
            detail: &detail,
        },
    )?;
    if !switched {
        return Err(deny(db, &viewer, &format!("grant {}", role.as_str())));
    }
    tracing::info!(account = %viewer.name, to = role.as_str(), "console account switched grant");
    let mut r = redirect(landing_of(role));
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(SESSION_COOKIE, &token, app.secure_cookies, None),
    );
    Ok(r)
}

/// Where an account lands after signing in: this page when it holds
/// several grants, else the queue (as before).
pub fn after_sign_in(db: &Console<'_>, name: &str) -> Result<&'static str, Fail> {
    Ok(if db.grants_of(name)?.len() > 1 {
        "/grants"
    } else {
        "/queue"
    })
}

fn scope_text(scope: &Scope) -> String {
    match scope.schools() {
        None => "every school of the trust".to_owned(),
        Some(ids) => ids.join(", "),
    }
}

fn landing(viewer: &Viewer) -> &'static str {
    if viewer.queue.any() {
        "/queue"
    } else {
        landing_of(viewer.role)
    }
}

/// The first page a role may see.
fn landing_of(role: Role) -> &'static str {
    if role.reviews() {
        "/queue"
    } else if role.sees_fleet() {
        "/fleet"
    } else if role.audits() {
        "/audit"
    } else {
        "/queue"
    }
}
