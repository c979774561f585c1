//! The audit log: every login, view, reveal, state change and export, each
//! entry hashing the one before, so an edited, inserted or removed entry
//! breaks the chain from that point on. Only `auditor` accounts read it.

use maud::html;
use rusqlite::Connection;

use super::auth::Viewer;
use super::html::page;
use crate::store::console::Console;
use crate::store::StoreError;

pub use crate::store::audit::Entry;

/// Appends one entry on the SQLite connection of a module not yet moved
/// behind the store: in its own write transaction, or in a savepoint of the
/// caller's (committing or rolling back with the caller's action).
pub fn append(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    crate::store::sqlite::audit::append(conn, actor, action, target, detail)
}

/// Checks the whole chain; returns the number of entries, or the id of the
/// first entry that does not follow from the one before.
pub fn verify(conn: &Connection) -> rusqlite::Result<Result<usize, i64>> {
    crate::store::sqlite::audit::verify(conn)
}

/// The audit page: each entry's time in its school's zone.
pub fn render(
    app: &super::App,
    db: &Console<'_>,
    viewer: &Viewer,
    actor: Option<&str>,
) -> Result<String, StoreError> {
    let chain = db.audit_chain()?;
    let entries = db.audit_recent(&viewer.school, 1000, actor)?;
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
                        td { (e.id) } td { (app.zone_of(&e.school).format(e.time_ms)) } td { (e.actor) }
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
        conn.execute_batch("CREATE TABLE alerts (id INTEGER PRIMARY KEY, user TEXT, time_ms INTEGER, severity INTEGER, rule_id TEXT, state TEXT, school TEXT NOT NULL DEFAULT 'default')").unwrap();
        conn.execute("INSERT INTO alerts (id, school) VALUES (2, 'north')", [])
            .unwrap();
        crate::console::schema::create(&conn).unwrap();
        for i in 0..5 {
            append(&conn, "dsl", "view", &format!("alert:{i}"), "").unwrap();
        }
        assert_eq!(verify(&conn).unwrap(), Ok(5));
        // The entry about alert 2 is its school's; the others (no such
        // alert, an actor without a grant) the trust's.
        let schools: Vec<String> = conn
            .prepare("SELECT school FROM console_audit ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(schools, ["", "", "north", "", ""]);
        assert!(conn
            .execute("UPDATE console_audit SET actor = 'x' WHERE id = 3", [])
            .is_err());
        conn.execute_batch("DROP TRIGGER console_audit_no_update; UPDATE console_audit SET actor = 'someone else' WHERE id = 3").unwrap();
        assert_eq!(verify(&conn).unwrap(), Err(3));
    }
}
