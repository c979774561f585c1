//! Staff single sign-on with OpenID Connect: the authorisation code flow
//! with PKCE, `state` and `nonce`, the ID token checked against the
//! provider's published keys, and accounts given roles by the school's
//! mapping of email addresses and groups. Local accounts keep working
//! beside it (break-glass).
//!
//! `/login/oidc/<name>` starts a sign-in; the provider sends the browser
//! back to `/login/oidc/<name>/callback`. These handlers are async: the
//! calls to the provider are made without holding the console's database.

pub mod accounts;
pub mod flow;
pub mod provider;
#[cfg(test)]
mod tests;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::html::{page, page_with_head};
use super::{harden, html_response, redirect, with_status, App};
use crate::store::console::Console;
use crate::store::StoreError;
use accounts::{Refusal, SignIn};
use flow::{Flows, FLOW_TTL};
use provider::{Provider, SsoError};

/// The cookie binding a sign-in to the browser that began it. `Lax`: the
/// provider's redirect back is a cross-site navigation.
pub const FLOW_COOKIE: &str = "tutela_oidc";

/// The configured providers and the sign-ins in progress.
#[derive(Debug, Default)]
pub struct Sso {
    providers: Vec<Provider>,
    /// Providers whose configuration was refused: (label, reason).
    broken: Vec<(String, String)>,
    flows: Flows,
}

impl Sso {
    pub fn from_config(configs: &[crate::config::OidcProvider]) -> Self {
        let mut sso = Sso::default();
        for config in configs {
            if sso.providers.iter().any(|p| p.name == config.name) {
                tracing::error!(provider = %config.name, "[[console.oidc]] names this provider twice; the second is left out");
                continue;
            }
            match Provider::from_config(config) {
                Ok(p) => sso.providers.push(p),
                Err(reason) => {
                    tracing::error!(provider = %config.name, %reason, "single sign-on provider left out: its [[console.oidc]] configuration is invalid");
                    let label = if config.label.is_empty() {
                        config.name.clone()
                    } else {
                        config.label.clone()
                    };
                    sso.broken.push((label, reason));
                }
            }
        }
        sso
    }

    fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The sign-in page's buttons, one per provider, and a note for each
    /// provider that is configured wrongly.
    pub fn buttons(&self) -> Markup {
        if self.providers.is_empty() && self.broken.is_empty() {
            return html! {};
        }
        html! {
            div.sso #sso {
                @for p in &self.providers {
                    p {
                        a.button id={ "sso-" (p.name) } href={ "/login/oidc/" (p.name) } {
                            "Sign in with " (p.label)
                        }
                    }
                }
                @for (label, _) in &self.broken {
                    p.muted {
                        "Sign-in with " (label)
                        " is unavailable: its configuration is invalid (the collector's log says why)."
                    }
                }
                p.muted { "Or with a console account:" }
            }
        }
    }
}

fn flow_cookie(app: &App, value: &str, max_age: u64) -> HeaderValue {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

/// A page saying why single sign-on did not work, with the way back.
fn trouble(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        div.login {
            h1 { (title) }
            p.error #sso-error { (message) }
            p {
                a href="/login" id="back-to-login" { "Back to sign-in" }
                " (console accounts keep working)."
            }
        }
    };
    with_status(status, html_response(page(title, None, body)))
}

fn provider_trouble(label: &str, e: &SsoError) -> Response {
    let message = match e {
        SsoError::Unreachable(_) => format!("Sign-in with {label} is not working: the provider could not be reached. Try again in a few minutes, or sign in with a console account; the collector's log says why."),
        SsoError::Misconfigured(_) | SsoError::ExchangeRefused(_) => format!("Sign-in with {label} is not working: the provider and the console's settings for it do not fit. Sign in with a console account and ask whoever manages the console; the collector's log says why."),
        SsoError::Token(_) => format!("Sign-in with {label} was refused: the provider's answer did not pass the console's checks. Try again; if it keeps failing, ask whoever manages the console."),
    };
    trouble(StatusCode::BAD_GATEWAY, "Single sign-on failed", &message)
}

fn query(request: &Request) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `GET /login/oidc/<name>`: to the provider.
pub async fn start(
    State(app): State<App>,
    UrlPath(name): UrlPath<String>,
    request: Request,
) -> Response {
    let ip = client_ip(&app, &request);
    drop(request);
    harden(begin(&app, &name, ip).await)
}

fn client_ip(app: &App, request: &Request) -> std::net::IpAddr {
    super::request_ip(request.extensions(), request.headers(), app.trusted_proxy)
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

async fn begin(app: &App, name: &str, ip: std::net::IpAddr) -> Response {
    let Some(provider) = app.sso.provider(name) else {
        return trouble(
            StatusCode::NOT_FOUND,
            "No such sign-in",
            "This console has no single sign-on provider by that name.",
        );
    };
    let Some(started) = app.sso.flows.begin(&provider.name, ip) else {
        tracing::warn!(provider = %provider.name, "single sign-on refused: too many sign-ins in progress");
        return trouble(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins",
            "Too many sign-ins are in progress; wait a minute and try again.",
        );
    };
    match provider
        .authorisation_url(&started.state, &started.nonce, &started.challenge)
        .await
    {
        Ok(url) => {
            let mut r = redirect(&url);
            r.headers_mut().append(
                header::SET_COOKIE,
                flow_cookie(app, &started.binding, FLOW_TTL.as_secs()),
            );
            r
        }
        Err(e) => {
            app.sso.flows.take(&started.state);
            tracing::warn!(provider = %provider.name, error = %e, "single sign-on could not start");
            audit_refusal(app, None, name, e.to_string(), ip).await;
            provider_trouble(&provider.label, &e)
        }
    }
}

/// `GET /login/oidc/<name>/callback`: the provider's answer.
pub async fn callback(
    State(app): State<App>,
    UrlPath(name): UrlPath<String>,
    request: Request,
) -> Response {
    let ip = client_ip(&app, &request);
    let q = query(&request);
    let binding = cookie(&request, FLOW_COOKIE);
    drop(request);
    let mut response = finish(&app, &name, &q, binding.as_deref(), ip).await;
    // The binding cookie has done its work, whatever the outcome.
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie(&app, "", 0));
    harden(response)
}

/// Runs `work` on the console's store (a blocking thread); `None`
/// (logged) when the store fails.
async fn with_db<T: Send + 'static>(
    app: &App,
    work: impl FnOnce(&Console<'_>) -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    app.store
        .run(work)
        .await
        .map_err(|e| tracing::error!(error = %e, "console database error during single sign-on"))
        .ok()
}

async fn audit_refusal(
    app: &App,
    actor: Option<String>,
    provider: &str,
    why: String,
    ip: std::net::IpAddr,
) {
    let provider = provider.to_owned();
    with_db(app, move |db| {
        accounts::refuse(db, actor.as_deref(), &provider, &why, ip)
    })
    .await;
}

async fn finish(
    app: &App,
    name: &str,
    q: &[(String, String)],
    binding: Option<&str>,
    ip: std::net::IpAddr,
) -> Response {
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let Some(provider) = app.sso.provider(name) else {
        return trouble(
            StatusCode::NOT_FOUND,
            "No such sign-in",
            "This console has no single sign-on provider by that name.",
        );
    };
    let refused = |message: &str| trouble(StatusCode::FORBIDDEN, "Sign-in refused", message);
    // Forged callbacks count against the address like wrong passwords do, so
    // that one client cannot fill the audit log.
    if app.throttle.blocked(ip) {
        return trouble(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins",
            "Too many failed sign-ins from this computer. Wait a few minutes.",
        );
    }
    // Single use: the state is gone from here on, whatever happens next.
    let Some(pending) = app.sso.flows.take(get("state")) else {
        app.throttle.failed(ip);
        tracing::info!(provider = %name, %ip, "single sign-on refused: unknown, used or expired state");
        audit_refusal(
            app,
            None,
            name,
            "sign-in state unknown, already used or expired".into(),
            ip,
        )
        .await;
        return refused("This sign-in link has been used already or has expired. Start again from the sign-in page.");
    };
    if pending.provider != provider.name || !pending.bound_to(binding) {
        app.throttle.failed(ip);
        tracing::info!(provider = %name, %ip, "single sign-on refused: the callback came to another browser or provider");
        audit_refusal(
            app,
            None,
            name,
            "sign-in finished in a different browser from the one that began it".into(),
            ip,
        )
        .await;
        return refused("This sign-in was started in another browser, or its cookie is missing. Start again from the sign-in page in this browser.");
    }
    // RFC 9207: a provider that names itself must be the one this sign-in went to.
    if !get("iss").is_empty() && get("iss") != provider.issuer() {
        tracing::info!(provider = %name, %ip, "single sign-on refused: the answer names another issuer");
        audit_refusal(
            app,
            None,
            name,
            "the answer names another issuer (mix-up)".into(),
            ip,
        )
        .await;
        return refused("The answer came from another sign-in provider than the one this sign-in went to. Start again from the sign-in page.");
    }
    if !get("error").is_empty() {
        let error: String = get("error")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(provider = %name, %ip, %error, "single sign-on: the provider answered with an error");
        audit_refusal(
            app,
            None,
            name,
            format!("the provider answered {error}"),
            ip,
        )
        .await;
        return refused(&format!("{} did not sign you in ({error}). Start again from the sign-in page, or sign in with a console account.", provider.label));
    }
    let code = get("code");
    if code.is_empty() {
        audit_refusal(app, None, name, "no code in the callback".into(), ip).await;
        return refused(
            "The provider's answer held no sign-in code. Start again from the sign-in page.",
        );
    }
    let identity = match provider
        .finish(code, &pending.verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(provider = %name, %ip, error = %e, "single sign-on failed");
            let why = match &e {
                SsoError::Token(reason) => format!("ID token refused: {reason}"),
                other => other.to_string(),
            };
            audit_refusal(app, None, name, why, ip).await;
            return provider_trouble(&provider.label, &e);
        }
    };
    let email = identity.email.clone();
    let refusal = if email.is_none() {
        Some(Refusal::NoUsableEmail)
    } else if provider.require_verified_email && identity.email_verified == Some(false) {
        Some(Refusal::EmailNotVerified)
    } else {
        None
    };
    let role = provider.role_for(&identity);
    let refusal = refusal.or(if role.is_none() {
        Some(Refusal::Unmapped)
    } else {
        None
    });
    if let Some(refusal) = refusal {
        tracing::info!(provider = %name, %ip, reason = refusal.audit_detail(), "single sign-on refused");
        audit_refusal(app, email, name, refusal.audit_detail().into(), ip).await;
        return refused(refusal.message());
    }
    let (Some(email), Some(role)) = (email, role) else {
        return refused(Refusal::Unmapped.message());
    };
    let provider_name = provider.name.clone();
    let school = provider.school.clone();
    let subject = identity.subject.clone();
    let outcome = with_db(app, move |db| {
        accounts::sign_in(
            db,
            &SignIn {
                provider: &provider_name,
                subject: &subject,
                email: &email,
                role,
                school: school.as_deref(),
                ip,
            },
        )
    })
    .await;
    match outcome {
        Some(Ok(token)) => {
            tracing::info!(provider = %name, %ip, role = role.as_str(), "single sign-on");
            signed_in(app, &token)
        }
        Some(Err(refusal)) => {
            tracing::info!(provider = %name, %ip, reason = refusal.audit_detail(), "single sign-on refused");
            refused(refusal.message())
        }
        None => trouble(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "The console could not record the sign-in in its database; try again.",
        ),
    }
}

/// Sets the session cookie and moves on to the queue. The session cookie is
/// `SameSite=Strict`, so a browser arriving from the provider's site would
/// not send it on a redirect; this page's own navigation is same-site.
fn signed_in(app: &App, token: &str) -> Response {
    let head = html! { meta http-equiv="refresh" content="0;url=/queue"; };
    let body = html! {
        div.login {
            h1 { "Signed in" }
            p #sso-signed-in { a href="/queue" { "Continue to the console" } }
        }
    };
    let mut r = html_response(page_with_head("Signed in", None, head, body));
    r.headers_mut().append(
        header::SET_COOKIE,
        super::login::cookie(super::auth::SESSION_COOKIE, token, app.secure_cookies, None),
    );
    r
}
