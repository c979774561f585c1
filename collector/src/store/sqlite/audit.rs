//! The console's audit log in SQLite.

use rusqlite::{params, Connection, OptionalExtension};

use super::write_tx;
use crate::store::audit::{alert_of, entry_hash, ChainCheck, Entry, GENESIS};
use crate::store::now_ms;
use crate::store::schools::Scope;
use crate::store::users::Audited;

/// Appends one entry. Outside a transaction it runs in its own write
/// transaction (`BEGIN IMMEDIATE`, so the read of the last hash and the
/// insert are one step and wait for another writer rather than fail);
/// inside a caller's transaction it runs in a savepoint, and commits or
/// rolls back with the caller's action.
pub fn append(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    let entry = Audited {
        actor,
        action,
        target,
        detail,
    };
    if conn.is_autocommit() {
        let tx = write_tx(conn)?;
        insert(&tx, &entry)?;
        return tx.commit();
    }
    super::in_savepoint(conn, "audit", || insert(conn, &entry))
}

/// Inserts one entry inside the caller's transaction.
pub fn insert(conn: &Connection, a: &Audited<'_>) -> rusqlite::Result<()> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, hash FROM console_audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    // An entry about an alert is its school's when the actor's grants
    // cover that school (or it has none: a pupil's report, the purge); any
    // other is its actor's, so an account refused another school's alert
    // is recorded in its own school's log, never in the other's.
    let alert_school: Option<String> = match alert_of(a.target) {
        Some(id) => conn
            .query_row(
                "SELECT a.school FROM alerts a WHERE a.id = ?1 AND (
                     NOT EXISTS (SELECT 1 FROM console_grants WHERE user = ?2)
                     OR EXISTS (SELECT 1 FROM console_grants g WHERE g.user = ?2
                         AND (g.school = '' OR instr(',' || g.school || ',', ',' || a.school || ',') > 0)))",
                params![id, a.actor],
                |r| r.get(0),
            )
            .optional()?,
        None => None,
    };
    let school = match alert_school {
        Some(school) => school,
        None => conn
            .query_row(
                // An account over several schools (in one grant or
                // several) acts for the trust.
                "SELECT CASE WHEN COUNT(DISTINCT school) = 1 AND MAX(instr(school, ',')) = 0
                     THEN MAX(school) ELSE '' END
                 FROM console_grants WHERE user = ?1",
                [a.actor],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default(),
    };
    let entry = Entry {
        id,
        time_ms: now_ms(),
        actor: a.actor.to_owned(),
        action: a.action.to_owned(),
        target: a.target.to_owned(),
        detail: a.detail.to_owned(),
        school,
    };
    let hash = entry_hash(&prev, &entry);
    conn.execute(
        "INSERT INTO console_audit (id, time_ms, actor, action, target, detail, prev_hash, hash, school)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            entry.time_ms,
            a.actor,
            a.action,
            a.target,
            a.detail,
            prev,
            hash,
            entry.school
        ],
    )?;
    Ok(())
}

/// Checks the whole chain: the number of entries, or the id of the first
/// entry that does not follow from the one before.
pub fn verify(conn: &Connection) -> rusqlite::Result<Result<usize, i64>> {
    let mut stmt = conn.prepare(
        "SELECT id, time_ms, actor, action, target, detail, prev_hash, hash, school FROM console_audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut check = ChainCheck::default();
    while let Some(r) = rows.next()? {
        let entry = Entry {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            detail: r.get(5)?,
            school: r.get(8)?,
        };
        let prev: String = r.get(6)?;
        let hash: String = r.get(7)?;
        if !check.next(&entry, &prev, &hash) {
            break;
        }
    }
    Ok(check.result())
}

/// The newest `limit` entries `scope` allows, of `actor` only when given.
pub fn recent(
    conn: &Connection,
    scope: &Scope,
    limit: i64,
    actor: Option<&str>,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(
        "SELECT id, time_ms, actor, action, target, detail, school FROM console_audit
         WHERE (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR school IN (SELECT value FROM json_each(?3)))
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit, actor, scope.json()], |r| {
        Ok(Entry {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            detail: r.get(5)?,
            school: r.get(6)?,
        })
    })?;
    rows.collect()
}
