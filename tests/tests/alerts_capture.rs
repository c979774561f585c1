//! `alerts capture` decrypts an alert's screenshot through the store, on
//! SQLite and on PostgreSQL: the same bytes the agent sent, checked against
//! the SHA-256 it signed; a capture whose recorded hash was changed in the
//! database is refused, and an alert without one says so.

mod common;

use common::send;
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_failing, Agent, Collector, Scratch};

fn captures_are_decrypted_and_checked(pg: Option<&PgCluster>) {
    let scratch = Scratch::new(if pg.is_some() {
        "capture-pg"
    } else {
        "capture"
    });
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    if let Some(pg) = pg {
        collector
            .set_section("storage", &format!("url = \"{}\"", pg.url()))
            .unwrap();
    }
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("pc07"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let shots = send(&agent.dir, &["a pipe bomb", "pipe bomb parts"]);
    let alerts = collector.alerts().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let ids: Vec<i64> = alerts.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    for (id, shot) in ids.iter().zip(&shots) {
        let out = scratch.path(&format!("{id}.jpg"));
        assert_eq!(&collector.capture(*id, &out).unwrap(), shot);
    }

    // The first capture's recorded hash replaced by the second's.
    let tamper = format!(
        "UPDATE captures SET sha256 = (SELECT sha256 FROM captures WHERE alert_id = {}) WHERE alert_id = {}",
        ids[1], ids[0]
    );
    match pg {
        Some(pg) => {
            pg.query(&tamper).unwrap();
        }
        None => {
            let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
            db.execute_batch(&tamper).unwrap();
        }
    }
    let out = run_failing(
        collector
            .cmd()
            .args(["alerts", "capture", &ids[0].to_string(), "--out"])
            .arg(scratch.path("tampered.jpg")),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("does not match the SHA-256 its agent signed"),
        "{said}"
    );
    assert!(!scratch.path("tampered.jpg").exists());
    let out = run_failing(
        collector
            .cmd()
            .args(["alerts", "capture", "999999", "--out"])
            .arg(scratch.path("none.jpg")),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("alert 999999 has no capture"), "{said}");
}

#[test]
fn on_sqlite_captures_are_decrypted_and_checked() {
    captures_are_decrypted_and_checked(None);
}

#[test]
fn on_postgresql_captures_are_decrypted_and_checked() {
    let pg = PgCluster::start().unwrap();
    captures_are_decrypted_and_checked(Some(&pg));
}
