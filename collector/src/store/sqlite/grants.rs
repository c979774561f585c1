//! Console accounts' grants on SQLite: one (role, school) per account, ''
//! for the trust.

use rusqlite::{params, Connection};

use super::audit::insert as audit;
use super::users::account_exists;
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

/// Gives account `name` `role` over `school` ('' for the trust), ending its
/// sessions, audited; `false` when there is no such account.
pub fn grant(
    conn: &Connection,
    name: &str,
    role: &str,
    school: &str,
    entry: &Audited<'_>,
) -> rusqlite::Result<bool> {
    let tx = super::write_tx(conn)?;
    if !account_exists(&tx, name)? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE console_users SET role = ?2 WHERE name = ?1",
        params![name, role],
    )?;
    tx.execute(
        "INSERT INTO console_grants (user, role, school) VALUES (?1, ?2, ?3)
         ON CONFLICT(user) DO UPDATE SET role = ?2, school = ?3",
        params![name, role, school],
    )?;
    tx.execute("DELETE FROM console_sessions WHERE user = ?1", [name])?;
    audit(&tx, entry)?;
    tx.commit()?;
    Ok(true)
}
