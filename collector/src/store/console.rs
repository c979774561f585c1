//! The review console's handle on the store. Pages run on blocking threads
//! and call the synchronous methods of [`Console`]; each change (a review
//! state change with its history and audit entry, a sign-in with its
//! session and audit entry) is one method, one transaction. No page sees a
//! connection.
//!
//! [`ConsoleStore`] is what the console keeps; [`ConsoleStore::with`] lends
//! a [`Console`] for one request. On SQLite every request takes the
//! console's one connection in turn; on PostgreSQL the console has a
//! connection of its own, driven from the blocking thread with the
//! runtime's handle (`store::postgres::console`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::agents::{NewToken, TokenInfo};
use super::audit::Entry;
use super::fleet::{Enrolled, Family, Gap, Revoked, Station, StationChange};
use super::review::{
    Alert, AlertFilter, Cursor, HistoryEntry, Listing, Note, QueueRow, RuleRate, Scope,
    TimelineRow, Transition, Walk,
};
use super::schools::{GrantChange, Scope as Schools, SettingsChange};
use super::sqlite;
use super::users::{
    AccountChange, AccountRow, AuditEntry, Audited, LoginRow, NewSession, Rotated, SessionRow,
    SsoAccount,
};
use super::StoreError;

/// The console's store, kept for the life of the console. Cheap to clone.
#[derive(Debug, Clone)]
pub enum ConsoleStore {
    Sqlite(Arc<Mutex<Connection>>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<super::postgres::console::PgConsole>),
}

impl ConsoleStore {
    /// Opens the SQLite store in `dir` and creates the console's tables.
    pub fn open_sqlite(dir: &Path) -> Result<Self, StoreError> {
        let conn = sqlite::open(dir)?;
        sqlite::console_schema::create(&conn)?;
        Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
    }

    /// Opens the store at `location` (on the current runtime), creating or
    /// upgrading the console's tables.
    pub async fn open(location: &super::Location) -> Result<Self, StoreError> {
        match location {
            super::Location::Sqlite(dir) => Self::open_sqlite(dir),
            #[cfg(feature = "postgres")]
            super::Location::Postgres(config) => Ok(Self::Postgres(Arc::new(
                super::postgres::console::PgConsole::open(config).await?,
            ))),
        }
    }

    /// Whether this is the embedded store (SQLite).
    pub fn embedded(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }

    /// Runs `f` with the store on this (blocking) thread. Returns what `f`
    /// returned, and `false` when `f` left a transaction open: it was rolled
    /// back, so the shared connection never keeps the write lock (ingest's
    /// writer would wait on it) or gathers later work into a transaction
    /// that is never committed.
    pub fn with<T>(&self, f: impl FnOnce(&Console<'_>) -> T) -> (T, bool) {
        match self {
            Self::Sqlite(db) => {
                let conn = db.lock().unwrap_or_else(|p| p.into_inner());
                let value = f(&Console::Sqlite(&conn));
                if conn.is_autocommit() {
                    return (value, true);
                }
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %e, "rolling back the console's open transaction failed");
                }
                (value, false)
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => (pg.with(|p| f(&Console::Postgres(p))), true),
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Console<'_>) -> T + Send + 'static,
    ) -> T {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with(f).0)
            .await
            .expect("a console store task does not panic")
    }
}

/// The console's view of the store for one request.
#[derive(Debug, Clone, Copy)]
pub enum Console<'a> {
    Sqlite(&'a Connection),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::console::Pg<'a>),
}

/// Runs `$sqlite` on the SQLite connection `$c`, or `$pg` on PostgreSQL's
/// `$p`, behind `$self`.
macro_rules! on {
    ($self:expr, $c:ident => $sqlite:expr, $p:ident => $pg:expr) => {
        match $self {
            Console::Sqlite($c) => Ok($sqlite?),
            #[cfg(feature = "postgres")]
            Console::Postgres($p) => $pg,
        }
    };
}

impl Console<'_> {
    /// The SQLite connection (to create tables SQLite makes when first
    /// used); `None` on other backends.
    pub fn legacy(&self) -> Option<&Connection> {
        match self {
            Console::Sqlite(c) => Some(c),
            #[cfg(feature = "postgres")]
            Console::Postgres(_) => None,
        }
    }

    // Accounts and sessions.

    pub fn login_row(&self, name: &str) -> Result<Option<LoginRow>, StoreError> {
        on!(self, c => sqlite::users::login_row(c, name), p => p.login_row(name))
    }

    /// Records a failed sign-in (the new count and lock) with its audit entry.
    pub fn record_login_failure(
        &self,
        name: &str,
        failed: i64,
        locked_until_ms: i64,
        entry: &Audited<'_>,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::users::record_failure(c, name, failed, locked_until_ms, entry), p => p.record_login_failure(name, failed, locked_until_ms, entry))
    }

    /// A password sign-in: failures cleared, session opened, expired
    /// sessions cleared, audited; one transaction.
    pub fn sign_in(&self, session: &NewSession<'_>, entry: &Audited<'_>) -> Result<(), StoreError> {
        on!(self, c => sqlite::users::sign_in(c, session, entry), p => p.sign_in(session, entry))
    }

    /// Single sign-on: `decide` sees the account and its link and either
    /// lets it in (the audit entry of the sign-in) or refuses (why, and the
    /// audit entry of the refusal). Let in, the account is created or given
    /// `role`, linked to `subject` and its session opened; one transaction.
    pub fn sso_sign_in<R>(
        &self,
        provider: &str,
        subject: &str,
        role: &str,
        new_school: &str,
        session: &NewSession<'_>,
        decide: impl FnOnce(&SsoAccount) -> Result<AuditEntry, (R, AuditEntry)>,
    ) -> Result<Result<(), R>, StoreError> {
        on!(self, c => sqlite::users::sso_sign_in(c, provider, subject, role, new_school, session, decide), p => p.sso_sign_in(provider, subject, role, new_school, session, decide))
    }

    /// The session with this token hash, if its account is enabled.
    pub fn session(&self, token_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        on!(self, c => sqlite::users::session(c, token_hash), p => p.session(token_hash))
    }

    pub fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        on!(self, c => sqlite::users::delete_session(c, token_hash), p => p.end_session(token_hash))
    }

    pub fn touch_session(&self, token_hash: &[u8], now_ms: i64) -> Result<(), StoreError> {
        on!(self, c => sqlite::users::touch_session(c, token_hash, now_ms), p => p.touch_session(token_hash, now_ms))
    }

    /// Ends a session with its audit entry.
    pub fn sign_out(&self, token_hash: &[u8], entry: &Audited<'_>) -> Result<(), StoreError> {
        on!(self, c => sqlite::users::sign_out(c, token_hash, entry), p => p.sign_out(token_hash, entry))
    }

    /// Names of the enabled accounts with one of `roles` whose grant covers
    /// `school` (the trust's, or that school's).
    pub fn accounts_with_roles(
        &self,
        roles: &[&str],
        school: &str,
    ) -> Result<Vec<String>, StoreError> {
        on!(self, c => sqlite::users::names_with_roles(c, roles, school), p => p.accounts_with_roles(roles, school))
    }

    /// Creates an account or replaces its password and role, ending its
    /// sessions (audited as the command line's); whether it existed.
    pub fn put_account(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
        new_school: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::users::put_account(c, name, password_hash, role, new_school, now_ms), p => p.put_account(name, password_hash, role, new_school, now_ms))
    }

    /// Changes an account (audited as the command line's); `false` when
    /// there is no such account.
    pub fn change_account(
        &self,
        name: &str,
        change: AccountChange<'_>,
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::users::change_account(c, name, change), p => p.change_account(name, change))
    }

    pub fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        on!(self, c => sqlite::users::accounts(c), p => p.accounts())
    }

    /// Changes school `id`'s own settings (time zone, retention), audited
    /// with `entry`; `false` (nothing changed) when there is no such school.
    pub fn set_school_settings(
        &self,
        id: &str,
        change: &SettingsChange<'_>,
        entry: &Audited<'_>,
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::schools::set_settings(c, id, change, entry), p => p.set_school_settings(id, change, entry))
    }

    /// Every school, by id.
    pub fn schools(&self) -> Result<Vec<super::schools::School>, StoreError> {
        on!(self, c => sqlite::schools::list(c), p => p.schools())
    }

    /// Changes account `name`'s grants (see [`GrantChange`]), ending its
    /// sessions, audited as the command line's; the grants (role, scope) it
    /// then holds, or `None` when there is no such account.
    pub fn grant(
        &self,
        name: &str,
        role: &str,
        change: GrantChange<'_>,
    ) -> Result<Option<Vec<(String, Schools)>>, StoreError> {
        let detail = match change {
            GrantChange::Set(scope) => format!("role={role}; scope={}", scope.label()),
            GrantChange::Add(scope) => format!("role={role}; added={}", scope.label()),
            GrantChange::Remove(scope) if role.is_empty() => {
                format!("removed={}", scope.label())
            }
            GrantChange::Remove(scope) => format!("role={role}; removed={}", scope.label()),
        };
        let target = format!("user:{name}");
        let entry = Audited {
            actor: "cli",
            action: if matches!(change, GrantChange::Remove(_)) {
                "account_grant_revoked"
            } else {
                "account_granted"
            },
            target: &target,
            detail: &detail,
        };
        on!(self, c => sqlite::grants::grant(c, name, role, change, &entry), p => p.grant(name, role, change, &entry))
    }

    /// Account `name`'s grants: (role, stored schools: '' for the trust),
    /// the one a sign-in acts under first.
    pub fn grants_of(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        on!(self, c => sqlite::grants::grants_of(c, name), p => p.grants_of(name))
    }

    /// Makes a session act under its account's grant of `role` with the
    /// new token and CSRF token of `rotated` (the old ones stop working),
    /// audited with `entry`; `false` (nothing changed) when it holds no
    /// such grant.
    pub fn switch_grant(
        &self,
        token_hash: &[u8],
        role: &str,
        rotated: &Rotated<'_>,
        entry: &Audited<'_>,
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::grants::switch(c, token_hash, role, rotated, entry), p => p.switch_grant(token_hash, role, rotated, entry))
    }

    /// Moves unrevoked agent `agent_id` to school `to`, audited: its later
    /// alerts belong to `to`, its earlier ones stay with the school they
    /// were made in. The school it left, or `None` when there is no such
    /// agent or school.
    pub fn move_agent_school(
        &self,
        agent_id: &str,
        to: &str,
        entry: &Audited<'_>,
    ) -> Result<Option<String>, StoreError> {
        on!(self, c => sqlite::schools::move_agent(c, agent_id, to, entry), p => p.move_agent_school(agent_id, to, entry))
    }

    // The audit log.

    /// Appends one entry on its own.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::audit::append(c, actor, action, target, detail), p => p.audit(actor, action, target, detail))
    }

    /// The number of entries, or the id of the first that breaks the chain.
    pub fn audit_chain(&self) -> Result<Result<usize, i64>, StoreError> {
        on!(self, c => sqlite::audit::verify(c), p => p.audit_chain())
    }

    /// The newest `limit` entries `scope` allows, of `actor` only when given.
    pub fn audit_recent(
        &self,
        scope: &Schools,
        limit: i64,
        actor: Option<&str>,
    ) -> Result<Vec<Entry>, StoreError> {
        on!(self, c => sqlite::audit::recent(c, scope, limit, actor), p => p.audit_recent(scope, limit, actor))
    }

    // Settings and the staff list.

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        on!(self, c => sqlite::settings::get(c, key), p => p.setting(key))
    }

    /// Sets `key` unless it already holds `value`, audited with
    /// `detail(previous)`; whether it changed.
    pub fn change_setting(
        &self,
        key: &str,
        value: &str,
        actor: &str,
        now_ms: i64,
        detail: impl FnOnce(Option<&str>) -> String,
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::settings::change(c, key, value, actor, now_ms, detail), p => p.change_setting(key, value, actor, now_ms, detail))
    }

    /// The value of `key`, set to `value` first if it has none.
    pub fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        on!(self, c => sqlite::settings::get_or_insert(c, key, value, now_ms), p => p.setting_or_insert(key, value, now_ms))
    }

    /// Replaces the staff list ((username, groups)), with its audit entry.
    pub fn replace_staff(
        &self,
        staff: &[(String, String)],
        now_ms: i64,
        entry: &Audited<'_>,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::settings::replace_staff(c, staff, now_ms, entry), p => p.replace_staff(staff, now_ms, entry))
    }

    // Alerts and their review.

    /// A page of the queue: rows matching `filter` in queue order, from a
    /// cursor when given.
    pub fn queue_rows(
        &self,
        filter: &AlertFilter,
        keyset: Option<(Cursor, Walk)>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<QueueRow>, StoreError> {
        on!(self, c => sqlite::review::queue_rows(c, filter, keyset, offset, limit), p => p.queue_rows(filter, keyset, offset, limit))
    }

    /// Alerts per state for the filters other than the state.
    pub fn state_counts(&self, filter: &AlertFilter) -> Result<Vec<(String, i64)>, StoreError> {
        on!(self, c => sqlite::review::state_counts(c, filter), p => p.state_counts(filter))
    }

    /// The newest alert's id among the schools `scope` allows.
    pub fn max_alert_id(&self, scope: &Schools) -> Result<i64, StoreError> {
        on!(self, c => sqlite::review::max_alert_id(c, scope), p => p.max_alert_id(scope))
    }

    /// Alert `id`, if `scope` allows it.
    pub fn alert(&self, scope: &Scope, id: i64) -> Result<Option<Alert>, StoreError> {
        on!(self, c => sqlite::review::alert(c, scope, id), p => p.alert(scope, id))
    }

    /// Every alert about `account` (any case) that `scope` allows, oldest first.
    /// The alerts `alerts list` shows (the command line sees every scope).
    pub fn listing(&self, listing: &Listing) -> Result<Vec<Alert>, StoreError> {
        on!(self, c => sqlite::review::listing(c, listing), p => p.listing(listing))
    }

    /// Recorded sequence gaps.
    pub fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        on!(self, c => sqlite::fleet::gaps(c), p => p.gaps())
    }

    /// Every enrolled agent, revoked ones included.
    pub fn enrolled(&self) -> Result<Vec<Enrolled>, StoreError> {
        on!(self, c => sqlite::fleet::enrolled(c), p => p.enrolled())
    }

    pub fn alerts_of(&self, scope: &Scope, account: &str) -> Result<Vec<Alert>, StoreError> {
        on!(self, c => sqlite::review::alerts_of(c, scope, account), p => p.alerts_of(scope, account))
    }

    /// The alert an event raised (not a folded repeat or burst shot).
    pub fn original_alert_id(
        &self,
        agent_id: &str,
        event_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        on!(self, c => sqlite::review::original_id(c, agent_id, event_id), p => p.original_alert_id(agent_id, event_id))
    }

    pub fn agent_public_key(&self, agent_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        on!(self, c => sqlite::review::agent_public_key(c, agent_id), p => p.agent_public_key(agent_id))
    }

    /// Whether the session revealed the alert's capture.
    pub fn revealed(&self, session_hash: &[u8], alert_id: i64) -> Result<bool, StoreError> {
        on!(self, c => sqlite::review::revealed(c, session_hash, alert_id), p => p.revealed(session_hash, alert_id))
    }

    /// (alerts, false positives) of a rule that `scope` allows.
    pub fn rule_rate(&self, scope: &Scope, rule_id: &str) -> Result<(i64, i64), StoreError> {
        on!(self, c => sqlite::review::rule_rate(c, scope, rule_id), p => p.rule_rate(scope, rule_id))
    }

    pub fn rule_rates(&self, scope: &Scope) -> Result<Vec<RuleRate>, StoreError> {
        on!(self, c => sqlite::review::rule_rates(c, scope), p => p.rule_rates(scope))
    }

    /// Burst shots (with captures) that follow an event, in order.
    pub fn burst_shots(&self, agent_id: &str, event_id: &str) -> Result<Vec<i64>, StoreError> {
        on!(self, c => sqlite::review::burst_shots(c, agent_id, event_id), p => p.burst_shots(agent_id, event_id))
    }

    pub fn notes(&self, alert_id: i64) -> Result<Vec<Note>, StoreError> {
        on!(self, c => sqlite::review::notes(c, alert_id), p => p.notes(alert_id))
    }

    pub fn history(&self, alert_id: i64) -> Result<Vec<HistoryEntry>, StoreError> {
        on!(self, c => sqlite::review::history(c, alert_id), p => p.history(alert_id))
    }

    /// The newest 50 alerts about `user` that `scope` allows.
    pub fn timeline(&self, scope: &Scope, user: &str) -> Result<Vec<TimelineRow>, StoreError> {
        on!(self, c => sqlite::review::timeline(c, scope, user), p => p.timeline(scope, user))
    }

    /// What an alert's row holds of its capture: the sealed bytes, or the
    /// key of the object that holds them.
    pub fn stored_capture(
        &self,
        alert_id: i64,
    ) -> Result<Option<super::blob::StoredCapture>, StoreError> {
        on!(self, c => sqlite::blob::stored_capture(c, alert_id), p => p.stored_capture(alert_id))
    }

    pub fn capture_sha256(&self, alert_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        on!(self, c => sqlite::review::capture_sha256(c, alert_id), p => p.capture_sha256(alert_id))
    }

    /// A capture's SHA-256 as its agent signed it, and its width and height
    /// as recorded at ingest.
    pub fn capture_facts(&self, alert_id: i64) -> Result<Option<CaptureFacts>, StoreError> {
        on!(self, c => sqlite::review::capture_facts(c, alert_id), p => p.capture_facts(alert_id))
    }

    /// Records a reveal for the session with its audit entry.
    pub fn record_reveal(
        &self,
        session_hash: &[u8],
        alert_id: i64,
        user: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::review::record_reveal(c, session_hash, alert_id, user, reason, now_ms), p => p.record_reveal(session_hash, alert_id, user, reason, now_ms))
    }

    /// Moves alerts, each with its history and audit entry, then audits
    /// `closing(moved)` (action, target, detail) when given; one
    /// transaction. An alert no longer in its `from` state is left alone;
    /// returns how many moved.
    pub fn transitions(
        &self,
        actor: &str,
        transitions: &[Transition<'_>],
        now_ms: i64,
        closing: Option<&dyn Fn(usize) -> (String, String, String)>,
    ) -> Result<usize, StoreError> {
        on!(self, c => sqlite::review::transitions(c, actor, transitions, now_ms, closing), p => p.transitions(actor, transitions, now_ms, closing))
    }

    pub fn assign(
        &self,
        actor: &str,
        alert_id: i64,
        assignee: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::review::assign(c, actor, alert_id, assignee, now_ms), p => p.assign(actor, alert_id, assignee, now_ms))
    }

    pub fn add_note(
        &self,
        author: &str,
        alert_id: i64,
        text: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on!(self, c => sqlite::review::add_note(c, author, alert_id, text, now_ms), p => p.add_note(author, alert_id, text, now_ms))
    }

    // Stations and enrolment tokens.

    /// Every unrevoked station `scope` allows, by group and name (none
    /// marked silent).
    pub fn stations(&self, scope: &Schools) -> Result<Vec<Station>, StoreError> {
        on!(self, c => sqlite::fleet::stations(c, scope), p => p.stations(scope))
    }

    /// (station, group, flag) of an unrevoked station `scope` allows.
    pub fn station(
        &self,
        scope: &Schools,
        agent_id: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        on!(self, c => sqlite::fleet::station(c, scope, agent_id), p => p.station(scope, agent_id))
    }

    /// Identities re-keyed from `agent_id` (cloned images), transitively.
    pub fn descendants(&self, agent_id: &str) -> Result<Vec<String>, StoreError> {
        on!(self, c => sqlite::agents::descendants(c, agent_id), p => p.descendants(agent_id))
    }

    /// Revokes an identity and, as `family` says, its re-keyed
    /// descendants, each audited as by `actor`; one transaction.
    pub fn revoke_family(
        &self,
        agent_id: &str,
        family: Family,
        actor: &str,
    ) -> Result<Revoked, StoreError> {
        on!(self, c => sqlite::fleet::revoke_family(c, agent_id, family, actor), p => p.revoke_family(agent_id, family, actor))
    }

    /// Applies `change` to the stations (each with its audit entry) in one
    /// transaction; `false`, changing nothing, when the first is revoked
    /// already.
    pub fn change_stations(
        &self,
        change: StationChange,
        targets: &[(String, Audited<'_>)],
    ) -> Result<bool, StoreError> {
        on!(self, c => sqlite::fleet::change_stations(c, change, targets), p => p.change_stations(change, targets))
    }

    /// The enrolment tokens of the schools `scope` allows, newest first.
    pub fn tokens(&self, scope: &Schools) -> Result<Vec<TokenInfo>, StoreError> {
        on!(self, c => sqlite::agents::tokens_of(c, scope.json().as_deref()), p => p.tokens(scope))
    }

    pub fn create_token(&self, row: &NewToken, entry: &Audited<'_>) -> Result<(), StoreError> {
        on!(self, c => sqlite::fleet::create_token(c, row, entry), p => p.create_token(row, entry))
    }

    pub fn revoke_token(&self, id: &str, entry: &Audited<'_>) -> Result<(), StoreError> {
        on!(self, c => sqlite::fleet::revoke_token(c, id, entry), p => p.revoke_token(id, entry))
    }
}

/// What the store records of a capture besides its sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFacts {
    pub sha256: Vec<u8>,
    pub width: u32,
    pub height: u32,
}
