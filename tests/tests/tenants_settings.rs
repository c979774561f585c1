//! A school's own settings, on SQLite and on PostgreSQL: its time zone and
//! its retention, each the trust's until set. `schools set` refuses an
//! unknown zone, a retention out of range and an unknown school with
//! nothing changed; the retention purge removes North's closed alert by
//! North's one month and keeps South's (the trust's twelve); North's weekly
//! summary counts North's Monday-to-Sunday in North's zone (Pacific/Auckland)
//! while the trust's and South's count London's.

mod tenants_common;

use tenants_common::{ask, now_ms, weekly_summaries, Db, PASSWORD};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::sign_in;
use tutela_tests::{free_port, run_failing, run_ok, Scratch};

/// Sunday 1 June 2025, 13:00 UTC: Monday 2 June 01:00 in Auckland (in the
/// week of Monday 2 June there), still Sunday in London (the week before).
const SUNDAY_1: i64 = 1_748_782_800_000;
/// Sunday 8 June 2025, 13:00 UTC: Monday 9 June in Auckland (the next
/// week), Sunday in London (in the week of Monday 2 June).
const SUNDAY_8: i64 = SUNDAY_1 + 7 * 86_400_000;
/// Tuesday 3 June 2025, noon UTC: in the week of Monday 2 June everywhere.
const TUESDAY: i64 = 1_748_952_000_000;
const DAY_MS: i64 = 86_400_000;

/// Stores an alert of `school` at `time_ms`, in `state`; its id.
fn alert(db: &Db<'_>, n: u32, school: &str, time_ms: i64, state: &str) -> i64 {
    let byte = db.blob("00");
    db.exec(&format!(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
            source, context, app, app_path, window_title, url, search_query, category,
            severity, rule_id, term, matches, rules_version, body, signature, body_hash, school, state)
         VALUES ('ev-{n}', 'ag-{school}', {n}, {time_ms}, {time_ms}, 'pupil.{school}', '{school}-PC01',
            'typed', 'context', 'firefox', '', '', '', '', 'bullying', 3, 'bullying/seed', 'term',
            '[]', 7, {byte}, {byte}, {byte}, '{school}', '{state}')"
    ));
    db.id(&format!("SELECT id FROM alerts WHERE event_id = 'ev-{n}'"))
}

/// Stores a closed alert of `school`, closed `days` ago; its id.
fn closed(db: &Db<'_>, n: u32, school: &str, days: i64) -> i64 {
    let at = now_ms() - days * DAY_MS;
    let id = alert(db, n, school, at - DAY_MS, "closed");
    db.exec(&format!(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason)
         VALUES ({id}, {at}, 'dsl', 'new', 'closed', 'done')"
    ));
    id
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db, smtp_port) =
        tenants_common::summarised_schools(&scratch, pg, "", ["North Primary", "South Academy"]);
    // The trust's DSL.
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    run_ok(
        c.cmd()
            .args(["user", "add", "lead", "--role", "dsl", "--trust"])
            .arg("--password-file")
            .arg(&password),
    )
    .unwrap();

    // Wrong values are refused, saying what to give, with nothing changed.
    for (args, says) in [
        (&["--time-zone", "Mars/Olympus"][..], "is not a time zone"),
        (&["--retention-months", "121"][..], "1-120 calendar months"),
        (&[][..], "give --time-zone and/or --retention-months"),
    ] {
        let out = run_failing(c.cmd().args(["schools", "set", "north"]).args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = run_failing(
        c.cmd()
            .args(["schools", "set", "west", "--retention-months", "3"]),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no school \"west\""));
    let list = run_ok(c.cmd().args(["schools", "list"])).unwrap();
    assert!(list.contains("north\tNorth Primary\n"), "{list}");

    let out = run_ok(c.cmd().args([
        "schools",
        "set",
        "north",
        "--time-zone",
        "Pacific/Auckland",
        "--retention-months",
        "1",
    ]))
    .unwrap();
    assert!(
        out.contains("school north: school=north, time_zone=Pacific/Auckland, retention_months=1"),
        "{out}"
    );
    let list = run_ok(c.cmd().args(["schools", "list"])).unwrap();
    assert!(
        list.contains("north\tNorth Primary\ttime zone Pacific/Auckland, retention 1 months\n")
            && list.contains("south\tSouth Academy\n"),
        "{list}"
    );
    assert_eq!(
        db.one("SELECT detail FROM console_audit WHERE action = 'school_settings'"),
        "school=north; time_zone=Pacific/Auckland; retention_months=1"
    );

    // Retention: North keeps closed alerts one month, South the trust's 12.
    let north_old = closed(&db, 101, "north", 60);
    let north_new = closed(&db, 102, "north", 10);
    let south_old = closed(&db, 103, "south", 60);
    let dry = run_ok(c.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(dry.contains("would remove 1 alerts"), "{dry}");
    assert!(dry.contains("; school north: closed before "), "{dry}");
    let out = run_ok(c.cmd().arg("purge")).unwrap();
    assert!(out.contains("removed 1 alerts"), "{out}");
    let left = |id: i64| db.one(&format!("SELECT COUNT(*) FROM alerts WHERE id = {id}"));
    assert_eq!(left(north_old), "0", "North's alert past North's month");
    assert_eq!(left(north_new), "1", "North's alert within North's month");
    assert_eq!(
        left(south_old),
        "1",
        "South's alert within the trust's year"
    );
    // Back to the trust's retention: the next purge keeps North's too.
    run_ok(
        c.cmd()
            .args(["schools", "set", "north", "--retention-months", "0"]),
    )
    .unwrap();
    let north_again = closed(&db, 104, "north", 60);
    run_ok(c.cmd().arg("purge")).unwrap();
    assert_eq!(left(north_again), "1");

    // The summary: North's week in Auckland, the trust's and South's in
    // London.
    let north_sunday = alert(&db, 1, "north", SUNDAY_1, "new");
    alert(&db, 2, "north", SUNDAY_8, "new");
    let south_tuesday = alert(&db, 3, "south", TUESDAY, "new");
    let by_rcpt = weekly_summaries(&c, smtp_port, scratch.path("mail"));
    let expect = |rcpt: &str, lines: &[&str]| {
        let (subject, text) = &by_rcpt[rcpt];
        assert!(
            subject.ends_with("week of Mon 2 Jun 2025"),
            "{rcpt}: {subject}"
        );
        for line in lines {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "{rcpt}: {line:?} not in\n{text}"
            );
        }
    };
    expect(
        "north@trust.test",
        &["Alerts this week: 1 (previous week 0", "Week: "],
    );
    assert!(by_rcpt["north@trust.test"].1.contains("Pacific/Auckland"));
    expect(
        "south@trust.test",
        &["Alerts this week: 1 (previous week 0"],
    );
    expect("lead@trust.test", &["Alerts this week: 2 (previous week 1"]);
    assert!(!by_rcpt["lead@trust.test"].1.contains("Pacific/Auckland"));
    console(&mut c, &db, &password, (north_sunday, south_tuesday));
}

/// The row of alert or audit entry `id` in a list page.
fn row(body: &str, attribute: &str, id: impl std::fmt::Display) -> String {
    let start = body
        .find(&format!("{attribute}{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in\n{body}"));
    let rest = &body[start..];
    rest[..rest.find("</tr>").unwrap()].to_owned()
}

/// The Settings page: North's DSL sets North's own settings (checked
/// first) and no other school's, and sees North's alerts in North's zone;
/// the trust's DSL sees each school's alerts and audit entries in that
/// school's zone (London's for South and the trust's own), and sets
/// South's, whose alerts then show in South's; a technician may not change
/// them.
fn console(
    c: &mut tutela_tests::Collector,
    db: &Db<'_>,
    password: &std::path::Path,
    (north_sunday, south_tuesday): (i64, i64),
) {
    let port = free_port();
    c.set_section(
        "console",
        &format!("listen = \"127.0.0.1:{port}\"\ntime_zone = \"Europe/London\""),
    )
    .unwrap();
    for (name, role, scope) in [
        ("dsl-north", "dsl", &["--school", "north"][..]),
        ("tech-north", "technician", &["--school", "north"][..]),
        ("auditor", "auditor", &["--trust"][..]),
    ] {
        run_ok(
            c.cmd()
                .args(["user", "add", name, "--role", role])
                .args(scope)
                .arg("--password-file")
                .arg(password),
        )
        .unwrap();
    }
    c.start().unwrap();
    tutela_tests::console_client::wait_for_port(port);
    let north = sign_in(port, "dsl-north", PASSWORD, "/settings");
    let page = ask(port, &north, "GET", "/settings", &[]);
    assert!(
        page.body.contains("Save north")
            && !page.body.contains("Save south")
            && !page.body.contains("settings-form"),
        "North's DSL sets North's own settings only: {}",
        page.body
    );
    let set = |me: &(String, String), school: &str, zone: &str, months: &str| {
        ask(
            port,
            me,
            "POST",
            "/settings/school",
            &[
                ("school", school),
                ("time_zone", zone),
                ("retention_months", months),
            ],
        )
    };
    let r = set(&north, "north", "Mars/Olympus", "3");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("is not a time zone") && r.body.contains("Nothing was changed"));
    let r = set(&north, "north", "UTC", "500");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("1-120 calendar months"), "{}", r.body);
    assert_eq!(set(&north, "south", "UTC", "3").status, 404);
    let own = |school: &str| {
        db.one(&format!(
            "SELECT time_zone || '|' || retention_months FROM schools WHERE id = '{school}'"
        ))
    };
    assert_eq!(own("north"), "Pacific/Auckland|0", "nothing changed");
    assert_eq!(own("south"), "|0", "nothing changed");
    assert_eq!(set(&north, "north", "Pacific/Auckland", "6").status, 303);
    assert_eq!(own("north"), "Pacific/Auckland|6");
    assert_eq!(
        db.one(
            "SELECT detail FROM console_audit WHERE actor = 'dsl-north' AND action = 'school_settings'"
        ),
        "school=north; time_zone=Pacific/Auckland; retention_months=6"
    );
    // North's alert of Sunday 1 June 13:00 UTC is Monday 01:00 in Auckland.
    let queue = ask(port, &north, "GET", "/queue?state=all", &[]);
    assert!(queue.body.contains("NZST"), "{}", queue.body);

    assert!(
        row(&queue.body, "<tr data-id=\"", north_sunday).contains("2025-06-02 01:00:00 NZST"),
        "{}",
        queue.body
    );

    // The trust's DSL sees each school's alerts in that school's zone.
    let lead = sign_in(port, "lead", PASSWORD, "/settings");
    let queue = ask(port, &lead, "GET", "/queue?state=all", &[]);
    let queued = |body: &str, id: i64| row(body, "<tr data-id=\"", id);
    assert!(
        queued(&queue.body, north_sunday).contains("2025-06-02 01:00:00 NZST"),
        "North's alert in Auckland's time: {}",
        queue.body
    );
    assert!(
        queued(&queue.body, south_tuesday).contains("2025-06-03 13:00:00 BST"),
        "South's alert in the trust's (London's) time: {}",
        queue.body
    );
    let page = ask(port, &lead, "GET", &format!("/alerts/{north_sunday}"), &[]);
    assert!(
        page.body
            .contains("id=\"alert-time\">2025-06-02 01:00:00 NZST<"),
        "the alert page in its school's time: {}",
        page.body
    );
    other_pages(port, &lead, db, north_sunday);
    assert_eq!(set(&lead, "south", "Europe/Dublin", "24").status, 303);
    assert_eq!(own("south"), "Europe/Dublin|24");
    let queue = ask(port, &lead, "GET", "/queue?state=all", &[]);
    assert!(
        queued(&queue.body, south_tuesday).contains("2025-06-03 13:00:00 IST"),
        "South's alert in South's own zone once set: {}",
        queue.body
    );
    // The trust's audit log: North's DSL's change in Auckland's time (NZDT
    // or NZST, by the date), the trust's DSL's in London's.
    let auditor = sign_in(port, "auditor", PASSWORD, "/audit");
    let audit = ask(port, &auditor, "GET", "/audit", &[]);
    assert_eq!(audit.status, 200);
    let entry = |actor: &str| {
        let id: i64 = db
            .one(&format!(
                "SELECT MAX(id) FROM console_audit WHERE actor = '{actor}' AND action = 'school_settings'"
            ))
            .parse()
            .unwrap();
        audit
            .body
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<td>{id}</td>")))
            .unwrap_or_else(|| panic!("no entry {id} in\n{}", audit.body))
            .to_owned()
    };
    let north_entry = entry("dsl-north");
    assert!(north_entry.contains(" NZ"), "{north_entry}");
    let lead_entry = entry("lead");
    assert!(
        lead_entry.contains(" GMT<") || lead_entry.contains(" BST<"),
        "{lead_entry}"
    );

    let tech = sign_in(port, "tech-north", PASSWORD, "/fleet");
    assert_eq!(ask(port, &tech, "GET", "/settings", &[]).status, 403);
    assert_eq!(set(&tech, "north", "UTC", "1").status, 403);
    assert_eq!(own("north"), "Pacific/Auckland|6");
    c.kill9();
}

/// The Fleet, Tokens and Exemptions pages and the alert page's pupil
/// timeline: the trust's DSL sees each row's time in its school's zone,
/// North's (Auckland) and South's (the trust's, London).
fn other_pages(port: u16, lead: &(String, String), db: &Db<'_>, north_sunday: i64) {
    let week = TUESDAY + 7 * DAY_MS;
    for (n, school) in [(1, "north"), (2, "south")] {
        let key = db.blob(&format!("0{n}").repeat(32));
        db.exec(&format!(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms, school)
                 VALUES ('ag-{school}', {key}, '{school}-PC09', 'lab', 1, {TUESDAY}, '{school}');
             INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses, school)
                 VALUES ({key}, 'token-{school}', 'lab', 1, {TUESDAY}, 5, '{school}');
             INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, school)
                 VALUES ('lab', 'drugs', '', 'lesson-{school}', 'lead', 1, {TUESDAY}, {week}, '{school}')"
        ));
    }
    // Tuesday 3 June noon UTC: Wednesday 00:00 in Auckland, 13:00 in London;
    // a week later the same.
    let (north_tuesday, south_tuesday) = ("2025-06-04 00:00:00 NZST", "2025-06-03 13:00:00 BST");
    let (north_week, south_week) = ("2025-06-11 00:00:00 NZST", "2025-06-10 13:00:00 BST");
    let fleet = ask(port, lead, "GET", "/fleet", &[]);
    assert_eq!(fleet.status, 200);
    let station = |school: &str| {
        let start = fleet
            .body
            .find(&format!("data-agent=\"ag-{school}\""))
            .unwrap_or_else(|| panic!("no station of {school} in\n{}", fleet.body));
        let rest = &fleet.body[start..];
        rest[..rest.find("</tr>").unwrap()].to_owned()
    };
    assert!(
        station("north").contains(north_tuesday),
        "{}",
        station("north")
    );
    assert!(
        station("south").contains(south_tuesday),
        "{}",
        station("south")
    );

    let tokens = ask(port, lead, "GET", "/tokens", &[]);
    assert_eq!(tokens.status, 200);
    // A token's id: the first 12 hex digits of its secret's hash.
    let token = |n: usize| row(&tokens.body, "data-token=\"", format!("0{n}").repeat(6));
    assert!(token(1).contains(north_tuesday), "{}", token(1));
    assert!(token(2).contains(south_tuesday), "{}", token(2));

    let exemptions = ask(port, lead, "GET", "/exemptions", &[]);
    assert_eq!(exemptions.status, 200);
    let exemption = |school: &str| {
        let id = db.id(&format!(
            "SELECT id FROM exemptions WHERE reason = 'lesson-{school}'"
        ));
        row(&exemptions.body, "data-id=\"", id)
    };
    let north = exemption("north");
    assert!(
        north.contains(north_tuesday) && north.contains(north_week),
        "{north}"
    );
    let south = exemption("south");
    assert!(
        south.contains(south_tuesday) && south.contains(south_week),
        "{south}"
    );

    // The pupil's timeline on the alert page: North's alerts in Auckland's
    // time.
    let page = ask(port, lead, "GET", &format!("/alerts/{north_sunday}"), &[]);
    let start = page
        .body
        .find("id=\"timeline\"")
        .unwrap_or_else(|| panic!("no timeline in\n{}", page.body));
    let timeline = &page.body[start..];
    let timeline = &timeline[..timeline.find("</table>").unwrap()];
    let entry = timeline
        .split("<tr")
        .find(|r| r.contains(&format!("href=\"/alerts/{north_sunday}\"")))
        .unwrap_or_else(|| panic!("no alert {north_sunday} in\n{timeline}"));
    assert!(entry.contains("2025-06-02 01:00:00 NZST"), "{timeline}");
    assert!(!timeline.contains(" BST<"), "{timeline}");
}

#[test]
fn on_sqlite_a_school_has_its_own_time_zone_and_retention() {
    scenario(None, "tenants-settings-sqlite");
}

#[test]
fn on_postgresql_a_school_has_its_own_time_zone_and_retention() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-settings-postgres");
}
