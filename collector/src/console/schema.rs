//! The console's own tables, created at startup beside the ingest schema
//! (the SQL is in `store::sqlite::console_schema`).

use rusqlite::Connection;

/// Creates the console's tables and indexes if they do not exist.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    crate::store::sqlite::console_schema::create(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_creating_the_console_tables_at_once_both_succeed() {
        // `serve` and a command run beside it (e.g. `token create`) both
        // create the console's tables and add its columns on a fresh store.
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            drop(crate::store::open(dir.path()).unwrap());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let path = dir.path().to_owned();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let conn = crate::store::open(&path).unwrap();
                        barrier.wait();
                        create(&conn)
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn notes_history_reveals_and_audit_refuse_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        create(&conn).unwrap();
        conn.execute_batch(
            "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state) VALUES (1, 1, 'dsl', 'new', 'closed');
             INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (1, 1, 'dsl', 'n');
             INSERT INTO console_reveals (session_hash, alert_id, user, reason, time_ms) VALUES (x'01', 1, 'dsl', 'r', 1);
             INSERT INTO console_audit (time_ms, actor, action, target, detail, prev_hash, hash) VALUES (1, 'dsl', 'a', 't', 'd', '', 'h');",
        )
        .unwrap();
        for (table, column) in [
            ("console_history", "reason"),
            ("console_notes", "text"),
            ("console_reveals", "reason"),
            ("console_audit", "detail"),
        ] {
            let err = conn
                .execute(&format!("DELETE FROM {table}"), [])
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{table}: {err}");
            let err = conn
                .execute(&format!("UPDATE {table} SET {column} = 'x'"), [])
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{table}: {err}");
        }
    }
}
