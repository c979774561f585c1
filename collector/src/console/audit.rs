//! The audit log: every login, view, reveal, state change and export, each
//! entry hashing the one before, so an edited, inserted or removed entry
//! breaks the chain from that point on. Only `auditor` accounts read it.

use maud::html;
use rusqlite::{params, Connection, OptionalExtension};

use super::auth::Viewer;
use super::html::page;
use super::tz::Zone;
use crate::store::now_ms;

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn entry_hash(
    prev: &str,
    id: i64,
    time_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for field in [
        prev,
        &id.to_string(),
        &time_ms.to_string(),
        actor,
        action,
        target,
        detail,
    ] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    hex::encode(ctx.finish())
}

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
    if conn.is_autocommit() {
        let tx = super::write_tx(conn)?;
        insert(&tx, actor, action, target, detail)?;
        return tx.commit();
    }
    crate::store::in_savepoint(conn, "audit", || {
        insert(conn, actor, action, target, detail)
    })
}

fn insert(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> rusqlite::Result<()> {
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
    let time = now_ms();
    let hash = entry_hash(&prev, id, time, actor, action, target, detail);
    conn.execute(
        "INSERT INTO console_audit (id, time_ms, actor, action, target, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, time, actor, action, target, detail, prev, hash],
    )?;
    Ok(())
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// Checks the whole chain; returns the number of entries, or the id of the
/// first entry that does not follow from the one before.
pub fn verify(conn: &Connection) -> rusqlite::Result<Result<usize, i64>> {
    let mut stmt = conn.prepare(
        "SELECT id, time_ms, actor, action, target, detail, prev_hash, hash FROM console_audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_id = 1;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let stored_prev: String = r.get(6)?;
        let hash: String = r.get(7)?;
        let computed = entry_hash(
            &prev,
            id,
            r.get(1)?,
            &r.get::<_, String>(2)?,
            &r.get::<_, String>(3)?,
            &r.get::<_, String>(4)?,
            &r.get::<_, String>(5)?,
        );
        if id != expected_id || stored_prev != prev || computed != hash {
            return Ok(Err(id));
        }
        prev = hash;
        expected_id += 1;
        n += 1;
    }
    Ok(Ok(n))
}

pub fn recent(conn: &Connection, limit: i64, actor: Option<&str>) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(
        "SELECT id, time_ms, actor, action, target, detail FROM console_audit
         WHERE (?2 IS NULL OR actor = ?2) ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit, actor], |r| {
        Ok(Entry {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            detail: r.get(5)?,
        })
    })?;
    rows.collect()
}

pub fn render(
    conn: &Connection,
    viewer: &Viewer,
    zone: &Zone,
    actor: Option<&str>,
) -> rusqlite::Result<String> {
    let chain = verify(conn)?;
    let entries = recent(conn, 1000, actor)?;
    let body = html! {
        h1 { "Audit log" }
        @match chain {
            Ok(n) => p.verified #chain { "Hash chain intact: " (n) " entries." },
            Err(id) => p.unverified #chain {
                "Hash chain broken at entry " (id) ": the log was altered from there on."
            },
        }
        form.filters method="get" action="/audit" {
            label { "Account" input type="text" name="actor" value=(actor.unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        table #audit {
            thead { tr { th { "#" } th { "Time" } th { "Account" } th { "Action" } th { "Target" } th { "Detail" } } }
            tbody {
                @for e in &entries {
                    tr {
                        td { (e.id) } td { (zone.format(e.time_ms)) } td { (e.actor) }
                        td { (e.action) } td { (e.target) } td { (e.detail) }
                    }
                }
            }
        }
    };
    Ok(page("Audit log", Some(viewer), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_breaks_the_chain() {
        let conn = Connection::open_in_memory().unwrap();
        crate::console::schema::create(&conn).unwrap_err(); // needs the alerts table
        conn.execute_batch("CREATE TABLE alerts (id INTEGER PRIMARY KEY, user TEXT, time_ms INTEGER, severity INTEGER, rule_id TEXT, state TEXT)").unwrap();
        crate::console::schema::create(&conn).unwrap();
        for i in 0..5 {
            append(&conn, "dsl", "view", &format!("alert:{i}"), "").unwrap();
        }
        assert_eq!(verify(&conn).unwrap(), Ok(5));
        assert!(conn
            .execute("UPDATE console_audit SET actor = 'x' WHERE id = 3", [])
            .is_err());
        conn.execute_batch("DROP TRIGGER console_audit_no_update; UPDATE console_audit SET actor = 'someone else' WHERE id = 3").unwrap();
        assert_eq!(verify(&conn).unwrap(), Err(3));
    }
}
