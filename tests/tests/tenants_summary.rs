//! Schools as tenants, by email, on SQLite and on PostgreSQL: the weekly
//! summary goes to each school's recipients with its school's figures and
//! to the trust's across every school, each (school, week) recorded once;
//! urgent alerts reach their school's recipients and the trust's.

mod tenants_common;

use tenants_common::{now_ms, text_of, weekly_summaries, Db, SCHOOLS};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{free_port, run_ok, Collector, Scratch};

/// Two schools' alerts in one week, summarised per school and for the trust.
fn summary_scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (c, db, smtp_port) =
        tenants_common::summarised_schools(&scratch, pg, "staff_pattern = \"mr.*\"", SCHOOLS);
    // Tuesday 3 June 2025, noon UTC: in the week of Monday 2 June.
    const TUESDAY: i64 = 1_748_952_000_000;
    for (n, school) in ["north", "north", "south", "south", "south"]
        .iter()
        .enumerate()
    {
        let time_ms = TUESDAY + n as i64 * 60_000;
        match &db {
            Db::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join("tutela.db")).unwrap();
                let id = tutela_tests::seed::insert_alert(
                    &conn,
                    n as i64 + 1,
                    &format!("pupil.{school}"),
                    time_ms,
                    "bullying",
                    3,
                    "bullying/seed",
                    "new",
                );
                conn.execute(
                    "UPDATE alerts SET school = ?1 WHERE id = ?2",
                    rusqlite::params![school, id],
                )
                .unwrap();
            }
            Db::Pg(pg) => {
                pg.query(&format!(
                    "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
                        source, context, app, app_path, window_title, url, search_query, category,
                        severity, rule_id, term, matches, rules_version, body, signature, body_hash, school)
                     VALUES ('ev-{n}', 'ag-live', {n} + 1, {time_ms}, {time_ms} + 2000, 'pupil.{school}',
                        'LAB1-PC01', 'typed', 'context', 'firefox', '', '', '', '', 'bullying', 3,
                        'bullying/seed', 'term', '[]', 7, '\\x00', '\\x00', '\\x00', '{school}')"
                ))
                .unwrap();
            }
        }
    }

    let mut seen = Vec::new();
    for (rcpt, (_, text)) in weekly_summaries(&c, smtp_port, scratch.path("mail")) {
        let alerts = text
            .lines()
            .find_map(|l| l.strip_prefix("Alerts this week: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        seen.push((rcpt, alerts));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("lead@trust.test".to_owned(), "5".to_owned()),
            ("north@trust.test".to_owned(), "2".to_owned()),
            ("south@trust.test".to_owned(), "3".to_owned()),
        ],
        "each school's DSL gets its school's figures, the trust's lead every school's"
    );
    // Each (school, week) is recorded once.
    for school in ["", "north", "south"] {
        assert_eq!(
            db.one(&format!(
                "SELECT emails FROM summary_runs WHERE school = '{school}' AND week_start = '2025-06-02'"
            )),
            "1",
            "the run of {school:?}"
        );
    }
}

#[test]
fn on_sqlite_the_weekly_summary_goes_to_each_school_and_across_the_trust() {
    summary_scenario(None, "tenants-summary-sqlite");
}

#[test]
fn on_postgresql_the_weekly_summary_goes_to_each_school_and_across_the_trust() {
    let pg = PgCluster::start().unwrap();
    summary_scenario(Some(&pg), "tenants-summary-postgres");
}

#[test]
fn urgent_alerts_reach_their_schools_recipients_and_the_trusts() {
    use tutela_tests::{parse_email, SmtpSink};
    let scratch = Scratch::new("tenants-urgent");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let smtp_port = free_port();
    c.set_section("console", "enabled = false").unwrap();
    let mail = tenants_common::mail_to_schools_and_trust(
        smtp_port,
        "urgent_interval_secs = 1\nretry_initial_secs = 1\nretry_max_secs = 2\n",
    );
    c.set_section("mail", &mail).unwrap();
    for id in SCHOOLS {
        run_ok(c.cmd().args(["schools", "add", id, "--name", id])).unwrap();
    }
    let sink = SmtpSink::start(smtp_port, scratch.path("mail")).unwrap();
    c.start().unwrap();
    // Urgent alerts arrive after the collector started: one North, two South.
    let conn = rusqlite::Connection::open(c.dir.join("tutela.db")).unwrap();
    let mut ids = Vec::new();
    for (n, school) in ["north", "south", "south"].iter().enumerate() {
        let id = tutela_tests::seed::insert_alert(
            &conn,
            n as i64 + 1,
            &format!("pupil.{school}"),
            now_ms(),
            "suicide",
            5,
            "suicide/seed",
            "new",
        );
        conn.execute(
            "UPDATE alerts SET school = ?1 WHERE id = ?2",
            rusqlite::params![school, id],
        )
        .unwrap();
        ids.push(id);
    }
    let messages = sink
        .wait_for(3, std::time::Duration::from_secs(20))
        .unwrap();
    let mut seen: Vec<(String, Vec<i64>)> = messages
        .iter()
        .map(|(rcpt, path)| {
            let text = text_of(&parse_email(path).unwrap());
            let mut linked: Vec<i64> = text
                .match_indices("/alerts/")
                .filter_map(|(at, m)| {
                    let rest = &text[at + m.len()..];
                    let end = rest.find(|c: char| !c.is_ascii_digit())?;
                    rest[..end].parse().ok()
                })
                .collect();
            linked.sort();
            (rcpt[0].clone(), linked)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("lead@trust.test".to_owned(), ids.clone()),
            ("north@trust.test".to_owned(), vec![ids[0]]),
            ("south@trust.test".to_owned(), vec![ids[1], ids[2]]),
        ],
        "a school's DSL is told of its school's urgent alerts only, the trust's lead of all"
    );
    c.kill9();
}
