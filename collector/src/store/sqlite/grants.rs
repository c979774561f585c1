//! Console accounts' grants on SQLite: one role per account over the trust
//! ('') or a set of schools (their ids joined by ',').

use rusqlite::{params, Connection, OptionalExtension};

use super::audit::insert as audit;
use super::users::account_exists;
use crate::store::schools::{GrantChange, Scope};
use crate::store::users::Audited;

/// Keeps an account's grant in step with its role; a new account is given
/// `new_school` ('' for the trust, as every account had before schools;
/// `NO_SCHOOL` for none yet).
pub fn keep_role(
    conn: &Connection,
    name: &str,
    role: &str,
    new_school: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO console_grants (user, role, school) VALUES (?1, ?2, ?3)
         ON CONFLICT(user) DO UPDATE SET role = ?2",
        params![name, role, new_school],
    )?;
    Ok(())
}

/// Changes account `name`'s grant (its role over a set of schools),
/// ending its sessions, audited; the (role, scope) it then holds, or `None`
/// when there is no such account.
pub fn grant(
    conn: &Connection,
    name: &str,
    role: &str,
    change: GrantChange<'_>,
    entry: &Audited<'_>,
) -> rusqlite::Result<Option<(String, Scope)>> {
    let tx = super::write_tx(conn)?;
    if !account_exists(&tx, name)? {
        return Ok(None);
    }
    let current: Option<(String, String)> = tx
        .query_row(
            "SELECT role, school FROM console_grants WHERE user = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (role, scope) = change.apply(
        current.as_ref().map(|(r, s)| (r.as_str(), s.as_str())),
        role,
    );
    tx.execute(
        "UPDATE console_users SET role = ?2 WHERE name = ?1",
        params![name, role],
    )?;
    tx.execute(
        "INSERT INTO console_grants (user, role, school) VALUES (?1, ?2, ?3)
         ON CONFLICT(user) DO UPDATE SET role = ?2, school = ?3",
        params![name, role, scope.as_grant()],
    )?;
    tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    audit(&tx, entry)?;
    tx.commit()?;
    Ok(Some((role, scope)))
}
