//! Schools on SQLite: the `schools` table and the `school` column of
//! agents, enrolment tokens and alerts, added to a store made before
//! schools with everything in the default school.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::schools::{Added, School, SettingsChange, DEFAULT_NAME, DEFAULT_SCHOOL};

/// Creates the table and columns a store made before schools lacks.
pub fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schools (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO schools (id, name, created_ms) VALUES (?1, ?2, 0)",
        params![DEFAULT_SCHOOL, DEFAULT_NAME],
    )?;
    let decl = format!("TEXT NOT NULL DEFAULT '{DEFAULT_SCHOOL}'");
    for table in ["agents", "tokens", "alerts"] {
        add_column(conn, table, "school", &decl)?;
    }
    console_upgrade(conn)?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS alerts_school ON alerts (school, severity DESC, time_ms DESC);
         CREATE INDEX IF NOT EXISTS agents_school ON agents (school);",
    )
}

/// Creates the console's grants, gives the audit log (when there is one
/// yet) its school column, and every account without a grant a trust-wide
/// grant of its role: a store made before schools behaves as before.
pub fn console_upgrade(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "-- A console account's grants, one per role: the role over the
         -- trust ('') or schools (their ids joined by ',').
         CREATE TABLE IF NOT EXISTS console_grants (
             user TEXT NOT NULL,
             role TEXT NOT NULL,
             school TEXT NOT NULL DEFAULT '',
             PRIMARY KEY (user, role)
         );",
    )?;
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('console_audit', 'console_users')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok(());
    }
    add_column(conn, "console_audit", "school", "TEXT NOT NULL DEFAULT ''")?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS console_audit_school ON console_audit (school, id);
         INSERT OR IGNORE INTO console_grants (user, role, school)
             SELECT name, role, '' FROM console_users u
             WHERE NOT EXISTS (SELECT 1 FROM console_grants g WHERE g.user = u.name);",
    )
}

/// Adds a column a table made by an earlier version lacks (if there is
/// such a table).
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let (table_present, present): (bool, bool) = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1),
                EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        [table, column],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if table_present && !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

pub fn put(conn: &Connection, id: &str, name: &str, now_ms: i64) -> rusqlite::Result<Added> {
    let renamed = conn.execute(
        "UPDATE schools SET name = ?2 WHERE id = ?1",
        params![id, name],
    )?;
    if renamed > 0 {
        return Ok(Added::Renamed);
    }
    conn.execute(
        "INSERT INTO schools (id, name, created_ms) VALUES (?1, ?2, ?3)",
        params![id, name, now_ms],
    )?;
    Ok(Added::Created)
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<School>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, created_ms, time_zone, retention_months FROM schools ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(School {
            id: r.get(0)?,
            name: r.get(1)?,
            created_ms: r.get(2)?,
            time_zone: r.get(3)?,
            retention_months: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// 5: a school's own time zone and retention ('' and 0: the trust's).
pub fn upgrade_settings(conn: &Connection) -> rusqlite::Result<()> {
    add_column(conn, "schools", "time_zone", "TEXT NOT NULL DEFAULT ''")?;
    add_column(
        conn,
        "schools",
        "retention_months",
        "INTEGER NOT NULL DEFAULT 0",
    )
}

/// Changes school `id`'s own settings, audited; `false` (nothing changed)
/// when there is no such school.
pub fn set_settings(
    conn: &Connection,
    id: &str,
    change: &SettingsChange<'_>,
    entry: &crate::store::users::Audited<'_>,
) -> rusqlite::Result<bool> {
    let tx = super::write_tx(conn)?;
    let found = tx.execute(
        "UPDATE schools SET time_zone = COALESCE(?2, time_zone),
             retention_months = COALESCE(?3, retention_months)
         WHERE id = ?1",
        params![id, change.time_zone, change.retention_months],
    )? == 1;
    if found {
        super::audit::insert(&tx, entry)?;
        tx.commit()?;
    }
    Ok(found)
}

/// Moves unrevoked agent `agent_id` to school `to` (which must exist),
/// audited: its later alerts are `to`'s, its earlier ones stay where they
/// are. The school it left, or `None` when there is no such agent or
/// school.
pub fn move_agent(
    conn: &Connection,
    agent_id: &str,
    to: &str,
    entry: &crate::store::users::Audited<'_>,
) -> rusqlite::Result<Option<String>> {
    let tx = super::write_tx(conn)?;
    let from: Option<String> = tx
        .query_row(
            "SELECT a.school FROM agents a WHERE a.agent_id = ?1 AND a.revoked = 0
             AND EXISTS (SELECT 1 FROM schools WHERE id = ?2)",
            params![agent_id, to],
            |r| r.get(0),
        )
        .optional()?;
    if from.is_none() {
        return Ok(None);
    }
    // Recorded as a move: the subscription sends the agent the new
    // school's exemptions and notice at once.
    tx.execute(
        "UPDATE agents SET school = ?2, group_moved_ms = ?3 WHERE agent_id = ?1",
        params![agent_id, to, crate::store::now_ms()],
    )?;
    super::audit::insert(&tx, entry)?;
    tx.commit()?;
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store made before schools: its rows go to the default school, its
    /// accounts get trust-wide grants of their roles, its audit chain and
    /// summary runs carry on.
    #[test]
    fn a_store_made_before_schools_keeps_working_as_one_school() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE agents (agent_id TEXT PRIMARY KEY, public_key BLOB NOT NULL UNIQUE,
                     station TEXT NOT NULL, grp TEXT NOT NULL DEFAULT '',
                     agent_version TEXT NOT NULL DEFAULT '', enrolled_ms INTEGER NOT NULL,
                     revoked INTEGER NOT NULL DEFAULT 0, last_seen_ms INTEGER,
                     last_seq INTEGER NOT NULL DEFAULT 0, last_hash BLOB,
                     rules_version INTEGER NOT NULL DEFAULT 0, spool_backlog INTEGER NOT NULL DEFAULT 0,
                     spool_dropped INTEGER NOT NULL DEFAULT 0, flag TEXT);
                 INSERT INTO agents (agent_id, public_key, station, enrolled_ms) VALUES ('ag-1', x'01', 'PC1', 1);
                 CREATE TABLE console_users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
                     role TEXT NOT NULL, created_ms INTEGER NOT NULL);
                 INSERT INTO console_users VALUES ('dsl1', 'h', 'dsl', 1), ('tech1', 'h', 'technician', 1);
                 CREATE TABLE summary_runs (week_start TEXT PRIMARY KEY, queued_ms INTEGER NOT NULL,
                     trigger TEXT NOT NULL, emails INTEGER NOT NULL);
                 INSERT INTO summary_runs VALUES ('2025-06-02', 1, 'schedule', 3);",
            )
            .unwrap();
        }
        let conn = crate::store::open(dir.path()).unwrap();
        crate::console::schema::create(&conn).unwrap();
        crate::store::sqlite::summary::upgrade(&conn).unwrap();
        let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            one("SELECT school FROM agents WHERE agent_id = 'ag-1'"),
            "default"
        );
        assert_eq!(
            one("SELECT group_concat(user || ':' || role || ':' || school, ',') FROM console_grants"),
            "dsl1:dsl:,tech1:technician:"
        );
        assert_eq!(list(&conn).unwrap()[0].id, DEFAULT_SCHOOL);
        assert_eq!(
            one("SELECT school || '/' || week_start || '/' || emails FROM summary_runs"),
            "/2025-06-02/3"
        );
        // The audit log keeps one chain across entries of the trust and a school.
        crate::store::sqlite::audit::append(&conn, "dsl1", "view", "alert:1", "").unwrap();
        conn.execute(
            "UPDATE console_grants SET school = 'north' WHERE user = 'dsl1'",
            [],
        )
        .unwrap();
        crate::store::sqlite::audit::append(&conn, "dsl1", "view", "alert:2", "").unwrap();
        assert_eq!(
            one("SELECT group_concat(school, ',') FROM console_audit"),
            ",north"
        );
        assert_eq!(crate::store::sqlite::audit::verify(&conn).unwrap(), Ok(2));
        // Upgrading again changes nothing.
        super::upgrade(&conn).unwrap();
        crate::store::sqlite::summary::upgrade(&conn).unwrap();
        assert_eq!(one("SELECT COUNT(*) || '' FROM console_grants"), "2");
    }
}
