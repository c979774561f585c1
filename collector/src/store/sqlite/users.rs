//! Console accounts, sessions and single sign-on links in SQLite. Every
//! change runs in one write transaction with its audit entry.

use rusqlite::{params, Connection, OptionalExtension};

use super::audit::insert as audit;
use super::write_tx;
use crate::store::users::{
    AccountChange, AccountRow, AuditEntry, Audited, LoginRow, NewSession, SessionRow, SsoAccount,
};

pub fn login_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<LoginRow>> {
    conn.query_row(
        "SELECT password_hash, failed, locked_until_ms, disabled FROM console_users WHERE name = ?1",
        [name],
        |r| {
            Ok(LoginRow {
                password_hash: r.get(0)?,
                failed: r.get(1)?,
                locked_until_ms: r.get(2)?,
                disabled: r.get(3)?,
            })
        },
    )
    .optional()
}

pub fn account_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM console_users WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// Records a failed sign-in: the new failure count and lock.
pub fn record_failure(
    conn: &Connection,
    name: &str,
    failed: i64,
    locked_until_ms: i64,
    entry: &Audited<'_>,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute(
        "UPDATE console_users SET failed = ?2, locked_until_ms = ?3 WHERE name = ?1",
        params![name, failed, locked_until_ms],
    )?;
    audit(&tx, entry)?;
    tx.commit()
}

fn insert_session(conn: &Connection, s: &NewSession<'_>) -> rusqlite::Result<()> {
    // A new session acts under the account's first grant.
    conn.execute(
        "INSERT INTO console_sessions (token_hash, user, csrf, created_ms, last_ms, role) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![s.token_hash, s.user, s.csrf, s.now_ms, super::grants::first_role(conn, s.user)?],
    )?;
    conn.execute(
        "DELETE FROM console_sessions WHERE last_ms < ?1 OR created_ms < ?2",
        params![s.idle_before_ms, s.created_before_ms],
    )?;
    Ok(())
}

/// A successful password sign-in: clears failures, opens the session,
/// clears expired ones, audits.
pub fn sign_in(
    conn: &Connection,
    session: &NewSession<'_>,
    entry: &Audited<'_>,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute(
        "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = ?1",
        [session.user],
    )?;
    insert_session(&tx, session)?;
    audit(&tx, entry)?;
    tx.commit()
}

pub fn session(conn: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<SessionRow>> {
    conn.query_row(
        "SELECT s.user, s.csrf, s.created_ms, s.last_ms, g.role, g.school,
                (SELECT COUNT(*) FROM console_grants n WHERE n.user = u.name)
         FROM console_sessions s
         JOIN console_users u ON u.name = s.user AND u.disabled = 0
         JOIN console_grants g ON g.user = u.name AND g.role = s.role WHERE s.token_hash = ?1",
        [token_hash],
        |r| {
            Ok(SessionRow {
                user: r.get(0)?,
                csrf: r.get(1)?,
                created_ms: r.get(2)?,
                last_ms: r.get(3)?,
                role: r.get(4)?,
                school: r.get(5)?,
                grants: r.get(6)?,
            })
        },
    )
    .optional()
}

pub fn delete_session(conn: &Connection, token_hash: &[u8]) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM console_sessions WHERE token_hash = ?1",
        [token_hash],
    )?;
    Ok(())
}

pub fn touch_session(conn: &Connection, token_hash: &[u8], now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE console_sessions SET last_ms = ?2 WHERE token_hash = ?1",
        params![token_hash, now_ms],
    )?;
    Ok(())
}

pub fn sign_out(conn: &Connection, token_hash: &[u8], entry: &Audited<'_>) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    delete_session(&tx, token_hash)?;
    audit(&tx, entry)?;
    tx.commit()
}

/// Enabled accounts with a grant of one of `roles` covering `school`, by
/// name.
pub fn names_with_roles(
    conn: &Connection,
    roles: &[&str],
    school: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT u.name, g.role FROM console_users u JOIN console_grants g ON g.user = u.name
         WHERE u.disabled = 0 AND (g.school = '' OR instr(',' || g.school || ',', ',' || ?1 || ',') > 0)
         ORDER BY u.name",
    )?;
    let rows = stmt.query_map([school], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut names = Vec::new();
    for row in rows {
        let (name, role) = row?;
        if roles.contains(&role.as_str()) && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Creates an account or replaces its password and role (ending its
/// sessions); returns whether it existed.
pub fn put_account(
    conn: &Connection,
    name: &str,
    password_hash: &str,
    role: &str,
    new_school: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let tx = write_tx(conn)?;
    let existed = account_exists(&tx, name)?;
    tx.execute(
        "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET password_hash = ?2, role = ?3, failed = 0, locked_until_ms = 0",
        params![name, password_hash, role, now_ms],
    )?;
    super::grants::keep_role(&tx, name, role, new_school)?;
    tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    audit(
        &tx,
        &Audited {
            actor: "cli",
            action: if existed {
                "account_updated"
            } else {
                "account_created"
            },
            target: &format!("user:{name}"),
            detail: &format!("role={role}"),
        },
    )?;
    tx.commit()?;
    Ok(existed)
}

/// Applies `change` to account `name`; `false` when there is no such account.
pub fn change_account(
    conn: &Connection,
    name: &str,
    change: AccountChange<'_>,
) -> rusqlite::Result<bool> {
    let tx = write_tx(conn)?;
    if !account_exists(&tx, name)? {
        return Ok(false);
    }
    let (action, ends_sessions) = match change {
        AccountChange::Password(hash) => {
            tx.execute(
                "UPDATE console_users SET password_hash = ?2, failed = 0, locked_until_ms = 0 WHERE name = ?1",
                params![name, hash],
            )?;
            ("password_reset", true)
        }
        AccountChange::Unlock => {
            tx.execute(
                "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = ?1",
                [name],
            )?;
            ("account_unlocked", false)
        }
        AccountChange::Disable => {
            tx.execute(
                "UPDATE console_users SET disabled = 1 WHERE name = ?1",
                [name],
            )?;
            ("account_disabled", true)
        }
        AccountChange::Enable => {
            tx.execute(
                "UPDATE console_users SET disabled = 0, failed = 0, locked_until_ms = 0 WHERE name = ?1",
                [name],
            )?;
            ("account_enabled", false)
        }
    };
    if ends_sessions {
        tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    }
    audit(
        &tx,
        &Audited {
            actor: "cli",
            action,
            target: &format!("user:{name}"),
            detail: "",
        },
    )?;
    tx.commit()?;
    Ok(true)
}

pub fn accounts(conn: &Connection) -> rusqlite::Result<Vec<AccountRow>> {
    let mut stmt = conn.prepare(
        "SELECT name, role, failed, locked_until_ms, disabled, password_hash = '' FROM console_users ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AccountRow {
            name: r.get(0)?,
            role: r.get(1)?,
            failed: r.get(2)?,
            locked_until_ms: r.get(3)?,
            disabled: r.get(4)?,
            single_sign_on: r.get(5)?,
            grants: Vec::new(),
        })
    })?;
    let mut accounts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    for a in &mut accounts {
        a.grants = super::grants::grants_of(conn, &a.name)?;
    }
    Ok(accounts)
}

/// Single sign-on: looks the account and its link up and, when `decide`
/// lets it in (returns `None`), creates or refreshes the account with
/// `role`, links it to the subject and opens the session, all in one
/// transaction with the audit entry `decide`'s outcome calls for.
pub fn sso_sign_in<R>(
    conn: &Connection,
    provider: &str,
    subject: &str,
    role: &str,
    new_school: &str,
    session: &NewSession<'_>,
    decide: impl FnOnce(&SsoAccount) -> Result<AuditEntry, (R, AuditEntry)>,
) -> rusqlite::Result<Result<(), R>> {
    let name = session.user;
    let tx = write_tx(conn)?;
    let account = tx
        .query_row(
            "SELECT password_hash, disabled FROM console_users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let linked_subject = tx
        .query_row(
            "SELECT subject FROM console_oidc_accounts WHERE provider = ?1 AND name = ?2",
            params![provider, name],
            |r| r.get(0),
        )
        .optional()?;
    let found = SsoAccount {
        account,
        linked_subject,
    };
    let entry = match decide(&found) {
        Ok(entry) => entry,
        Err((refusal, entry)) => {
            audit(&tx, &entry.borrow())?;
            tx.commit()?;
            return Ok(Err(refusal));
        }
    };
    // No password: such an account signs in through its provider only.
    tx.execute(
        "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES (?1, '', ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET role = ?2",
        params![name, role, session.now_ms],
    )?;
    super::grants::keep_role(&tx, name, role, new_school)?;
    tx.execute(
        "INSERT INTO console_oidc_accounts (provider, subject, name, first_ms, last_ms) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(provider, subject) DO UPDATE SET name = ?3, last_ms = ?4",
        params![provider, subject, name, session.now_ms],
    )?;
    insert_session(&tx, session)?;
    audit(&tx, &entry.borrow())?;
    tx.commit()?;
    Ok(Ok(()))
}
