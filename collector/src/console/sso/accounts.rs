//! Console accounts behind single sign-on: an account named by the email
//! address the provider vouches for, with the role the school's mapping
//! gives it at each sign-in, tied to the provider's subject. Every sign-in
//! and every refusal goes into the audit log.

use rusqlite::{params, Connection, OptionalExtension};

use crate::console::audit;
use crate::console::auth::{open_session, valid_account_name, Role};
use crate::store::now_ms;

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

/// Audits a refused single sign-on.
pub fn refuse(
    conn: &Connection,
    actor: Option<&str>,
    provider: &str,
    why: &str,
    ip: std::net::IpAddr,
) -> rusqlite::Result<()> {
    let actor = actor
        .filter(|a| valid_account_name(a))
        .unwrap_or(UNKNOWN_ACTOR);
    audit::append(
        conn,
        actor,
        "sso_refused",
        "console",
        &format!("{why}; provider {provider}; from {ip}"),
    )
}

/// Who signed in at the provider, after the token checks.
#[derive(Debug)]
pub struct SignIn<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub ip: std::net::IpAddr,
}

/// Creates or refreshes the account and opens a session; returns its token,
/// or why not (audited either way).
pub fn sign_in(conn: &Connection, s: &SignIn<'_>) -> rusqlite::Result<Result<String, Refusal>> {
    let name = s.email;
    if !valid_account_name(name) {
        refuse(
            conn,
            None,
            s.provider,
            Refusal::NoUsableEmail.audit_detail(),
            s.ip,
        )?;
        return Ok(Err(Refusal::NoUsableEmail));
    }
    let tx = crate::console::write_tx(conn)?;
    let user: Option<(String, bool)> = tx
        .query_row(
            "SELECT password_hash, disabled FROM console_users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let linked: Option<String> = tx
        .query_row(
            "SELECT subject FROM console_oidc_accounts WHERE provider = ?1 AND name = ?2",
            params![s.provider, name],
            |r| r.get(0),
        )
        .optional()?;
    let refusal = match (&user, &linked) {
        (_, Some(subject)) if subject != s.subject => Some(Refusal::SubjectChanged),
        (Some((hash, _)), None) if !hash.is_empty() => Some(Refusal::LocalAccount),
        (Some((_, true)), _) => Some(Refusal::Disabled),
        _ => None,
    };
    if let Some(refusal) = refusal {
        refuse(&tx, Some(name), s.provider, refusal.audit_detail(), s.ip)?;
        tx.commit()?;
        return Ok(Err(refusal));
    }
    let now = now_ms();
    // No password: such an account signs in through its provider only.
    tx.execute(
        "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES (?1, '', ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET role = ?2",
        params![name, s.role.as_str(), now],
    )?;
    tx.execute(
        "INSERT INTO console_oidc_accounts (provider, subject, name, first_ms, last_ms) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(provider, subject) DO UPDATE SET name = ?3, last_ms = ?4",
        params![s.provider, s.subject, name, now],
    )?;
    let token = open_session(&tx, name)?;
    audit::append(
        &tx,
        name,
        "login",
        "console",
        &format!(
            "single sign-on with {} as {} from {}",
            s.provider,
            s.role.as_str(),
            s.ip
        ),
    )?;
    tx.commit()?;
    Ok(Ok(token))
}
