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

use super::Fail;
use crate::store::console::Console;
use crate::store::now_ms;
use crate::store::schools::Scope;
use crate::store::users::{Audited, NewSession};
use crate::store::StoreError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

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
    /// The schools the grant the session acts under covers.
    pub school: Scope,
    /// How many grants the account holds (it acts under one at a time and
    /// may switch to another: `/grants`).
    pub grants: usize,
}

impl Viewer {
    /// Whether the account's grant covers the whole trust: only such
    /// accounts change what holds for every school (settings, rule
    /// publication, notices, exemptions).
    pub fn trust_wide(&self) -> bool {
        self.school == Scope::Trust
    }
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

pub fn token_hash(token: &str) -> Vec<u8> {
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

/// Names the audit log gives actors that are not accounts (the command
/// line, the retention purge, a pupil's report): an account may not take
/// one, or its school would gain (or its grants move) their entries.
pub const RESERVED_NAMES: [&str; 3] = ["cli", "retention", "pupil-report"];

/// Creates an account, or replaces the password and role of an existing one.
pub fn add_user(db: &Console<'_>, name: &str, role: Role, password: &str) -> anyhow::Result<bool> {
    anyhow::ensure!(
        valid_account_name(name),
        "account names are 1-64 letters, digits, '.', '_', '-' or '@'"
    );
    anyhow::ensure!(
        !RESERVED_NAMES.contains(&name),
        "'{name}' is the name the audit log gives the command line, the retention purge or pupils' reports; choose another account name"
    );
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD_CHARS,
        "the password must be at least {MIN_PASSWORD_CHARS} characters"
    );
    let hash = hash_password(password)?;
    // Existing sessions end when an account's password or role changes.
    let school = new_account_school(db)?;
    Ok(db.put_account(name, &hash, role.as_str(), school, now_ms())?)
}

/// The grant a new account starts with when nobody chose one: the trust on
/// a collector of one school (as before schools), none on one of several
/// (fail closed: `users grant` gives it one).
pub fn new_account_school(db: &Console<'_>) -> Result<&'static str, StoreError> {
    Ok(if db.schools()?.len() > 1 {
        crate::store::schools::NO_SCHOOL
    } else {
        ""
    })
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

pub fn login(
    db: &Console<'_>,
    name: &str,
    password: &str,
    ip: IpAddr,
) -> Result<Login, StoreError> {
    if !valid_account_name(name) {
        // Not a name any account could have: refused before it reaches the
        // database or the audit log (whose actor it would become).
        verify_password(password, dummy_hash());
        tracing::info!(%ip, name_bytes = name.len(), "console sign-in refused: not an account name");
        return Ok(Login::Refused);
    }
    let row = db.login_row(name)?;
    // The password is checked whatever the account's state, so that the
    // time taken does not tell a locked, disabled or unknown account apart.
    let (hash, failed, locked_until, disabled, known) = match row {
        Some(r) => (
            r.password_hash,
            r.failed,
            r.locked_until_ms,
            r.disabled,
            true,
        ),
        None => (dummy_hash().to_owned(), 0, 0, false, false),
    };
    let password_ok = verify_password(password, &hash);
    let now = now_ms();
    if !known {
        db.audit(
            name,
            "login_failed",
            "console",
            &format!("unknown account from {ip}"),
        )?;
        return Ok(Login::Refused);
    }
    if locked_until > now {
        db.audit(
            name,
            "login_locked",
            "console",
            &format!("attempt while locked from {ip}"),
        )?;
        return Ok(Login::Refused);
    }
    if disabled || !password_ok {
        let failed = failed + 1;
        let lock = if failed >= LOCK_AFTER {
            now + LOCK_MS
        } else {
            0
        };
        let detail = format!(
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
        );
        db.record_login_failure(
            name,
            if lock > 0 { 0 } else { failed },
            lock,
            &Audited {
                actor: name,
                action: "login_failed",
                target: "console",
                detail: &detail,
            },
        )?;
        return Ok(Login::Refused);
    }
    let session = NewSessionToken::new(name, now);
    db.sign_in(
        &session.row(),
        &Audited {
            actor: name,
            action: "login",
            target: "console",
            detail: &format!("from {ip}"),
        },
    )?;
    Ok(Login::Ok(session.token))
}

/// A session about to be opened: the cookie's token and what the store keeps.
#[derive(Debug)]
pub struct NewSessionToken {
    pub token: String,
    hash: Vec<u8>,
    csrf: String,
    user: String,
    now: i64,
}

impl NewSessionToken {
    pub fn new(user: &str, now: i64) -> Self {
        let token = random_token();
        Self {
            hash: token_hash(&token),
            token,
            csrf: random_token(),
            user: user.to_owned(),
            now,
        }
    }

    /// The session row; sessions past their idle or absolute limit are
    /// cleared on the way.
    pub fn row(&self) -> NewSession<'_> {
        NewSession {
            token_hash: &self.hash,
            user: &self.user,
            csrf: &self.csrf,
            now_ms: self.now,
            idle_before_ms: self.now - IDLE_MS,
            created_before_ms: self.now - ABSOLUTE_MS,
        }
    }
}

/// How stale a session's last-activity time may get before a request
/// refreshes it (saves a write per request).
const TOUCH_AFTER_MS: i64 = 30_000;

/// The viewer for a session cookie, or `Fail::Login`; the request counts as
/// activity and restarts the session's idle clock.
pub fn viewer(db: &Console<'_>, token: Option<&str>) -> Result<Viewer, Fail> {
    check_session(db, token, true)
}

/// The viewer for a session cookie, or `Fail::Login`. `touch`: the request
/// is the user's own activity and restarts the idle clock; background polls
/// pass `false`, so an unattended open page still times out.
pub fn check_session(db: &Console<'_>, token: Option<&str>, touch: bool) -> Result<Viewer, Fail> {
    let token = token.ok_or(Fail::Login)?;
    let hash = token_hash(token);
    let now = now_ms();
    let Some(row) = db.session(&hash)? else {
        return Err(Fail::Login);
    };
    if row.last_ms < now - IDLE_MS || row.created_ms < now - ABSOLUTE_MS {
        db.end_session(&hash)?;
        return Err(Fail::Login);
    }
    if touch && now - row.last_ms > TOUCH_AFTER_MS {
        db.touch_session(&hash, now)?;
    }
    let role = Role::parse(&row.role).ok_or(Fail::Forbidden)?;
    let queue = if role == Role::Technician {
        QueueAccess::of(role, super::settings::technician_queue(db)?)
    } else {
        QueueAccess::of(role, super::settings::TechnicianQueue::None)
    };
    Ok(Viewer {
        name: row.user,
        role,
        csrf: row.csrf,
        session_hash: hash,
        queue,
        school: Scope::from_grant(&row.school),
        grants: usize::try_from(row.grants).unwrap_or(1),
    })
}

pub fn logout(db: &Console<'_>, viewer: &Viewer) -> Result<(), StoreError> {
    db.sign_out(
        &viewer.session_hash,
        &Audited {
            actor: &viewer.name,
            action: "logout",
            target: "console",
            detail: "",
        },
    )
}

/// Names of accounts that can be assigned alerts in the viewer's staff
/// scope about `school`: those whose grant covers that school.
pub fn reviewers(
    db: &Console<'_>,
    staff_scope: bool,
    school: &str,
) -> Result<Vec<String>, StoreError> {
    let roles: &[&str] = if staff_scope {
        &["head"]
    } else {
        &["dsl", "deputy-dsl"]
    };
    db.accounts_with_roles(roles, school)
}
