//! Signing in and out of the console: the sign-in form (with its own CSRF
//! cookie), the one answer to every failed sign-in, and the session cookie.

use std::fmt::Write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;

use super::auth::{self, Login};
use super::html::page as layout;
use super::{html_response, redirect, session_without_grant, with_status, App, Fail, Req};
use crate::store::console::Console;

pub(super) fn cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        let _ = write!(c, "; Max-Age={age}");
    }
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static(""))
}

fn login_form(app: &App, message: Option<&str>, status: StatusCode) -> Response {
    // Login CSRF: the form's token must match a cookie set with it.
    let token = auth::fresh_token();
    let body = html! {
        form.login method="post" action="/login" {
            h1 { "Sign in" }
            @if let Some(m) = message { p.error #login-error { (m) } }
            (app.sso.buttons())
            "\n"
            input type="hidden" name="csrf" value=(token); "\n"
            label { "Account" input type="text" name="name" autocomplete="username" required autofocus; } "\n"
            label {
                "Password" input type="password" name="password" autocomplete="current-password" required;
            }
            "\n"
            button type="submit" { "Sign in" } "\n"
            p.muted { "Use of this console is logged." } "\n"
            p { "Pupils: " a href="/concern" id="report-link" { "report a concern" } " without signing in." }
        }
    };
    let mut r = with_status(status, html_response(layout("Sign in", None, body)));
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(auth::LOGIN_COOKIE, &token, app.secure_cookies, Some(3600)),
    );
    r
}

pub fn login_page(app: &App, _db: &Console<'_>, _req: &Req) -> Result<Response, Fail> {
    Ok(login_form(app, None, StatusCode::OK))
}

/// The one answer to every failed sign-in, whatever the reason (unknown
/// account, wrong password, locked or disabled account), so that it does not
/// tell which accounts exist.
pub const LOGIN_REFUSED: &str = "Sign-in failed: the account name or password is wrong, or the account is locked or disabled. Check both and try again. After five failed sign-ins an account is locked for 15 minutes; if it still fails, ask whoever manages console accounts.";

pub fn login_submit(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let expected = req.cookie(auth::LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !auth::same_secret(req.f("csrf"), expected) {
        return Ok(login_form(
            app,
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        ));
    }
    let ip = req.ip();
    if app.throttle.blocked(ip) {
        return Ok(login_form(
            app,
            Some("Too many failed sign-ins from this computer. Wait a few minutes."),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    match auth::login(db, req.f("name"), req.f("password"), ip)? {
        Login::Ok(token) => {
            let mut r = redirect(super::grants::after_sign_in(db, req.f("name"))?);
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookie(auth::SESSION_COOKIE, &token, app.secure_cookies, None),
            );
            h.append(
                header::SET_COOKIE,
                cookie(auth::LOGIN_COOKIE, "", app.secure_cookies, Some(0)),
            );
            Ok(r)
        }
        Login::Refused => {
            app.throttle.failed(ip);
            Ok(login_form(
                app,
                Some(LOGIN_REFUSED),
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

pub fn logout(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session_without_grant(db, req)?;
    auth::logout(db, &viewer)?;
    let mut r = redirect("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(auth::SESSION_COOKIE, "", app.secure_cookies, Some(0)),
    );
    Ok(r)
}
