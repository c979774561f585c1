//! Console accounts' grants on SQLite: one row per (account, role), the
//! role over the trust ('') or a set of schools (their ids joined by ','),
//! and the grant each session acts under.

use rusqlite::{params, Connection};

use super::audit::insert as audit;
use super::users::account_exists;
use crate::store::schools::{role_rank, GrantChange, Scope};
use crate::store::users::{Audited, Rotated};

/// 4: several grants per account (keyed by account and role), and the
/// grant each session acts under (a session open across the upgrade acts
/// under its account's one grant).
pub fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let old_key: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('console_grants') WHERE name = 'role' AND pk = 0)",
        [],
        |r| r.get(0),
    )?;
    if old_key {
        conn.execute_batch(
            "CREATE TABLE console_grants_v4 (
                 user TEXT NOT NULL,
                 role TEXT NOT NULL,
                 school TEXT NOT NULL DEFAULT '',
                 PRIMARY KEY (user, role)
             );
             INSERT INTO console_grants_v4 (user, role, school)
                 SELECT user, role, school FROM console_grants;
             DROP TABLE console_grants;
             ALTER TABLE console_grants_v4 RENAME TO console_grants;",
        )?;
    }
    let sessions: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'console_sessions'),
                EXISTS (SELECT 1 FROM pragma_table_info('console_sessions') WHERE name = 'role')",
        [],
        |r| Ok(r.get::<_, bool>(0)? && !r.get::<_, bool>(1)?),
    )?;
    if sessions {
        conn.execute_batch(
            "ALTER TABLE console_sessions ADD COLUMN role TEXT NOT NULL DEFAULT '';
             UPDATE console_sessions SET role = COALESCE(
                 (SELECT g.role FROM console_grants g WHERE g.user = console_sessions.user), '');",
        )?;
    }
    Ok(())
}

/// Keeps a new account's grant in step with its role: a new account is
/// given `role` over `new_school` ('' for the trust, as every account had
/// before schools; `NO_SCHOOL` for none yet); an account of one grant has
/// that grant's role changed; one of several keeps them as they are.
pub fn keep_role(
    conn: &Connection,
    name: &str,
    role: &str,
    new_school: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE console_grants SET role = ?2
         WHERE user = ?1 AND (SELECT COUNT(*) FROM console_grants WHERE user = ?1) = 1",
        params![name, role],
    )?;
    conn.execute(
        "INSERT INTO console_grants (user, role, school) SELECT ?1, ?2, ?3
         WHERE NOT EXISTS (SELECT 1 FROM console_grants WHERE user = ?1)
         ON CONFLICT DO NOTHING",
        params![name, role, new_school],
    )?;
    Ok(())
}

/// Account `name`'s grants: (role, stored schools), in role order.
pub fn grants_of(conn: &Connection, name: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT role, school FROM console_grants WHERE user = ?1")?;
    let mut rows = stmt
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
    rows.sort_by_key(|(role, _)| role_rank(role));
    Ok(rows)
}

/// The role of the grant a new session of `name` acts under: its first.
pub fn first_role(conn: &Connection, name: &str) -> rusqlite::Result<String> {
    Ok(grants_of(conn, name)?
        .into_iter()
        .next()
        .map(|(role, _)| role)
        .unwrap_or_default())
}

/// Changes account `name`'s grants (see [`GrantChange`]), ending its
/// sessions, audited; the grants it then holds, or `None` when there is no
/// such account.
pub fn grant(
    conn: &Connection,
    name: &str,
    role: &str,
    change: GrantChange<'_>,
    entry: &Audited<'_>,
) -> rusqlite::Result<Option<Vec<(String, Scope)>>> {
    let tx = super::write_tx(conn)?;
    if !account_exists(&tx, name)? {
        return Ok(None);
    }
    let grants = change.apply(&grants_of(&tx, name)?, role);
    tx.execute("DELETE FROM console_grants WHERE user = ?1", [name])?;
    for (role, scope) in &grants {
        tx.execute(
            "INSERT INTO console_grants (user, role, school) VALUES (?1, ?2, ?3)",
            params![name, role, scope.as_grant()],
        )?;
    }
    if let Some((role, _)) = grants.first() {
        tx.execute(
            "UPDATE console_users SET role = ?2 WHERE name = ?1",
            params![name, role],
        )?;
    }
    tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    audit(&tx, entry)?;
    tx.commit()?;
    Ok(Some(grants))
}

/// Makes the session with `token_hash` act under its account's grant of
/// `role`, under the new token and CSRF token of `rotated` (the old ones
/// stop working), audited; `false` (nothing changed) when the account
/// holds no such grant.
pub fn switch(
    conn: &Connection,
    token_hash: &[u8],
    role: &str,
    rotated: &Rotated<'_>,
    entry: &Audited<'_>,
) -> rusqlite::Result<bool> {
    let tx = super::write_tx(conn)?;
    let switched = tx.execute(
        "UPDATE console_sessions SET role = ?2, token_hash = ?3, csrf = ?4 WHERE token_hash = ?1
         AND EXISTS (SELECT 1 FROM console_grants g WHERE g.user = console_sessions.user AND g.role = ?2)",
        params![token_hash, role, rotated.token_hash, rotated.csrf],
    )? == 1;
    if switched {
        audit(&tx, entry)?;
        tx.commit()?;
    }
    Ok(switched)
}
