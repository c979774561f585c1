//! The SQLite store's schema is numbered (`PRAGMA user_version`): a new
//! store is at the current version, a store from before versions were kept
//! (version 0, columns missing) is upgraded when opened, and a store
//! written by a newer collector is refused by `serve` and the commands with
//! a message saying what is wrong and what to do.

use tutela_tests::{run_failing, run_ok, Collector, Scratch};

fn version(collector: &Collector) -> i64 {
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_old_store_is_upgraded_and_a_newer_one_is_refused() {
    let scratch = Scratch::new("sqlite-schema");
    let collector = Collector::init(scratch.path("collector")).unwrap();
    let current = version(&collector);
    assert!(current >= 1, "a new store is numbered: {current}");

    // A store from before numbering: version 0, later columns missing.
    {
        let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
        db.execute_batch(
            "ALTER TABLE agents DROP COLUMN problems;
             ALTER TABLE agents DROP COLUMN group_moved_ms;
             PRAGMA user_version = 0;",
        )
        .unwrap();
    }
    run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert_eq!(version(&collector), current);
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let columns: i64 = db
        .query_row(
            "SELECT count(*) FROM pragma_table_info('agents') WHERE name IN ('problems', 'group_moved_ms')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 2, "the missing columns were added");

    // Written by a newer collector: refused, and left as it was.
    db.pragma_update(None, "user_version", current + 5).unwrap();
    drop(db);
    let out = run_failing(collector.cmd().arg("serve"));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "schema version {}, newer than this collector's {current}",
            current + 5
        )) && said.contains("install that version"),
        "{said}"
    );
    let out = run_failing(collector.cmd().args(["agents", "list"]));
    assert!(
        text(&out).contains("newer than this collector"),
        "{}",
        text(&out)
    );
    assert_eq!(version(&collector), current + 5);
}
