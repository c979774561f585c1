//! The school's time zone from the system's tz database: the weekly summary
//! of a school in New York and of one in Sydney, each for a week holding a
//! clock change, shows every alert at its local time and counts the week
//! from local midnight to local midnight; an unknown zone stops `serve`.

use rusqlite::Connection;
use tutela_tests::seed::insert_alert;
use tutela_tests::{run_ok, Collector, Scratch};

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

#[test]
fn summaries_show_local_times_in_new_york_and_sydney_across_their_clock_changes() {
    let scratch = Scratch::new("time-zones");
    let c = Collector::init(scratch.path("collector")).unwrap();
    c.set_section("summary", "day = \"monday\"\ntime = \"08:00\"")
        .unwrap();
    // Creates the console, publishing and summary tables.
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let db = Connection::open(c.dir.join("tutela.db")).unwrap();
    // (UTC ms, local time in the school's zone, or None if outside its week).
    let new_york = [
        (1_741_505_400_000, Some("2025-03-09 03:30:00 EDT")), // 07:30 UTC, after the change
        (1_741_501_800_000, Some("2025-03-09 01:30:00 EST")), // 06:30 UTC, before it
        (1_741_577_400_000, Some("2025-03-09 23:30:00 EDT")), // Monday 03:30 UTC
        (1_740_976_200_000, None), // Monday 3 March 04:30 UTC: Sunday 23:30 EST
        (1_741_581_000_000, None), // Monday 10 March 00:30 EDT: the next week
    ];
    let sydney = [
        (1_743_867_000_000, Some("2025-04-06 02:30:00 AEDT")), // the first 02:30
        (1_743_870_600_000, Some("2025-04-06 02:30:00 AEST")), // the second
        (1_743_341_400_000, Some("2025-03-31 00:30:00 AEDT")), // Sunday 13:30 UTC
        (1_743_337_800_000, None),                             // Sunday 30 March 23:30
    ];
    let mut seq = 0;
    for (ms, _) in new_york.iter().chain(&sydney) {
        seq += 1;
        insert_alert(
            &db,
            seq,
            "pupil.one",
            *ms,
            "bullying",
            3,
            "bullying/r1",
            "new",
        );
    }

    let html = summary_in(&c, &scratch, "America/New_York", "2025-03-03");
    assert!(
        html.contains("Mon 3 Mar 2025 to Sun 9 Mar 2025 (America/New_York)"),
        "{html}"
    );
    for text in new_york.iter().filter_map(|(_, local)| *local) {
        assert!(html.contains(text), "{text} missing:\n{html}");
    }
    assert!(!html.contains("2025-03-02 23:30"), "{html}");
    assert!(!html.contains("2025-03-10 00:30"), "{html}");
    assert!(!html.contains(" AEDT</td>"), "{html}");
    // Counted from local midnight: Sunday 23:30 EST is the week before.
    assert!(
        html.contains("<b>3</b> alerts this week; previous week 1,"),
        "{html}"
    );

    let html = summary_in(&c, &scratch, "Australia/Sydney", "2025-03-31");
    assert!(
        html.contains("Mon 31 Mar 2025 to Sun 6 Apr 2025 (Australia/Sydney)"),
        "{html}"
    );
    for text in sydney.iter().filter_map(|(_, local)| *local) {
        assert!(html.contains(text), "{text} missing:\n{html}");
    }
    assert!(!html.contains("2025-03-30 23:30"), "{html}");
    assert!(!html.contains(" EDT</td>"), "{html}");
    assert!(
        html.contains("<b>3</b> alerts this week; previous week 1,"),
        "{html}"
    );
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
