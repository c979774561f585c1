//! The school's time zone from the system's tz database: the weekly summary
//! of a school in New York and of one in Sydney, each for a week holding a
//! clock change, shows every alert at its local time and counts the week
//! from local midnight to local midnight; so does the console's queue
//! filtered to the day of a change; an unknown zone stops `serve`.

use std::time::Duration;

use rusqlite::Connection;
use tutela_tests::seed::insert_alert;
use tutela_tests::web::{http, sign_in};
use tutela_tests::{run_ok, wait_for, Collector, Scratch};

/// Writes the summary for the week of `week` in `zone` and returns its HTML.
fn summary_in(c: &Collector, scratch: &Scratch, zone: &str, week: &str) -> String {
    c.set_section(
        "console",
        &format!("enabled = false\ntime_zone = \"{zone}\""),
    )
    .unwrap();
    let out = scratch.path(&format!("summary-{}.html", zone.replace('/', "-")));
    run_ok(
        c.cmd()
            .args(["summary", "--week", week, "--preview"])
            .arg(&out),
    )
    .unwrap();
    std::fs::read_to_string(out).unwrap()
}

/// An alert at UTC ms, its local time in the school's zone, and whether the
/// page under test should list it.
type Seeded<'a> = (i64, &'a str, bool);

/// Inserts the alerts, numbered from 1.
fn seed<'a>(db: &Connection, alerts: impl IntoIterator<Item = &'a Seeded<'a>>) {
    for (seq, (ms, _, _)) in (1..).zip(alerts) {
        insert_alert(
            db,
            seq,
            "pupil.one",
            *ms,
            "bullying",
            3,
            "bullying/r1",
            "new",
        );
    }
}

/// Checks which alerts `page` lists, each at its local time.
fn check_listed(page: &str, alerts: &[Seeded]) {
    for (ms, local, listed) in alerts {
        assert_eq!(page.contains(local), *listed, "{ms} as {local}:\n{page}");
    }
}

/// Checks the summary's heading, its alerts and its count line.
fn check_week(html: &str, heading: &str, alerts: &[Seeded], counts: &str) {
    assert!(html.contains(heading), "{heading} missing:\n{html}");
    check_listed(html, alerts);
    assert!(html.contains(counts), "{counts} missing:\n{html}");
}

#[test]
fn summaries_show_local_times_in_new_york_and_sydney_across_their_clock_changes() {
    let scratch = Scratch::new("time-zones");
    let c = Collector::init(scratch.path("collector")).unwrap();
    c.set_section("summary", "day = \"monday\"\ntime = \"08:00\"")
        .unwrap();
    // Creates the console, publishing and summary tables.
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let db = Connection::open(c.dir.join("tutela.db")).unwrap();
    // (UTC ms, local time in the school's zone, in the week summarised).
    let new_york = [
        (1_741_505_400_000, "2025-03-09 03:30:00 EDT", true), // 07:30 UTC, after the change
        (1_741_501_800_000, "2025-03-09 01:30:00 EST", true), // 06:30 UTC, before it
        (1_741_577_400_000, "2025-03-09 23:30:00 EDT", true), // Monday 03:30 UTC
        (1_740_976_200_000, "2025-03-02 23:30:00 EST", false), // Monday 04:30 UTC
        (1_741_581_000_000, "2025-03-10 00:30:00 EDT", false), // the next week
    ];
    let sydney = [
        (1_743_867_000_000, "2025-04-06 02:30:00 AEDT", true), // the first 02:30
        (1_743_870_600_000, "2025-04-06 02:30:00 AEST", true), // the second
        (1_743_341_400_000, "2025-03-31 00:30:00 AEDT", true), // Sunday 13:30 UTC
        (1_743_337_800_000, "2025-03-30 23:30:00 AEDT", false), // Sunday 12:30 UTC
    ];
    seed(&db, new_york.iter().chain(&sydney));
    // Weeks run from local midnight: Sunday 23:30 is the week before.
    let counts = "<b>3</b> alerts this week; previous week 1,";
    check_week(
        &summary_in(&c, &scratch, "America/New_York", "2025-03-03"),
        "Mon 3 Mar 2025 to Sun 9 Mar 2025 (America/New_York)",
        &new_york,
        counts,
    );
    check_week(
        &summary_in(&c, &scratch, "Australia/Sydney", "2025-03-31"),
        "Mon 31 Mar 2025 to Sun 6 Apr 2025 (Australia/Sydney)",
        &sydney,
        counts,
    );
}

#[test]
fn the_queue_filtered_to_the_day_new_york_springs_forward_shows_its_23_hours_in_local_time() {
    const PASSWORD: &str = "correct horse battery staple";
    let scratch = Scratch::new("time-zone-console");
    let (mut c, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    c.set_section(
        "console",
        &format!("enabled = true\nlisten = \"127.0.0.1:{port}\"\ntime_zone = \"America/New_York\""),
    )
    .unwrap();
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let db = Connection::open(c.dir.join("tutela.db")).unwrap();
    let alerts = [
        (1_741_496_400_000, "2025-03-09 00:00:00 EST", true), // 05:00 UTC: local midnight
        (1_741_501_800_000, "2025-03-09 01:30:00 EST", true),
        (1_741_505_400_000, "2025-03-09 03:30:00 EDT", true),
        (1_741_577_400_000, "2025-03-09 23:30:00 EDT", true), // Monday 03:30 UTC
        (1_741_496_399_000, "2025-03-08 23:59:59 EST", false),
        (1_741_579_200_000, "2025-03-10 00:00:00 EDT", false), // 23 hours after midnight
    ];
    seed(&db, &alerts);
    c.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let (session, _) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let page = http(
        port,
        "GET",
        "/queue?state=all&from=2025-03-09&to=2025-03-09",
        &session,
        &[],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    check_listed(&page.body, &alerts);
}

#[test]
fn an_unknown_time_zone_stops_serve_and_says_what_to_write() {
    let scratch = Scratch::new("time-zone-unknown");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    c.set_section("console", "enabled = false\ntime_zone = \"Mars/Olympus\"")
        .unwrap();
    let err = c.start().expect_err("unknown zone").to_string();
    for expected in [
        "[console] time_zone \"Mars/Olympus\" is not a time zone",
        "America/New_York",
        "tzdata",
        "fix collector.toml",
    ] {
        assert!(err.contains(expected), "{expected:?} missing: {err}");
    }
    c.set_section(
        "console",
        "enabled = false\ntime_zone = \"Australia/Sydney\"",
    )
    .unwrap();
    c.start().unwrap();
}
