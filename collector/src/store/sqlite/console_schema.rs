//! The review console's tables in SQLite, created at startup beside the
//! ingest schema. Notes, state history, reveals and the audit log are
//! append-only: triggers refuse updates and deletes, and the audit log is
//! hash-chained as well so that a change made around the triggers still shows.

use rusqlite::Connection;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    -- The role of the account's grant the session acts under.
    role TEXT NOT NULL DEFAULT ''
);
-- Single sign-on accounts: which provider subject a console account
-- belongs to. An email address later given to another person at the
-- provider (another subject) does not inherit the account.
CREATE TABLE IF NOT EXISTS console_oidc_accounts (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, subject),
    UNIQUE (provider, name)
);
-- School settings changed in the console (each change audited) and the
-- key behind neutral rule ids.
CREATE TABLE IF NOT EXISTS console_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS console_staff (
    username TEXT PRIMARY KEY,
    groups TEXT NOT NULL DEFAULT '',
    imported_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS console_review (
    alert_id INTEGER PRIMARY KEY,
    assignee TEXT NOT NULL DEFAULT '',
    fp_reason TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS console_history (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS console_history_alert ON console_history (alert_id, id);
CREATE TABLE IF NOT EXISTS console_notes (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_notes_alert ON console_notes (alert_id, id);
CREATE TABLE IF NOT EXISTS console_reveals (
    id INTEGER PRIMARY KEY,
    session_hash BLOB NOT NULL,
    alert_id INTEGER NOT NULL,
    user TEXT NOT NULL,
    reason TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS console_reveals_session ON console_reveals (session_hash, alert_id);
CREATE TABLE IF NOT EXISTS console_audit (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS console_audit_no_update BEFORE UPDATE ON console_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_audit_no_delete BEFORE DELETE ON console_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_notes_no_update BEFORE UPDATE ON console_notes
    BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_notes_no_delete BEFORE DELETE ON console_notes
    BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_history_no_update BEFORE UPDATE ON console_history
    BEGIN SELECT RAISE(ABORT, 'state history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_history_no_delete BEFORE DELETE ON console_history
    BEGIN SELECT RAISE(ABORT, 'state history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_reveals_no_update BEFORE UPDATE ON console_reveals
    BEGIN SELECT RAISE(ABORT, 'reveals are append-only'); END;
CREATE TRIGGER IF NOT EXISTS console_reveals_no_delete BEFORE DELETE ON console_reveals
    BEGIN SELECT RAISE(ABORT, 'reveals are append-only'); END;
-- The queue walks alerts by risk and stops after a page; the pupil timeline
-- and the per-rule false-positive counts need their own paths.
CREATE INDEX IF NOT EXISTS console_alerts_risk ON alerts (severity DESC, time_ms DESC);
CREATE INDEX IF NOT EXISTS console_alerts_user ON alerts (user, time_ms DESC);
CREATE INDEX IF NOT EXISTS console_alerts_rule ON alerts (rule_id, state);
";

/// Creates the console's tables and indexes if they do not exist. Another
/// process (`serve` and a command run beside it) may be doing the same: the
/// checks and the columns they add run under the write lock, in one
/// transaction, unless the caller's transaction already holds it.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch(SCHEMA)?;
        return super::schools::console_upgrade(conn);
    }
    let tx = super::write_tx(conn)?;
    tx.execute_batch(SCHEMA)?;
    super::schools::console_upgrade(&tx)?;
    tx.commit()
}
