//! Console accounts behind single sign-on: an account named by the email
//! address the provider vouches for, with the role the school's mapping
//! gives it at each sign-in, tied to the provider's subject. Every sign-in
//! and every refusal goes into the audit log.

use crate::console::auth::{valid_account_name, NewSessionToken, Role};
use crate::store::console::Console;
use crate::store::now_ms;
use crate::store::users::AuditEntry;
use crate::store::StoreError;

/// The audit actor for a refusal that names no usable account.
pub const UNKNOWN_ACTOR: &str = "sso";

/// Why a provider's account was not let in (shown to the user; audited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No email claim, or one that cannot be an account name.
    NoUsableEmail,
    EmailNotVerified,
    /// No role mapping matches.
    Unmapped,
    /// A local (password) account already has this name.
    LocalAccount,
    /// The account was disabled in the console.
    Disabled,
    /// The provider now gives this email to another subject.
    SubjectChanged,
}

impl Refusal {
    pub fn audit_detail(&self) -> &'static str {
        match self {
            Refusal::NoUsableEmail => "no usable email claim",
            Refusal::EmailNotVerified => "email not verified by the provider",
            Refusal::Unmapped => "no role is mapped to this account",
            Refusal::LocalAccount => "a local account has this name",
            Refusal::Disabled => "account disabled",
            Refusal::SubjectChanged => "the email belongs to another subject at the provider",
        }
    }

    /// What the person signing in is told.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NoUsableEmail => "The provider did not say which email address you signed in with, or it is not one a console account can have. Ask whoever manages the console to check the provider's email claim.",
            Refusal::EmailNotVerified => "The provider has not verified your email address. Verify it with the provider, then sign in again.",
            Refusal::Unmapped => "You signed in at the provider, but your account has no role in this console. Ask the DSL or whoever manages console accounts to add your email address or group to the role mapping.",
            Refusal::LocalAccount => "A local console account already has your email address as its name, so single sign-on cannot use it. Sign in with that account's password, or ask whoever manages console accounts to rename it.",
            Refusal::Disabled => "Your console account is disabled. Ask whoever manages console accounts.",
            Refusal::SubjectChanged => "Your email address belonged to another account at the provider before, so it cannot take over that console account. Ask whoever manages console accounts.",
        }
    }
}

/// The audit entry of a refused single sign-on.
fn refusal_entry(
    actor: Option<&str>,
    provider: &str,
    why: &str,
    ip: std::net::IpAddr,
) -> AuditEntry {
    let actor = actor
        .filter(|a| valid_account_name(a))
        .unwrap_or(UNKNOWN_ACTOR);
    AuditEntry {
        actor: actor.to_owned(),
        action: "sso_refused",
        target: "console".to_owned(),
        detail: format!("{why}; provider {provider}; from {ip}"),
    }
}

/// Audits a refused single sign-on.
pub fn refuse(
    db: &Console<'_>,
    actor: Option<&str>,
    provider: &str,
    why: &str,
    ip: std::net::IpAddr,
) -> Result<(), StoreError> {
    let e = refusal_entry(actor, provider, why, ip);
    db.audit(&e.actor, e.action, &e.target, &e.detail)
}

/// Who signed in at the provider, after the token checks.
#[derive(Debug)]
pub struct SignIn<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub role: Role,
    /// The school the provider's configuration grants new accounts, if any.
    pub school: Option<&'a str>,
    pub ip: std::net::IpAddr,
}

/// Creates or refreshes the account and opens a session; returns its token,
/// or why not (audited either way).
pub fn sign_in(db: &Console<'_>, s: &SignIn<'_>) -> Result<Result<String, Refusal>, StoreError> {
    let name = s.email;
    if !valid_account_name(name) {
        refuse(
            db,
            None,
            s.provider,
            Refusal::NoUsableEmail.audit_detail(),
            s.ip,
        )?;
        return Ok(Err(Refusal::NoUsableEmail));
    }
    let session = NewSessionToken::new(name, now_ms());
    // A new account on a collector of several schools has the school its
    // provider's configuration names, if that school exists; else no grant
    // until `users grant` gives it one: it signs in to a page saying so.
    let mut new_school = crate::console::auth::new_account_school(db)?;
    if !new_school.is_empty() {
        if let Some(id) = s.school {
            if db.schools()?.iter().any(|school| school.id == id) {
                new_school = id;
            }
        }
    }
    let outcome = db.sso_sign_in(
        s.provider,
        s.subject,
        s.role.as_str(),
        new_school,
        &session.row(),
        |found| {
            let refusal = match (&found.account, &found.linked_subject) {
                (_, Some(subject)) if subject != s.subject => Some(Refusal::SubjectChanged),
                (Some((hash, _)), None) if !hash.is_empty() => Some(Refusal::LocalAccount),
                (Some((_, true)), _) => Some(Refusal::Disabled),
                _ => None,
            };
            match refusal {
                Some(refusal) => {
                    let entry = refusal_entry(Some(name), s.provider, refusal.audit_detail(), s.ip);
                    Err((refusal, entry))
                }
                None => Ok(AuditEntry {
                    actor: name.to_owned(),
                    action: "login",
                    target: "console".to_owned(),
                    detail: format!(
                        "single sign-on with {} as {} from {}",
                        s.provider,
                        s.role.as_str(),
                        s.ip
                    ),
                }),
            }
        },
    )?;
    Ok(outcome.map(|()| session.token))
}
