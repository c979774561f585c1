//! Whose notice a pupil accepted, after a device moves, on SQLite and on
//! PostgreSQL. Notice versions count up per group across the trust and its
//! schools, so North's own notice (version 2) is newer than the trust's
//! (version 1) without being the same notice. A pupil who accepted North's
//! notice on a station later moved to South has not accepted the notice
//! South's stations show (the trust's); the trust's summary counts
//! acceptance against the trust's notice only, North's against North's.

mod tenants_common;

use tenants_common::{summarised_schools, weekly_summaries};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_ok, Scratch};

/// Tuesday 3 June 2025, noon UTC: in the week of Monday 2 June.
const TUESDAY: i64 = 1_748_952_000_000;

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (c, db, smtp_port) =
        summarised_schools(&scratch, pg, "", ["North Primary", "South Academy"]);
    // The trust's notice for `lab` (version 1), then North's own (2).
    for (file, text, school) in [
        (
            "trust.txt",
            "This computer is monitored for safeguarding.\n",
            None,
        ),
        (
            "north.txt",
            "North Primary monitors this computer.\n",
            Some("north"),
        ),
    ] {
        let path = scratch.path(file);
        std::fs::write(&path, text).unwrap();
        let mut cmd = c.cmd();
        cmd.args(["notice", "set", "--group", "lab", "--file"])
            .arg(&path);
        if let Some(school) = school {
            cmd.args(["--school", school]);
        }
        run_ok(&mut cmd).unwrap();
    }
    assert_eq!(
        db.one("SELECT MAX(version) FROM notices WHERE grp = 'lab' AND school = 'north'"),
        "2"
    );

    // North's station, South's, and one of North's that moves to South
    // after its pupil accepted North's notice there.
    let byte = db.blob("00");
    for (agent, school, key) in [
        ("ag-north", "north", "01"),
        ("ag-south", "south", "02"),
        ("ag-moved", "north", "03"),
    ] {
        let key = db.blob(key);
        db.exec(&format!(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms, school)
             VALUES ('{agent}', {key}, '{agent}-PC', 'lab', {TUESDAY}, {TUESDAY}, '{school}')"
        ));
    }
    let acks = [
        ("ag-north", "pupil.n1", 2), // North's notice
        ("ag-north", "pupil.n2", 1), // the trust's, before North had its own
        ("ag-south", "pupil.s1", 1), // the trust's, which South shows
        ("ag-moved", "pupil.m1", 2), // North's, then the station moves
    ];
    for (n, (agent, user, version)) in acks.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO notice_acks (agent_id, ack_id, \"user\", station, grp, version, time_ms, received_ms, body, signature)
             VALUES ('{agent}', 'ack-{n}', '{user}', '{agent}-PC', 'lab', {version}, {TUESDAY}, {TUESDAY}, {byte}, {byte})"
        ));
    }
    let out = run_ok(
        c.cmd()
            .args(["agents", "move", "ag-moved", "--school", "south"]),
    )
    .unwrap();
    assert!(out.contains("south"), "{out}");

    let by_rcpt: std::collections::BTreeMap<String, String> =
        weekly_summaries(&c, smtp_port, scratch.path("mail"))
            .into_iter()
            .map(|(rcpt, (_, text))| (rcpt, text))
            .collect();
    let expect = |rcpt: &str, line: &str| {
        let text = &by_rcpt[rcpt];
        assert!(
            text.lines().any(|l| l == line),
            "{rcpt}: {line:?} not in\n{text}"
        );
    };
    // North: n1 accepted North's notice; n2 only the trust's.
    expect(
        "north@trust.test",
        "Monitoring notice at this school's stations: 2 acknowledgement(s) this week; 1 pupil(s) have accepted their group's current version, 1 have not yet.",
    );
    // South shows the trust's: s1 accepted it; m1 accepted North's only.
    expect(
        "south@trust.test",
        "Monitoring notice at this school's stations: 2 acknowledgement(s) this week; 1 pupil(s) have accepted their group's current version, 1 have not yet.",
    );
    // The trust's notice: n2 and s1 accepted it, n1 and m1 only North's.
    expect(
        "lead@trust.test",
        "Monitoring notice: 4 acknowledgement(s) this week; 2 pupil(s) have accepted their group's current version, 2 have not yet.",
    );
}

#[test]
fn on_sqlite_acceptance_is_counted_against_the_notice_the_stations_show() {
    scenario(None, "tenants-notice-summary-sqlite");
}

#[test]
fn on_postgresql_acceptance_is_counted_against_the_notice_the_stations_show() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-notice-summary-postgres");
}
