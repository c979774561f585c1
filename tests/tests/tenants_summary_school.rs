//! A school's weekly summary, on SQLite and on PostgreSQL: its subject names
//! the school; it counts the monitoring notice's acknowledgements given on
//! the school's stations (and the pupils known there), not the other
//! school's; rule publications and exemptions, which hold for every school,
//! are counted and marked as trust-wide. The trust's summary counts every
//! school's acknowledgements and keeps its subject and lines as before.

mod tenants_common;

use tenants_common::weekly_summaries;
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_ok, Scratch};

/// Tuesday 3 June 2025, noon UTC: in the week of Monday 2 June.
const TUESDAY: i64 = 1_748_952_000_000;

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (c, db, smtp_port) = tenants_common::summarised_schools(
        &scratch,
        pg,
        "staff_pattern = \"mr.*\"",
        ["North Primary", "South Academy"],
    );

    // One notice for the group `lab`, whose name both schools use.
    let text = scratch.path("notice.txt");
    std::fs::write(&text, "This computer is monitored for safeguarding.\n").unwrap();
    run_ok(
        c.cmd()
            .args(["notice", "set", "--group", "lab", "--file"])
            .arg(&text),
    )
    .unwrap();

    // A station in each school; North's two pupils accept the notice and a
    // third has an alert there but has not; South's one pupil accepts.
    let byte = db.blob("00");
    for (school, key) in [("north", "01"), ("south", "02")] {
        let key = db.blob(key);
        db.exec(&format!(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms, school)
             VALUES ('ag-{school}', {key}, '{school}-PC01', 'lab', {TUESDAY}, {TUESDAY}, '{school}')"
        ));
    }
    let acks = [
        ("north", "pupil.n1"),
        ("north", "pupil.n2"),
        ("south", "pupil.s1"),
    ];
    for (n, (school, user)) in acks.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO notice_acks (agent_id, ack_id, \"user\", station, grp, version, time_ms, received_ms, body, signature)
             VALUES ('ag-{school}', 'ack-{n}', '{user}', '{school}-PC01', 'lab', 1, {TUESDAY}, {TUESDAY}, {byte}, {byte})"
        ));
    }
    db.exec(&format!(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
            source, context, app, app_path, window_title, url, search_query, category,
            severity, rule_id, term, matches, rules_version, body, signature, body_hash, school)
         VALUES ('ev-1', 'ag-north', 1, {TUESDAY}, {TUESDAY}, 'pupil.n3', 'north-PC01', 'typed',
            'context', 'firefox', '', '', '', '', 'bullying', 3, 'bullying/seed', 'term', '[]', 7,
            {byte}, {byte}, {byte}, 'north')"
    ));
    // What holds for every school: a rule publication and an exemption.
    db.exec(&format!(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms)
         VALUES ('en-GB', 7, FALSE, {byte}, '', {TUESDAY});
         INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
         VALUES ('lab', 'self-harm', '', 'PSHE unit on wellbeing', 'dsl', {TUESDAY}, {TUESDAY}, {TUESDAY} + 86400000)"
    ));

    let by_rcpt = weekly_summaries(&c, smtp_port, scratch.path("mail"));
    let expect = |rcpt: &str, subject: &str, lines: &[&str], absent: &[&str]| {
        let (got, text) = &by_rcpt[rcpt];
        assert!(got.starts_with(subject), "{rcpt}'s subject: {got}");
        assert!(
            got.ends_with("week of Mon 2 Jun 2025"),
            "{rcpt}'s subject: {got}"
        );
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "{rcpt}: {line:?} not in\n{text}"
            );
        }
        for part in absent {
            assert!(!text.contains(part), "{rcpt}: {part:?} in\n{text}");
        }
    };
    let marked = [
        "Rule changes this week (trust-wide, every school): 1",
        "Curriculum exemptions made or revoked this week (trust-wide, every school): 1",
    ];
    let mut north = marked.to_vec();
    north.push(
        "Monitoring notice at this school's stations: 2 acknowledgement(s) this week; 2 pupil(s) have accepted their group's current version, 1 have not yet.",
    );
    expect(
        "north@trust.test",
        "Tutela weekly summary: North Primary, week of ",
        &north,
        &["South Academy"],
    );
    let mut south = marked.to_vec();
    south.push(
        "Monitoring notice at this school's stations: 1 acknowledgement(s) this week; 1 pupil(s) have accepted their group's current version, 0 have not yet.",
    );
    expect(
        "south@trust.test",
        "Tutela weekly summary: South Academy, week of ",
        &south,
        &["North Primary"],
    );
    expect(
        "lead@trust.test",
        "Tutela weekly summary: week of ",
        &[
            "Rule changes this week: 1",
            "Curriculum exemptions made or revoked this week: 1",
            "Monitoring notice: 3 acknowledgement(s) this week; 3 pupil(s) have accepted their group's current version, 1 have not yet.",
        ],
        &["trust-wide", "North Primary", "South Academy"],
    );
}

#[test]
fn on_sqlite_a_schools_summary_names_it_and_counts_its_notice_acknowledgements() {
    scenario(None, "tenants-summary-school-sqlite");
}

#[test]
fn on_postgresql_a_schools_summary_names_it_and_counts_its_notice_acknowledgements() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-summary-school-postgres");
}
