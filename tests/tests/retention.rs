//! Retention: the purge removes exactly the expired alerts and their
//! captures, run by hand and by `serve` on its own.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{params, Connection};
use tutela_tests::load::now_ms;
use tutela_tests::{free_port, run_ok, wait_for, Agent, Collector, Scratch};

const DAY_MS: i64 = 86_400_000;

/// The collector's live database, waiting up to ten seconds for its locks.
fn open_db(collector: &Collector) -> Connection {
    let conn = Connection::open(collector.dir.join("tutela.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// One seeded alert: how it was reviewed, and whether the purge must take it.
struct Case {
    name: &'static str,
    state: &'static str,
    /// (days ago, to_state) transitions, oldest first.
    history: &'static [(i64, &'static str)],
    capture: bool,
    folded_repeat: bool,
    expired: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "closed 400 days ago",
        state: "closed",
        history: &[(410, "in_review"), (400, "closed")],
        capture: true,
        folded_repeat: false,
        expired: true,
    },
    Case {
        name: "false positive 13 months ago",
        state: "false_positive",
        history: &[(400, "false_positive")],
        capture: true,
        folded_repeat: false,
        expired: true,
    },
    Case {
        name: "closed 2 years ago, with a folded repeat",
        state: "closed",
        history: &[(731, "in_review"), (730, "closed")],
        capture: true,
        folded_repeat: true,
        expired: true,
    },
    Case {
        name: "closed 45 days ago",
        state: "closed",
        history: &[(50, "in_review"), (45, "closed")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "open, raised long ago",
        state: "new",
        history: &[],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed long ago, reopened",
        state: "in_review",
        history: &[(500, "in_review"), (499, "closed"), (20, "in_review")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed long ago, reopened and closed again recently",
        state: "closed",
        history: &[
            (500, "in_review"),
            (499, "closed"),
            (20, "in_review"),
            (10, "closed"),
        ],
        capture: false,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed with no recorded close time",
        state: "closed",
        history: &[],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "false positive 11 months ago",
        state: "false_positive",
        history: &[(330, "false_positive")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
];

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn ids(conn: &Connection, sql: &str) -> BTreeSet<i64> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn retention_purge_removes_exactly_the_expired_alerts_and_their_captures() {
    let scratch = Scratch::new("retention");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    // This test runs each purge itself; the daily one has its own test.
    collector
        .set_section("retention", "closed_alert_months = 12\npurge_daily = false")
        .unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let extra = 3;
    let n = CASES.len() + extra;
    agent.start(&["--simulate", &n.to_string()]).unwrap();
    wait_for("seed alerts stored", Duration::from_secs(60), || {
        collector.alert_count() == n
    })
    .unwrap();
    agent.kill9();
    // A dry run on a fresh collector removes nothing (and makes the console's
    // tables if the console has not yet).
    let out = run_ok(collector.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(out.contains("would remove 0 alerts"), "{out}");

    // Seed the review history straight into the live database.
    let conn = open_db(&collector);
    let now = now_ms();
    let alert_ids: Vec<i64> = ids(&conn, "SELECT id FROM alerts ORDER BY seq")
        .into_iter()
        .collect();
    let mut expired = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut expired_captures = BTreeSet::new();
    let mut kept_captures = BTreeSet::new();
    let capture = |alert_id: i64| {
        conn.execute(
            "INSERT INTO captures (alert_id, sha256, size, width, height, sealed) VALUES (?1, ?2, 4, 2, 2, ?3)",
            params![alert_id, vec![7u8; 32], vec![9u8; 64]],
        )
        .unwrap();
        conn.execute(
            "UPDATE alerts SET has_capture = 1 WHERE id = ?1",
            [alert_id],
        )
        .unwrap();
    };
    for (case, &id) in CASES.iter().zip(&alert_ids) {
        conn.execute(
            "UPDATE alerts SET state = ?2, time_ms = ?3 WHERE id = ?1",
            params![id, case.state, now - 800 * DAY_MS],
        )
        .unwrap();
        let mut from = "new";
        for (days, to) in case.history {
            conn.execute(
                "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, 'dsl', ?3, ?4, '')",
                params![id, now - days * DAY_MS, from, to],
            )
            .unwrap();
            from = to;
        }
        conn.execute(
            "INSERT INTO console_review (alert_id, fp_reason, updated_ms) VALUES (?1, '', ?2)",
            params![id, now],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (?1, ?2, 'dsl', ?3)",
            params![id, now - 400 * DAY_MS, case.name],
        )
        .unwrap();
        if case.capture {
            capture(id);
        }
        let (set, captures) = if case.expired {
            (&mut expired, &mut expired_captures)
        } else {
            (&mut kept, &mut kept_captures)
        };
        set.insert(id);
        if case.capture {
            captures.insert(id);
        }
        if case.folded_repeat {
            conn.execute(
                "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source, context, app, app_path,
                    window_title, url, search_query, category, severity, rule_id, term, matches, rules_version, state, repeat_of,
                    body, signature, body_hash)
                 SELECT event_id || '-r', agent_id, seq + 100000, time_ms, received_ms, user, station, source, context, app, app_path,
                    window_title, url, search_query, category, severity, rule_id, term, matches, rules_version, 'folded', event_id,
                    body, signature, body_hash FROM alerts WHERE id = ?1",
                [id],
            )
            .unwrap();
            let folded = conn.last_insert_rowid();
            capture(folded);
            set.insert(folded);
            captures.insert(folded);
        }
    }
    // The unreviewed rest stay, with or without captures.
    for &id in &alert_ids[CASES.len()..] {
        kept.insert(id);
    }
    capture(alert_ids[CASES.len()]);
    kept_captures.insert(alert_ids[CASES.len()]);
    let all_alerts = ids(&conn, "SELECT id FROM alerts");
    assert_eq!(all_alerts.len(), n + 1);
    let notes_before = count(&conn, "SELECT COUNT(*) FROM console_notes");
    let history_before = count(&conn, "SELECT COUNT(*) FROM console_history");

    // The dry run counts and changes nothing.
    let out = run_ok(collector.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(
        out.contains("(dry run): would remove 3 alerts")
            && out.contains("(1 folded repeats or burst shots, 4 captures)"),
        "{out}"
    );
    assert_eq!(ids(&conn, "SELECT id FROM alerts"), all_alerts);

    // The purge, while the collector serves.
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(
        out.contains("purge: removed 3 alerts closed before")
            && out.contains("(1 folded repeats or burst shots, 4 captures)"),
        "{out}"
    );
    assert_eq!(
        ids(&conn, "SELECT id FROM alerts"),
        kept,
        "exactly the expired alerts go"
    );
    assert_eq!(
        ids(&conn, "SELECT alert_id FROM captures"),
        kept_captures,
        "exactly their captures go"
    );
    let review = ids(&conn, "SELECT alert_id FROM console_review");
    assert!(
        review.is_disjoint(&expired),
        "review rows of purged alerts remain"
    );
    assert_eq!(review.len(), CASES.iter().filter(|c| !c.expired).count());
    // Append-only records stay (holding no evidence); the purge is audited.
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM console_notes"),
        notes_before
    );
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM console_history"),
        history_before
    );
    let audit: String = conn
        .query_row(
            "SELECT detail FROM console_audit WHERE action = 'retention_purge' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audit.starts_with("removed 3 alerts"), "{audit}");
    // The collector still serves its queue.
    assert_eq!(collector.alerts().unwrap().len(), kept.len());

    // Again: nothing more to do.
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(out.contains("removed 0 alerts"), "{out}");

    // The period is configurable: one month takes the 45-day and 11-month ones too.
    collector
        .set_section("retention", "closed_alert_months = 1")
        .unwrap();
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(out.contains("removed 2 alerts"), "{out}");
    assert_eq!(ids(&conn, "SELECT id FROM alerts").len(), kept.len() - 2);
    // Zero months is refused rather than deleting every closed alert.
    collector
        .set_section("retention", "closed_alert_months = 0")
        .unwrap();
    let refused = tutela_tests::run_failing(collector.cmd().arg("purge"));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set at least 1"));
}

#[test]
fn serve_runs_the_retention_purge_by_itself() {
    let scratch = Scratch::new("daily-purge");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    agent.start(&["--simulate", "2"]).unwrap();
    wait_for("two stored alerts", Duration::from_secs(60), || {
        collector.alert_count() == 2
    })
    .unwrap();
    agent.kill9();
    // The first alert was closed 400 days ago; the second is open.
    let conn = open_db(&collector);
    let now = now_ms();
    let first: i64 = conn
        .query_row("SELECT id FROM alerts WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    conn.execute("UPDATE alerts SET state = 'closed' WHERE id = ?1", [first])
        .unwrap();
    conn.execute(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, 'dsl', 'in_review', 'closed', '')",
        params![first, now - 400 * DAY_MS],
    )
    .unwrap();
    // serve purges a minute after it starts, then daily.
    wait_for(
        "the purge started by serve",
        Duration::from_secs(150),
        || collector.alert_count() == 1,
    )
    .unwrap_or_else(|e| panic!("{e}; collector log:\n{}", collector.log_text()));
    let left = collector.alerts().unwrap();
    assert_eq!(left[0]["seq"], 2, "{left:?}");
    wait_for("the purge's log line", Duration::from_secs(10), || {
        collector.log_text().contains("retention purge done")
    })
    .unwrap();
}
