//! Accounts, roles, sessions, CSRF tokens and login throttling.
//!
//! Passwords are stored as Argon2id hashes. A session is a random token in an
//! HttpOnly, SameSite=Strict cookie; the database keeps only its SHA-256.
//! Every POST carries the session's CSRF token in a hidden field. Five wrong
//! passwords in a row lock the account for 15 minutes; one address may fail
//! at most 20 times in 5 minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{params, Connection, OptionalExtension};

use super::audit;
use super::Fail;
use crate::store::now_ms;

pub const SESSION_COOKIE: &str = "tutela_session";
pub const LOGIN_COOKIE: &str = "tutela_login";
const IDLE_MS: i64 = 30 * 60_000;
const ABSOLUTE_MS: i64 = 12 * 3_600_000;
const LOCK_AFTER: i64 = 5;
const LOCK_MS: i64 = 15 * 60_000;
const ADDRESS_FAILURES: usize = 20;
const ADDRESS_WINDOW: Duration = Duration::from_secs(300);
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest account name.
pub const MAX_NAME_BYTES: usize = 64;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dsl,
    DeputyDsl,
    Head,
    Technician,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Dsl,
        Role::DeputyDsl,
        Role::Head,
        Role::Technician,
        Role::Auditor,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dsl => "dsl",
            Role::DeputyDsl => "deputy-dsl",
            Role::Head => "head",
            Role::Technician => "technician",
            Role::Auditor => "auditor",
        }
    }

    /// Reviews alerts: sees context and captures, changes state, exports.
    pub fn reviews(self) -> bool {
        matches!(self, Role::Dsl | Role::DeputyDsl | Role::Head)
    }

    /// Sees the Fleet and Exemptions pages (no pupil data on either).
    pub fn sees_fleet(self) -> bool {
        self.reviews() || self == Role::Technician
    }

    pub fn audits(self) -> bool {
        self == Role::Auditor
    }

    /// Alerts about staff accounts go to the head teacher only; everyone
    /// else sees alerts about pupils.
    pub fn sees_staff_alerts(self) -> bool {
        self == Role::Head
    }
}

/// How much of the alert queue an account sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAccess {
    /// No alert at all: technicians by default, auditors.
    None,
    /// Severity, category, time, state and a neutral rule id; no pupil,
    /// station, words, captures or alert pages. Technicians, when the
    /// school chooses it (`settings`).
    CategoryOnly,
    /// Everything in the viewer's scope: the reviewing roles.
    Full,
}

impl QueueAccess {
    /// What `role` sees, given the school's choice for technicians.
    pub fn of(role: Role, technician_queue: super::settings::TechnicianQueue) -> Self {
        use super::settings::TechnicianQueue;
        match role {
            r if r.reviews() => QueueAccess::Full,
            Role::Technician if technician_queue == TechnicianQueue::CategoryOnly => {
                QueueAccess::CategoryOnly
            }
            _ => QueueAccess::None,
        }
    }

    pub fn any(self) -> bool {
        self != QueueAccess::None
    }
}

/// The signed-in account behind a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub session_hash: Vec<u8>,
    pub queue: QueueAccess,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn fresh_token() -> String {
    random_token()
}

fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time comparison of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether `name` has the form of an account name: 1-64 ASCII letters,
/// digits, '.', '_', '-' or '@'.
pub fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// Creates an account, or replaces the password and role of an existing one.
pub fn add_user(conn: &Connection, name: &str, role: Role, password: &str) -> anyhow::Result<bool> {
    anyhow::ensure!(
        valid_account_name(name),
        "account names are 1-64 letters, digits, '.', '_', '-' or '@'"
    );
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD_CHARS,
        "the password must be at least {MIN_PASSWORD_CHARS} characters"
    );
    let hash = hash_password(password)?;
    let existed: bool = conn
        .query_row(
            "SELECT 1 FROM console_users WHERE name = ?1",
            [name],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    let tx = super::write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET password_hash = ?2, role = ?3, failed = 0, locked_until_ms = 0",
        params![name, hash, role.as_str(), now_ms()],
    )?;
    // Existing sessions end when an account's password or role changes.
    tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    audit::append(
        &tx,
        "cli",
        if existed {
            "account_updated"
        } else {
            "account_created"
        },
        &format!("user:{name}"),
        &format!("role={}", role.as_str()),
    )?;
    tx.commit()?;
    Ok(existed)
}

/// Failed logins per client address, for throttling.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Throttle {
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(ip).or_default();
        list.retain(|t| t.elapsed() < ADDRESS_WINDOW);
        list.len() >= ADDRESS_FAILURES
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, l| l.iter().any(|t| t.elapsed() < ADDRESS_WINDOW));
        }
        map.entry(ip).or_default().push(Instant::now());
    }
}

/// The outcome of a login attempt. A refusal does not say why: an unknown
/// name, a wrong password and a locked or disabled account look the same
/// from outside (and cost the same Argon2 check); the audit log keeps the
/// true reason.
#[derive(Debug)]
pub enum Login {
    /// The new session's cookie token.
    Ok(String),
    Refused,
}

/// A dummy hash so that unknown names cost as much time as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub fn login(conn: &Connection, name: &str, password: &str, ip: IpAddr) -> rusqlite::Result<Login> {
    if !valid_account_name(name) {
        // Not a name any account could have: refused before it reaches the
        // database or the audit log (whose actor it would become).
        verify_password(password, dummy_hash());
        tracing::info!(%ip, name_bytes = name.len(), "console sign-in refused: not an account name");
        return Ok(Login::Refused);
    }
    let row: Option<(String, i64, i64, bool)> = conn
        .query_row(
            "SELECT password_hash, failed, locked_until_ms, disabled FROM console_users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    // The password is checked whatever the account's state, so that the
    // time taken does not tell a locked, disabled or unknown account apart.
    let (hash, failed, locked_until, disabled, known) = match row {
        Some((hash, failed, locked_until, disabled)) => {
            (hash, failed, locked_until, disabled, true)
        }
        None => (dummy_hash().to_owned(), 0, 0, false, false),
    };
    let password_ok = verify_password(password, &hash);
    let now = now_ms();
    let tx = super::write_tx(conn)?;
    if !known {
        audit::append(
            &tx,
            name,
            "login_failed",
            "console",
            &format!("unknown account from {ip}"),
        )?;
        tx.commit()?;
        return Ok(Login::Refused);
    }
    if locked_until > now {
        audit::append(
            &tx,
            name,
            "login_locked",
            "console",
            &format!("attempt while locked from {ip}"),
        )?;
        tx.commit()?;
        return Ok(Login::Refused);
    }
    if disabled || !password_ok {
        let failed = failed + 1;
        let lock = if failed >= LOCK_AFTER {
            now + LOCK_MS
        } else {
            0
        };
        tx.execute(
            "UPDATE console_users SET failed = ?2, locked_until_ms = ?3 WHERE name = ?1",
            params![name, if lock > 0 { 0 } else { failed }, lock],
        )?;
        audit::append(
            &tx,
            name,
            "login_failed",
            "console",
            &format!(
                "{} from {ip}{}",
                if disabled {
                    "account disabled"
                } else {
                    "wrong password"
                },
                if lock > 0 {
                    "; account locked for 15 minutes"
                } else {
                    ""
                }
            ),
        )?;
        tx.commit()?;
        return Ok(Login::Refused);
    }
    tx.execute(
        "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = ?1",
        [name],
    )?;
    let token = open_session(&tx, name)?;
    audit::append(&tx, name, "login", "console", &format!("from {ip}"))?;
    tx.commit()?;
    Ok(Login::Ok(token))
}

/// Starts a session for `name` inside the caller's transaction (which also
/// audits the sign-in) and clears expired ones; returns the cookie token.
pub fn open_session(tx: &Connection, name: &str) -> rusqlite::Result<String> {
    let now = now_ms();
    let token = random_token();
    tx.execute(
        "INSERT INTO console_sessions (token_hash, user, csrf, created_ms, last_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![token_hash(&token), name, random_token(), now],
    )?;
    tx.execute(
        "DELETE FROM console_sessions WHERE last_ms < ?1 OR created_ms < ?2",
        params![now - IDLE_MS, now - ABSOLUTE_MS],
    )?;
    Ok(token)
}

/// How stale a session's last-activity time may get before a request
/// refreshes it (saves a write per request).
const TOUCH_AFTER_MS: i64 = 30_000;

/// The viewer for a session cookie, or `Fail::Login`; the request counts as
/// activity and restarts the session's idle clock.
pub fn viewer(conn: &Connection, token: Option<&str>) -> Result<Viewer, Fail> {
    check_session(conn, token, true)
}

/// The viewer for a session cookie, or `Fail::Login`. `touch`: the request
/// is the user's own activity and restarts the idle clock; background polls
/// pass `false`, so an unattended open page still times out.
pub fn check_session(conn: &Connection, token: Option<&str>, touch: bool) -> Result<Viewer, Fail> {
    let token = token.ok_or(Fail::Login)?;
    let hash = token_hash(token);
    let now = now_ms();
    let row: Option<(String, String, i64, i64, String)> = conn
        .query_row(
            "SELECT s.user, s.csrf, s.created_ms, s.last_ms, u.role FROM console_sessions s
             JOIN console_users u ON u.name = s.user AND u.disabled = 0 WHERE s.token_hash = ?1",
            [&hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((name, csrf, created, last, role)) = row else {
        return Err(Fail::Login);
    };
    if last < now - IDLE_MS || created < now - ABSOLUTE_MS {
        conn.execute(
            "DELETE FROM console_sessions WHERE token_hash = ?1",
            [&hash],
        )?;
        return Err(Fail::Login);
    }
    if touch && now - last > TOUCH_AFTER_MS {
        conn.execute(
            "UPDATE console_sessions SET last_ms = ?2 WHERE token_hash = ?1",
            params![hash, now],
        )?;
    }
    let role = Role::parse(&role).ok_or(Fail::Forbidden)?;
    let queue = if role == Role::Technician {
        QueueAccess::of(role, super::settings::technician_queue(conn)?)
    } else {
        QueueAccess::of(role, super::settings::TechnicianQueue::None)
    };
    Ok(Viewer {
        name,
        role,
        csrf,
        session_hash: hash,
        queue,
    })
}

pub fn logout(conn: &Connection, viewer: &Viewer) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.execute(
        "DELETE FROM console_sessions WHERE token_hash = ?1",
        [&viewer.session_hash],
    )?;
    audit::append(&tx, &viewer.name, "logout", "console", "")?;
    tx.commit()
}

/// Names of accounts that can be assigned alerts in the viewer's scope.
pub fn reviewers(conn: &Connection, staff_scope: bool) -> rusqlite::Result<Vec<String>> {
    let roles = if staff_scope {
        "('head')"
    } else {
        "('dsl','deputy-dsl')"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT name FROM console_users WHERE disabled = 0 AND role IN {roles} ORDER BY name"
    ))?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}
