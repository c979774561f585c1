//! Curriculum exemptions on SQLite (the table is in the main schema).

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::exemption::{
    visible, AuditNote, Exemption, GroupAgents, NewExemptionRow, Revoked,
};

const COLUMNS: &str =
    "id, grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, revoked_ms, school";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Exemption> {
    Ok(Exemption {
        id: r.get(0)?,
        grp: r.get(1)?,
        category: r.get(2)?,
        term: r.get(3)?,
        reason: r.get(4)?,
        created_by: r.get(5)?,
        created_ms: r.get(6)?,
        starts_ms: r.get(7)?,
        ends_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
        school: r.get(10)?,
    })
}

/// Writes an audit entry (in the caller's savepoint or transaction).
pub(super) fn audit(conn: &Connection, note: &AuditNote) -> rusqlite::Result<()> {
    crate::console::audit::append(conn, &note.actor, note.action, &note.target, &note.detail)
}

pub fn add(
    conn: &Connection,
    new: &NewExemptionRow<'_>,
    note: impl FnOnce(i64) -> AuditNote,
) -> rusqlite::Result<i64> {
    crate::console::schema::create(conn)?;
    crate::store::in_savepoint(conn, "exemption_add", || {
        conn.execute(
            "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, school)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![new.group, new.category, new.term, new.reason, new.created_by, new.created_ms, new.starts_ms, new.ends_ms, new.school],
        )?;
        let id = conn.last_insert_rowid();
        audit(conn, &note(id))?;
        Ok(id)
    })
}

/// Revokes exemption `id` if `schools` (`None`: the trust) may change it.
pub fn revoke(
    conn: &Connection,
    schools: Option<&[String]>,
    id: i64,
    now_ms: i64,
    note: impl FnOnce(&Exemption) -> AuditNote,
) -> rusqlite::Result<Revoked> {
    crate::console::schema::create(conn)?;
    crate::store::in_savepoint(conn, "exemption_revoke", || {
        let Some(existing) = get(conn, id)?.filter(|e| visible(schools, &e.school)) else {
            return Ok(Revoked::NotFound);
        };
        if schools.is_some() && existing.school.is_empty() {
            return Ok(Revoked::TrustWide);
        }
        if existing.revoked_ms.is_some() {
            return Ok(Revoked::Already);
        }
        conn.execute(
            "UPDATE exemptions SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        audit(conn, &note(&existing))?;
        Ok(Revoked::Done)
    })
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Exemption>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM exemptions WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

/// Every exemption, newest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Exemption>> {
    list_in(conn, None)
}

/// The exemptions seen over `schools` (a JSON array of school ids; every
/// one for `None`): theirs and the trust-wide ones, newest first.
pub fn list_in(conn: &Connection, schools: Option<&str>) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM exemptions
         WHERE ?1 IS NULL OR school = '' OR school IN (SELECT value FROM json_each(?1))
         ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([schools], row)?;
    rows.collect()
}

/// Exemptions in force or still to come at `now_ms` (not revoked, not ended).
pub fn pending(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM exemptions WHERE revoked_ms IS NULL AND ends_ms > ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([now_ms], row)?;
    rows.collect()
}

/// Exemptions made or revoked in `[from_ms, to_ms)` that `school`'s
/// stations hold (its own and trust-wide ones; every one for ''), oldest
/// first.
pub fn changed_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    school: &str,
) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM exemptions
         WHERE ((created_ms >= ?1 AND created_ms < ?2) OR (revoked_ms >= ?1 AND revoked_ms < ?2))
         AND (?3 = '' OR school = '' OR school = ?3)
         ORDER BY created_ms, id"
    ))?;
    let rows = stmt.query_map(params![from_ms, to_ms, school], row)?;
    rows.collect()
}

pub fn group_agents(conn: &Connection, group: &str) -> rusqlite::Result<GroupAgents> {
    let in_group = conn.query_row(
        "SELECT COUNT(*) FROM agents WHERE grp = ?1 AND revoked = 0",
        [group],
        |r| r.get(0),
    )?;
    let mut stmt = conn
        .prepare("SELECT DISTINCT grp FROM agents WHERE revoked = 0 AND grp <> '' ORDER BY grp")?;
    let groups = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(GroupAgents { in_group, groups })
}

pub fn move_agent(
    conn: &Connection,
    agent_id: &str,
    group: &str,
    now_ms: i64,
    note: &AuditNote,
) -> rusqlite::Result<bool> {
    crate::console::schema::create(conn)?;
    crate::store::in_savepoint(conn, "agent_move", || {
        let moved = conn.execute(
            "UPDATE agents SET grp = ?2, group_moved_ms = ?3 WHERE agent_id = ?1 AND revoked = 0",
            params![agent_id, group, now_ms],
        )?;
        if moved == 1 {
            audit(conn, note)?;
        }
        Ok(moved == 1)
    })
}

/// Agents moved to another group or school: (agent, (group, school)).
pub fn moves(
    conn: &Connection,
) -> rusqlite::Result<std::collections::HashMap<String, (String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT agent_id, grp, school FROM agents WHERE group_moved_ms > 0 AND revoked = 0",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    rows.collect()
}
