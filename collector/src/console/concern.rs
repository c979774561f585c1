//! 'Report a concern': the pupils' page on the console's listener, with no
//! sign-in. A pupil writes what worries them, named or anonymous, with an
//! optional kind of worry and 'I need help now'; the report lands in the
//! DSL's queue (`crate::reports`), and help-now reports are emailed at once
//! as severity 5.
//!
//! Nothing here learns who is writing: no cookie is set or read, and the
//! client's address and browser are neither stored nor logged. Forms carry
//! a token signed with a key that lives only in memory (it proves the form
//! came from this page, not who filled it in), used once and valid for two
//! hours. Abuse is held off by one token bucket for all reports, which keeps
//! no identity: when it is empty every writer is asked to wait a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::console::Console;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use maud::{html, Markup, DOCTYPE};
use ring::rand::{SecureRandom, SystemRandom};

use super::{html_response, redirect, with_status, App, Fail, FormLimit, Req};
use crate::reports::{self, Report, CATEGORIES, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use crate::store::now_ms;

/// The report form's largest body: 4,000 characters of any script,
/// percent-encoded, and the other fields.
pub const FORM_LIMIT: FormLimit = FormLimit {
    bytes: 64 * 1024,
    instead: "Your report is too long: keep it to 4,000 characters and send it again.",
    back: "/concern",
};

/// How long a form stays valid.
const TOKEN_LIFE: Duration = Duration::from_secs(2 * 3600);
/// The bucket: at most this many reports at once, then one more every
/// `REFILL`.
const BURST: f64 = 20.0;
const REFILL: Duration = Duration::from_secs(15);

/// The form key, used tokens and the rate limit, all in memory.
#[derive(Debug)]
pub struct Guard {
    key: ring::hmac::Key,
    /// Nonces of tokens already used, with when they were issued.
    used: Mutex<HashMap<[u8; 12], i64>>,
    bucket: Mutex<(f64, Instant)>,
}

impl Default for Guard {
    fn default() -> Self {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random source works");
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            used: Mutex::new(HashMap::new()),
            bucket: Mutex::new((BURST, Instant::now())),
        }
    }
}

/// Why a form token was refused.
#[derive(Debug, PartialEq, Eq)]
enum Stale {
    Malformed,
    Expired,
    Used,
}

impl Guard {
    fn signed(issued: i64, nonce: &[u8; 12]) -> Vec<u8> {
        let mut msg = b"tutela-concern-form\0".to_vec();
        msg.extend_from_slice(&issued.to_be_bytes());
        msg.extend_from_slice(nonce);
        msg
    }

    /// A fresh form token: when it was issued, a nonce and their tag.
    pub fn issue(&self) -> String {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let issued = now_ms();
        let mut raw = issued.to_be_bytes().to_vec();
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(ring::hmac::sign(&self.key, &Self::signed(issued, &nonce)).as_ref());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// The token's nonce if it is genuine, current and unused.
    fn check(&self, token: &str) -> Result<[u8; 12], Stale> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Stale::Malformed)?;
        if raw.len() != 8 + 12 + 32 {
            return Err(Stale::Malformed);
        }
        let issued = i64::from_be_bytes(raw[..8].try_into().map_err(|_| Stale::Malformed)?);
        let nonce: [u8; 12] = raw[8..20].try_into().map_err(|_| Stale::Malformed)?;
        ring::hmac::verify(&self.key, &Self::signed(issued, &nonce), &raw[20..])
            .map_err(|_| Stale::Malformed)?;
        let age = now_ms() - issued;
        if !(-60_000..TOKEN_LIFE.as_millis() as i64).contains(&age) {
            return Err(Stale::Expired);
        }
        if self.lock_used().contains_key(&nonce) {
            return Err(Stale::Used);
        }
        Ok(nonce)
    }

    fn lock_used(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 12], i64>> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spend(&self, nonce: [u8; 12]) {
        let mut used = self.lock_used();
        let oldest = now_ms() - TOKEN_LIFE.as_millis() as i64 - 60_000;
        used.retain(|_, issued| *issued > oldest);
        used.insert(nonce, now_ms());
    }

    /// Takes one report from the shared bucket; false when it is empty.
    fn take(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *bucket;
        let refilled = last.elapsed().as_secs_f64() / REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(BURST);
        *last = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A page for pupils: no console navigation, no script.
fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE) "\n"
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1"; "\n"
                title { (title) " - Tutela" }
                link rel="stylesheet" href="/assets/console.css";
            }
            "\n"
            body.pupil { main.concern { (body) } }
        }
    }
    .into_string()
}

/// What the writer had entered, to show again after a refusal.
#[derive(Debug, Default)]
struct Entered<'a> {
    name: &'a str,
    category: &'a str,
    text: &'a str,
    help_now: bool,
    /// The school named in the page's address (`?school=`), or empty.
    school: &'a str,
}

fn form(app: &App, entered: &Entered<'_>, message: Option<&str>) -> String {
    let body = html! {
        h1 { "Report a concern" } "\n"
        p {
            "If something is worrying you, about you or someone else, tell us here. A member of staff who looks after pupils' safety (the designated safeguarding lead) reads every report."
        }
        "\n"
        p {
            b { "If you are in danger right now" }
            ", tell any adult in school, or call 999. You can also talk to Childline any time on 0800 1111."
        }
        @if let Some(m) = message { p.error #concern-error { (m) } }
        form method="post" action="/concern" id="concern-form" class="panel" {
            "\n"
            input type="hidden" name="token" value=(app.concern.issue()); "\n"
            @if !entered.school.is_empty() {
                input type="hidden" name="school" value=(entered.school); "\n"
            }
            label for="text" { "What is worrying you?" } br; "\n"
            textarea id="text" name="text" rows="8" maxlength=(MAX_TEXT_CHARS) required { (entered.text) } "\n"
            p {
                label for="name" { "Your name (leave this empty to stay anonymous)" } br; "\n"
                input type="text" id="name" name="name" maxlength=(MAX_NAME_CHARS) value=(entered.name) autocomplete="off";
            }
            "\n"
            p {
                label for="category" { "What is it about? (you do not have to choose)" } br; "\n"
                select id="category" name="category" {
                    option value="" { "Not sure, or something else" }
                    @for (id, label) in CATEGORIES {
                        option value=(id) selected[entered.category == id] { (label) }
                    }
                }
            }
            "\n"
            p {
                label {
                    input type="checkbox" id="help-now" name="help_now" value="on" checked[entered.help_now];
                    " I need help now"
                }
                br; "\n"
                span.muted { "A safeguarding lead is emailed straight away." }
            }
            "\n"
            button type="submit" { "Send" } "\n"
        }
        "\n"
        p.muted {
            "What is kept: your words, what it is about, whether you need help now, the time, and your name only if you give it. If you stay anonymous, nothing that could show who you are is kept: not your computer, your account or where you sent it from."
        }
    };
    layout("Report a concern", body)
}

pub fn page(app: &App, _db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let entered = Entered {
        school: req.q("school"),
        ..Entered::default()
    };
    Ok(html_response(form(app, &entered, None)))
}

/// The school a report goes to: the one the form names, if it exists, or
/// the default school.
fn school_of(app: &App, named: &str) -> Result<String, Fail> {
    use crate::store::schools;
    if named.is_empty() {
        return Ok(schools::DEFAULT_SCHOOL.to_owned());
    }
    if schools::valid_id(named) && super::wait(app.shared.school_exists(named))? {
        return Ok(named.to_owned());
    }
    Err(Fail::BadRequest(
        "This report form names a school the collector does not know. Ask a member of staff for the right address of the form.".into(),
    ))
}

pub fn submit(app: &App, _db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let entered = Entered {
        name: req.f("name"),
        category: req.f("category"),
        text: req.f("text"),
        help_now: req.f("help_now") == "on",
        school: req.f("school"),
    };
    let again = |status: StatusCode, message: &str| {
        Ok(with_status(
            status,
            html_response(form(app, &entered, Some(message))),
        ))
    };
    if req.cross_site {
        tracing::info!("pupil report refused: sent from another site");
        return again(
            StatusCode::FORBIDDEN,
            "This report came from another website, so it was not sent. If you wrote it, press Send again on this page.",
        );
    }
    let nonce = match app.concern.check(req.f("token")) {
        Ok(nonce) => nonce,
        Err(stale) => {
            tracing::info!(reason = ?stale, "pupil report refused: stale form");
            return again(
                StatusCode::FORBIDDEN,
                "This form had run out of time or was already sent, so your report was not sent yet. Your words are still here: press Send again.",
            );
        }
    };
    let mut report = match Report::from_fields(
        entered.name,
        entered.category,
        entered.text,
        entered.help_now,
    ) {
        Ok(r) => r,
        Err(why) => return again(StatusCode::BAD_REQUEST, &why.to_string()),
    };
    report.school = school_of(app, entered.school)?;
    if !app.concern.take() {
        tracing::warn!("pupil reports are arriving faster than the limit; one was turned away");
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many reports are arriving at once, so yours was not sent yet. Wait a minute, then press Send again. If you need help now, tell any adult in school.",
        );
    }
    if let Err(e) = super::wait(reports::store_in(&app.shared, &report)) {
        tracing::error!(error = %e, "a pupil report could not be stored");
        return again(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your report could not be saved just now, so it was not sent. Your words are still here: press Send again in a minute. If you need help now, tell any adult in school.",
        );
    }
    app.concern.spend(nonce);
    tracing::info!(
        named = report.name.is_some(),
        help_now = report.help_now,
        "pupil report received"
    );
    Ok(redirect(&format!(
        "/concern/sent?help_now={}&named={}",
        u8::from(report.help_now),
        u8::from(report.name.is_some())
    )))
}

pub fn sent(_app: &App, _db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let body = html! {
        h1 #concern-sent { "Thank you for telling us" }
        p { "Your report has been sent to the safeguarding lead." }
        @if req.q("help_now") == "1" {
            p {
                b { "You said you need help now: a safeguarding lead has been emailed." }
                " If you are in danger, find any adult in school straight away or call 999."
            }
        }
        @if req.q("named") == "1" {
            p { "You gave your name, so someone may come and talk to you." }
        } @else {
            p {
                "You did not give your name, so nobody can reply to you here. If you want to talk to someone, find any adult you trust in school, or call Childline on 0800 1111."
            }
        }
        p { a href="/concern" { "Report something else" } }
    };
    Ok(html_response(layout("Report sent", body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_genuine_current_and_single_use() {
        let guard = Guard::default();
        let token = guard.issue();
        let nonce = guard.check(&token).unwrap();
        guard.spend(nonce);
        assert_eq!(guard.check(&token), Err(Stale::Used));
        assert_eq!(
            Guard::default().check(&guard.issue()),
            Err(Stale::Malformed)
        );
        assert_eq!(guard.check("not a token"), Err(Stale::Malformed));
        let mut tampered = guard.issue().into_bytes();
        tampered[40] = if tampered[40] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            guard.check(&String::from_utf8(tampered).unwrap()),
            Err(Stale::Malformed)
        );
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_holds_off() {
        let guard = Guard::default();
        let taken = (0..100).filter(|_| guard.take()).count();
        assert_eq!(taken, BURST as usize);
    }
}
