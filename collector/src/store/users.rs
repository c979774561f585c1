//! Console accounts, their sessions and their single sign-on links, as
//! every backend stores them.

/// What a password sign-in needs to know about an account.
#[derive(Debug, Clone)]
pub struct LoginRow {
    /// Argon2id hash; empty for single sign-on accounts.
    pub password_hash: String,
    pub failed: i64,
    pub locked_until_ms: i64,
    pub disabled: bool,
}

/// A session and its (enabled) account.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user: String,
    pub csrf: String,
    pub created_ms: i64,
    pub last_ms: i64,
    /// The role of the grant the session acts under.
    pub role: String,
    /// That grant's schools ('' for the trust).
    pub school: String,
    /// How many grants the account holds.
    pub grants: i64,
}

/// A session to open: the store keeps only the token's hash.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub user: &'a str,
    pub csrf: &'a str,
    pub now_ms: i64,
    /// Sessions idle since before this are deleted on the way.
    pub idle_before_ms: i64,
    /// Sessions created before this are deleted on the way.
    pub created_before_ms: i64,
}

/// The new secrets of a session that changes what it may do (a switch of
/// grant): the old token and CSRF token stop working in the same
/// transaction.
#[derive(Debug, Clone, Copy)]
pub struct Rotated<'a> {
    pub token_hash: &'a [u8],
    pub csrf: &'a str,
}

/// An audit entry written in the same transaction as the change it records.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
}

/// A change the command line makes to an account; each ends with an audit
/// entry by `cli`.
#[derive(Debug, Clone, Copy)]
pub enum AccountChange<'a> {
    /// A new password hash: clears failures and the lock, ends sessions.
    Password(&'a str),
    /// Clears failures and the lock.
    Unlock,
    /// Ends the account's sessions too.
    Disable,
    Enable,
}

/// One account, as `user list` shows it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub failed: i64,
    pub locked_until_ms: i64,
    pub disabled: bool,
    /// No password: the account signs in through a provider.
    pub single_sign_on: bool,
    /// Its grants: (role, stored schools: '' for the trust), in role
    /// order.
    pub grants: Vec<(String, String)>,
}

/// What the store knows about an email address a provider vouched for.
#[derive(Debug, Clone)]
pub struct SsoAccount {
    /// (password hash, disabled) of an account with that name.
    pub account: Option<(String, bool)>,
    /// The provider subject the name is linked to.
    pub linked_subject: Option<String>,
}

/// An audit entry a decision made inside a unit of work calls for.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub detail: String,
}

impl AuditEntry {
    pub fn borrow(&self) -> Audited<'_> {
        Audited {
            actor: &self.actor,
            action: self.action,
            target: &self.target,
            detail: &self.detail,
        }
    }
}
