//! The weekly summary and urgent notifications, sent by the real collector to
//! a real SMTP server (aiosmtpd) on loopback, parsed with Python's `email`
//! package, and checked against the collector's database.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde_json::Value;
use tutela_tests::seed::insert_alert;
use tutela_tests::{
    free_port, parse_email, run_failing, run_ok, wait_for, Agent, Collector, Scratch, SmtpSink,
};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// Monday 2 June 2025 00:00 BST.
const WEEK_START: i64 = 1_748_818_800_000;
const CONSOLE: &str = "https://console.school.test";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `[mail]` pointing at `port` on loopback with the given recipients.
fn mail_section(port: u16, recipients: &[(&str, &str)]) -> String {
    let mut s = format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Tutela <tutela@school.test>\"\n\
         console_url = \"{CONSOLE}\"\nurgent_interval_secs = 2\nretry_initial_secs = 1\nretry_max_secs = 2\n"
    );
    for (address, role) in recipients {
        s.push_str(&format!(
            "\n[[mail.recipients]]\naddress = \"{address}\"\nroles = [\"{role}\"]\n"
        ));
    }
    s
}

const RECIPIENTS: [(&str, &str); 4] = [
    ("dsl@school.test", "dsl"),
    ("deputy@school.test", "deputy-dsl"),
    ("head@school.test", "head"),
    ("technician@school.test", "technician"),
];

fn configure(c: &Collector, smtp_port: u16, summary: &str) {
    c.set_section(
        "console",
        "enabled = false\ntime_zone = \"Europe/London\"\nstaff_pattern = \"mr.*\"",
    )
    .unwrap();
    c.set_section("mail", &mail_section(smtp_port, &RECIPIENTS))
        .unwrap();
    c.set_section("summary", summary).unwrap();
}

/// A small deterministic generator for the seeded week.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

const CATEGORIES: [&str; 5] = [
    "self-harm",
    "bullying",
    "violence",
    "extremism",
    "adult-content",
];

/// Seeds the week of 2 June 2025, the week before, an old unreviewed alert,
/// reviews, a rule change, an exemption and two stations (one silent).
fn seed(db: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut rng = Lcg(42);
    let mut seq = 0;
    for (start, n) in [(WEEK_START, 90), (WEEK_START - 7 * DAY, 50)] {
        for i in 0..n {
            seq += 1;
            let day = rng.next(7);
            let time = start + day * DAY + 8 * HOUR + rng.next(8 * 60) * 60_000 + i * 7;
            let category = CATEGORIES[[0, 0, 1, 1, 1, 2, 2, 3, 4][rng.next(9) as usize]];
            let severity = [1, 2, 2, 3, 3, 3, 4, 4, 5][rng.next(9) as usize];
            let user = if rng.next(12) == 0 {
                "mr.jones".to_owned()
            } else {
                format!("pupil.{}", rng.next(20))
            };
            let rule = format!("en-GB/{category}/{}", rng.next(3));
            let state = [
                "new",
                "new",
                "new",
                "closed",
                "closed",
                "false_positive",
                "false_positive",
                "in_review",
                "escalated",
            ][rng.next(9) as usize];
            let id = insert_alert(&conn, seq, &user, time, category, severity, &rule, state);
            if state != "new" {
                let first = time + 2000 + (5 + rng.next(600)) * 60_000;
                let to = if state == "escalated" {
                    "in_review"
                } else {
                    state
                };
                conn.execute(
                    "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state) VALUES (?1, ?2, 'dsl', 'new', ?3)",
                    params![id, first, to],
                )
                .unwrap();
                if state == "escalated" {
                    conn.execute(
                        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state) VALUES (?1, ?2, 'dsl', 'in_review', 'escalated')",
                        params![id, first + HOUR],
                    )
                    .unwrap();
                }
            }
            if i % 15 == 0 {
                // A folded repeat: never counted on its own.
                seq += 1;
                insert_alert(
                    &conn,
                    seq,
                    &user,
                    time + 30_000,
                    category,
                    severity,
                    &rule,
                    "folded",
                );
            }
        }
    }
    seq += 1;
    insert_alert(
        &conn,
        seq,
        "pupil.3",
        WEEK_START - 30 * DAY,
        "bullying",
        2,
        "en-GB/bullying/0",
        "new",
    );
    conn.execute(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES ('en-GB', 7, 0, x'00', '', ?1)",
        [WEEK_START + 2 * DAY + 10 * HOUR],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES ('en-GB', 6, 0, x'00', '', ?1)",
        [WEEK_START - 20 * DAY],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
         VALUES ('Year 9', 'self-harm', '', 'PSHE unit on wellbeing', 'dsl', ?1, ?2, ?3)",
        params![WEEK_START + DAY + 9 * HOUR, WEEK_START + DAY, WEEK_START + 5 * DAY],
    )
    .unwrap();
    let now = now_ms();
    for (id, station, seen) in [
        ("ag-silent", "LAB2-PC03", now - 10 * DAY),
        ("ag-live", "LAB1-PC01", now),
    ] {
        conn.execute(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms) VALUES (?1, ?2, ?3, 'ICT suite 2', ?4, ?5)",
            params![id, id.as_bytes(), station, now - 60 * DAY, seen],
        )
        .unwrap();
    }
}

/// The staff condition the console applies with `staff_pattern = "mr.*"`.
const STAFF: &str = "lower(user) GLOB 'mr.*'";

fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> i64 {
    conn.query_row(sql, p, |r| r.get(0)).unwrap()
}

fn change(now: i64, before: i64) -> String {
    match now - before {
        d if d > 0 => format!("+{d}"),
        d => d.to_string(),
    }
}

fn duration(ms: i64) -> String {
    let s = ms / 1000;
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{} {}", plural(d, "day"), plural(h, "hour"))
    } else if h > 0 {
        format!("{} {}", plural(h, "hour"), plural(m, "minute"))
    } else if m > 0 {
        plural(m, "minute")
    } else {
        plural(s, "second")
    }
}

/// The text the summary must show for `scope` (`NOT (staff)` or `(staff)`),
/// from SQL over the seeded database; and the alert ids it may link to.
fn expected_lines(conn: &Connection, scope: &str) -> (Vec<String>, Vec<i64>) {
    let (s, e) = (WEEK_START, WEEK_START + 7 * DAY);
    let (ps, pe) = (s - 7 * DAY, s);
    let in_week = format!("{scope} AND state <> 'folded' AND time_ms >= ?1 AND time_ms < ?2");
    let mut lines = Vec::new();
    let total = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {in_week}"),
        [s, e],
    );
    let prev = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {in_week}"),
        [ps, pe],
    );
    assert!(total > 5, "the seed gives this scope alerts");
    lines.push(format!(
        "Alerts this week: {total} (previous week {prev}, change {})",
        change(total, prev)
    ));
    for cat in CATEGORIES {
        let by_sev: Vec<String> = (1..=5)
            .map(|sev| {
                count(
                    conn,
                    &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3 AND severity = ?4"),
                    params![s, e, cat, sev],
                )
                .to_string()
            })
            .collect();
        let t = count(
            conn,
            &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3"),
            params![s, e, cat],
        );
        let p = count(
            conn,
            &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3"),
            params![ps, pe, cat],
        );
        if t + p > 0 {
            lines.push(format!(
                "  {cat}: {}; {t}; {p}; {}",
                by_sev.join("/"),
                change(t, p)
            ));
        }
    }
    let unreviewed = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {scope} AND state = 'new'"),
        [],
    );
    lines.push(format!("Unreviewed alerts: {unreviewed} (oldest waiting "));
    let mut waits: Vec<i64> = conn
        .prepare(&format!(
            "SELECT MIN(h.time_ms) - a.received_ms FROM alerts a JOIN console_history h
             ON h.alert_id = a.id AND h.from_state = 'new' WHERE {} GROUP BY a.id",
            in_week
                .replace("state", "a.state")
                .replace("time_ms", "a.time_ms")
        ))
        .unwrap()
        .query_map([s, e], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    waits.sort_unstable();
    let n = waits.len();
    assert!(n > 3, "the seed reviews some of this scope's alerts");
    let median = if n % 2 == 1 {
        waits[n / 2]
    } else {
        (waits[n / 2 - 1] + waits[n / 2]) / 2
    };
    lines.push(format!(
        "Median time to first review: {} ({n} alerts reviewed)",
        duration(median)
    ));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rule_id, SUM(state = 'false_positive'), COUNT(*) FROM alerts WHERE {in_week}
             GROUP BY rule_id HAVING SUM(state = 'false_positive') > 0 ORDER BY 2 DESC, 3 DESC, rule_id LIMIT 5"
        ))
        .unwrap();
    let fps: Vec<String> = stmt
        .query_map([s, e], |r| {
            Ok(format!(
                "  {}: {} of {} alerts",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!fps.is_empty());
    lines.extend(fps);
    let top: Vec<i64> = conn
        .prepare(&format!(
            "SELECT id FROM alerts WHERE {in_week} ORDER BY severity DESC, time_ms DESC LIMIT 10"
        ))
        .unwrap()
        .query_map([s, e], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    lines.push("Rule changes this week: 1".into());
    lines.push("  live pack en-GB version 7, published 2025-06-04 10:00:00 BST".into());
    lines.push("Curriculum exemptions made or revoked this week: 1".into());
    lines.push("LAB2-PC03 (ICT suite 2), last seen".into());
    (lines, top)
}

fn part<'a>(email: &'a Value, content_type: &str) -> &'a Value {
    email["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part in {email}"))
}

/// Every alert id linked from `text`.
fn linked_ids(text: &str) -> Vec<i64> {
    text.split(&format!("{CONSOLE}/alerts/"))
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .collect()
}

fn check_png(bytes: &[u8]) -> image::RgbImage {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("the PNG decodes")
        .to_rgb8()
}

#[test]
fn a_seeded_week_is_summarised_for_each_recipient_with_figures_matching_the_database() {
    let scratch = Scratch::new("summary-week");
    let c = Collector::init(scratch.path("collector")).unwrap();
    let smtp_port = free_port();
    configure(
        &c,
        smtp_port,
        "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\", \"deputy-dsl\", \"head\"]\ncheck_secs = 60",
    );
    // Creates the console, publishing and summary tables.
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let db = c.dir.join("tutela.db");
    seed(&db);

    let sink = SmtpSink::start(smtp_port, scratch.path("mail")).unwrap();
    let out = run_ok(
        c.cmd()
            .args(["summary", "--send-now", "--week", "2025-06-02"]),
    )
    .unwrap();
    assert!(
        out.contains("queued 3 summary emails for the week of 2025-06-02; 3 sent, 0 not sent yet"),
        "{out}"
    );
    let messages = sink.wait_for(3, Duration::from_secs(10)).unwrap();
    assert_eq!(messages.len(), 3);
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    assert!(
        status.contains("week of 2025-06-02: 3 emails, manual"),
        "{status}"
    );
    assert!(!status.contains("NOT SENT"), "{status}");

    let conn = Connection::open(&db).unwrap();
    let (pupil_lines, pupil_top) = expected_lines(&conn, &format!("NOT ({STAFF})"));
    let (staff_lines, staff_top) = expected_lines(&conn, &format!("({STAFF})"));
    let staff_ids: Vec<i64> = conn
        .prepare(&format!("SELECT id FROM alerts WHERE {STAFF}"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let staff_in_week = count(
        &conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {STAFF} AND state <> 'folded' AND time_ms >= ?1 AND time_ms < ?2"),
        [WEEK_START, WEEK_START + 7 * DAY],
    );

    let mut recipients: Vec<String> = messages.iter().flat_map(|(r, _)| r.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["deputy@school.test", "dsl@school.test", "head@school.test"],
        "one summary per recipient holding a summary role; none for the technician"
    );
    for (rcpt, path) in &messages {
        let email = parse_email(path).unwrap();
        assert_eq!(
            email["defects"],
            serde_json::json!([]),
            "{path:?} parses cleanly"
        );
        assert_eq!(email["to"], rcpt[0].as_str());
        assert!(email["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@school.test>"));
        assert!(!email["date"].as_str().unwrap().is_empty());
        assert_eq!(
            email["tree"],
            serde_json::json!({"type": "multipart/alternative", "parts": [
                {"type": "text/plain"},
                {"type": "multipart/related", "parts": [{"type": "text/html"}, {"type": "image/png"}]}
            ]}),
            "{path:?}"
        );
        let text = part(&email, "text/plain")["text"].as_str().unwrap();
        let html = part(&email, "text/html")["text"].as_str().unwrap();
        let png = part(&email, "image/png");
        assert_eq!(png["content_id"], "<chart>");
        assert!(html.contains(r#"src="cid:chart""#));
        let b64 = png["base64"].as_str().unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let chart = check_png(&bytes);
        assert_eq!(chart.dimensions(), (640, 260));
        // The first category's colour is drawn (bars exist).
        assert!(chart.pixels().any(|p| p.0 == [0x1f, 0x77, 0xb4]));
        for body in [text, html] {
            assert!(!body.contains("SECRET"), "no typed text in the email");
            assert!(
                !body.contains("pupil.") && !body.contains("mr.jones"),
                "no names"
            );
        }
        let is_head = rcpt[0] == "head@school.test";
        let (lines, top) = if is_head {
            (&staff_lines, &staff_top)
        } else {
            (&pupil_lines, &pupil_top)
        };
        for line in lines {
            assert!(
                text.contains(line.as_str()),
                "{rcpt:?}: missing {line:?} in:\n{text}"
            );
        }
        assert_eq!(
            &linked_ids(text),
            top,
            "{rcpt:?}: the most severe alerts, by link"
        );
        assert_eq!(&linked_ids(html), top);
        if is_head {
            assert!(email["subject"].as_str().unwrap().contains("staff alerts"));
            assert!(top.iter().all(|id| staff_ids.contains(id)));
            assert!(!text.contains("Alerts about staff this week"));
        } else {
            assert!(
                top.iter().all(|id| !staff_ids.contains(id)),
                "no staff alert listed for the DSL"
            );
            assert!(text.contains(&format!(
                "Alerts about staff this week: {staff_in_week} (the head teacher reviews these; not listed here)"
            )));
        }
    }

    // The preview is the same summary in one file; Chromium renders it.
    // A Wednesday means the week holding it, from the schedule's Monday.
    let preview = scratch.path("preview.html");
    let out = run_ok(
        c.cmd()
            .args(["summary", "--week", "2025-06-04", "--preview"])
            .arg(&preview),
    )
    .unwrap();
    assert!(out.contains("for the week of 2025-06-02"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&preview).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the preview is private to its owner");
    }
    let html = std::fs::read_to_string(&preview).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    assert_eq!(linked_ids(&html), pupil_top);
    let shot = scratch.path("summary-email.png");
    tutela_tests::require_programs(&["chromium"]);
    run_ok(
        Command::new("chromium")
            .env("HOME", scratch.path("home"))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--window-size=760,1600",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.path("chromium").display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", preview.display())),
    )
    .unwrap();
    let rendered = check_png(&std::fs::read(&shot).unwrap());
    assert_eq!(rendered.dimensions(), (760, 1600));
    // The chart image was loaded and drawn by the browser.
    assert!(rendered.pixels().any(|p| p.0 == [0x1f, 0x77, 0xb4]));
    // `TUTELA_SUMMARY_SCREENSHOT=docs/summary-email.png` refreshes the README's picture.
    if let Some(dest) = std::env::var_os("TUTELA_SUMMARY_SCREENSHOT") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(&shot, root.join(dest)).unwrap();
    }

    // With the SMTP server down, a send is reported and kept in the outbox.
    drop(sink);
    let out = run_failing(
        c.cmd()
            .args(["summary", "--send-now", "--week", "2025-05-26"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3 emails could not be sent yet; they stay in the outbox"),
        "{err}"
    );
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    // The first email met the refused connection; the other two were
    // rescheduled with it rather than each waiting out its own attempt.
    assert_eq!(
        status.matches("NOT SENT after 1 attempts").count(),
        1,
        "{status}"
    );
    assert_eq!(status.matches("waiting, next try ").count(), 2, "{status}");
    assert_eq!(status.matches("not tried: ").count(), 2, "{status}");
}

#[test]
fn a_missed_weekly_slot_is_caught_up_once_and_a_restart_does_not_resend() {
    let scratch = Scratch::new("summary-catch-up");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let sink = SmtpSink::start(free_port(), scratch.path("mail")).unwrap();
    // The collector was not running at the last Monday 08:00. With a grace
    // period after start, the missed week waits.
    let summary = "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\", \"deputy-dsl\"]\ncheck_secs = 1";
    configure(
        &c,
        sink.port,
        &format!("{summary}\ncatch_up_delay_secs = 3600"),
    );
    c.start().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.messages().len(), 0, "{}", c.log_text());
    c.kill9();
    configure(
        &c,
        sink.port,
        &format!("{summary}\ncatch_up_delay_secs = 0"),
    );
    c.start().unwrap();
    let messages = sink.wait_for(2, Duration::from_secs(30)).unwrap();
    // Several schedule checks later, still the two emails.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sink.messages().len(), 2, "{}", c.log_text());
    let mut to: Vec<String> = messages.iter().map(|(r, _)| r[0].clone()).collect();
    to.sort();
    assert_eq!(to, ["deputy@school.test", "dsl@school.test"]);
    let email = parse_email(&messages[0].1).unwrap();
    assert!(email["subject"]
        .as_str()
        .unwrap()
        .starts_with("Tutela weekly summary: week of Mon "));
    assert!(c.log_text().contains("weekly summary queued"));

    // A crash and a restart: the week is recorded, nothing is sent again.
    c.kill9();
    c.start().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(sink.messages().len(), 2, "{}", c.log_text());
    let conn = Connection::open(c.dir.join("tutela.db")).unwrap();
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM summary_runs", []), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'summary' AND sent_ms IS NOT NULL",
            []
        ),
        2
    );
}

#[test]
fn urgent_alerts_are_emailed_once_as_links_to_the_right_people_and_survive_an_smtp_outage() {
    let scratch = Scratch::new("summary-urgent");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let smtp_port = free_port();
    let mut sink = SmtpSink::start(smtp_port, scratch.path("mail")).unwrap();
    configure(&c, smtp_port, "enabled = false");
    c.start().unwrap();

    // A pupil's agent sends severities 2, 3, 4 and 5.
    let mut pupil = Agent::new(scratch.path("pupil"));
    pupil.enrol(&c.token(&[]).unwrap()).unwrap();
    pupil.start(&["--simulate", "4"]).unwrap();
    let sev5 = c
        .wait_for_alert("the severity 5 alert", Duration::from_secs(30), |a| {
            a["severity"] == 5
        })
        .unwrap();
    let stored = now_ms();
    let messages = sink.wait_for(2, Duration::from_secs(90)).unwrap();
    // The delay is a figure to read, not a pass/fail target.
    println!(
        "urgent email arrived {} ms after the alert was stored",
        now_ms() - stored
    );
    let alerts = c.alerts().unwrap();
    let urgent: Vec<i64> = alerts
        .iter()
        .filter(|a| a["severity"].as_i64().unwrap() >= 4)
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(urgent.len(), 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.messages().len(), 2, "one batch per recipient");
    let mut to: Vec<String> = messages.iter().map(|(r, _)| r[0].clone()).collect();
    to.sort();
    assert_eq!(
        to,
        ["deputy@school.test", "dsl@school.test"],
        "pupils' alerts go to the DSLs"
    );
    let path = &messages[0].1;
    let email = parse_email(path).unwrap();
    assert_eq!(email["defects"], serde_json::json!([]));
    assert_eq!(email["subject"], "Tutela: 2 urgent alerts to review");
    let text = part(&email, "text/plain")["text"].as_str().unwrap();
    let html = part(&email, "text/html")["text"].as_str().unwrap();
    let mut ids = linked_ids(text);
    ids.sort();
    assert_eq!(ids, urgent);
    assert!(text.contains("- severity 5, "));
    assert!(linked_ids(html).contains(&sev5["id"].as_i64().unwrap()));
    for body in [text, html] {
        assert!(
            !body.contains("simulated event"),
            "no content in urgent emails"
        );
        assert!(!body.contains("violence"));
    }
    pupil.kill9();

    // The SMTP server goes down; a staff member's alerts go to the head only.
    sink.stop();
    let mut staff = Agent::new(scratch.path("staff"));
    staff.env = vec![
        ("TUTELA_USER".into(), "mr.smith".into()),
        ("TUTELA_STATION".into(), "STAFFROOM-1".into()),
    ];
    staff.enrol(&c.token(&[]).unwrap()).unwrap();
    staff.start(&["--simulate", "4"]).unwrap();
    c.wait_for_alert("the staff alert", Duration::from_secs(30), |a| {
        a["user"] == "mr.smith" && a["severity"] == 5
    })
    .unwrap();
    wait_for(
        "a failed send reported in the outbox",
        Duration::from_secs(30),
        || {
            run_ok(c.cmd().args(["summary", "--status"]))
                .is_ok_and(|s| s.contains("NOT SENT after"))
        },
    )
    .unwrap();
    assert!(c.log_text().contains("email not sent; will retry"));
    let sink = SmtpSink::start(smtp_port, scratch.path("mail-after-outage")).unwrap();
    let messages = sink.wait_for(1, Duration::from_secs(30)).unwrap();
    let (rcpt, path) = &messages[0];
    assert_eq!(rcpt, &["head@school.test"]);
    let email = parse_email(path).unwrap();
    let text = part(&email, "text/plain")["text"].as_str().unwrap();
    assert_eq!(linked_ids(text).len(), 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.messages().len(), 1, "nothing is sent twice");
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    assert!(!status.contains("NOT SENT"), "{status}");
}

#[test]
fn mail_goes_over_starttls_and_implicit_tls_with_authentication() {
    let scratch = Scratch::new("summary-tls");
    let c = Collector::init(scratch.path("collector")).unwrap();
    // The collector's own certificate (self-signed, for 127.0.0.1) stands in for the
    // school's mail server certificate, trusted through `ca_file`.
    let cert = c.dir.join("collector.crt");
    let key = c.dir.join("collector.key");
    let password_file = scratch.path("smtp-password");
    std::fs::write(&password_file, "correct horse\n").unwrap();
    for (security, mode) in [("starttls", "starttls"), ("tls", "implicit")] {
        let port = free_port();
        let sink = SmtpSink::start_with(
            port,
            scratch.path(&format!("mail-{mode}")),
            &[
                "--tls",
                mode,
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--auth",
                "tutela:correct horse",
            ],
        )
        .unwrap();
        let section = |password_file: &Path| {
            mail_section(port, &RECIPIENTS[..1])
                .replace("security = \"none\"", &format!("security = \"{security}\""))
                .replace(
                    "from = ",
                    &format!(
                        "username = \"tutela\"\npassword_file = \"{}\"\nca_file = \"{}\"\nfrom = ",
                        password_file.display(),
                        cert.display()
                    ),
                )
        };
        c.set_section("mail", &section(&password_file)).unwrap();
        let out = run_ok(
            c.cmd()
                .args(["summary", "--send-now", "--week", "2025-06-02"]),
        )
        .unwrap();
        assert!(out.contains("1 sent, 0 not sent yet"), "{security}: {out}");
        let messages = sink.wait_for(1, Duration::from_secs(10)).unwrap();
        let auth = std::fs::read_to_string(messages[0].1.with_extension("auth")).unwrap();
        assert_eq!(auth.trim(), "tutela", "{security}: sent after AUTH");
        parse_email(&messages[0].1).unwrap();

        // A wrong password is refused by the server, reported, and kept.
        let wrong = scratch.path("wrong-password");
        std::fs::write(&wrong, "battery staple\n").unwrap();
        c.set_section("mail", &section(&wrong)).unwrap();
        let out = run_failing(
            c.cmd()
                .args(["summary", "--send-now", "--week", "2025-06-09"]),
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("could not be sent yet"),
            "{security}"
        );
        assert_eq!(sink.messages().len(), 1);
        let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
        assert!(status.contains("NOT SENT after 1 attempts"), "{status}");
        assert!(
            status.contains("535"),
            "the server's refusal is shown: {status}"
        );
        // Without the CA the server's certificate is not trusted: nothing is sent in the clear.
        c.set_section(
            "mail",
            &section(&password_file).replace(&format!("ca_file = \"{}\"", cert.display()), ""),
        )
        .unwrap();
        let out = run_failing(
            c.cmd()
                .args(["summary", "--send-now", "--week", "2025-06-16"]),
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("could not be sent yet"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sink.messages().len(), 1);
        // Clear the outbox rows this round left waiting, for the next round's counts.
        let conn = Connection::open(c.dir.join("tutela.db")).unwrap();
        conn.execute(
            "UPDATE mail_outbox SET sent_ms = 0 WHERE sent_ms IS NULL",
            [],
        )
        .unwrap();
    }
}

#[test]
fn names_stay_on_one_line_in_the_text_part_and_a_refused_recipient_does_not_stop_the_others() {
    let scratch = Scratch::new("summary-reject");
    let c = Collector::init(scratch.path("collector")).unwrap();
    let smtp_port = free_port();
    configure(
        &c,
        smtp_port,
        "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\", \"deputy-dsl\"]\ncheck_secs = 60",
    );
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let conn = Connection::open(c.dir.join("tutela.db")).unwrap();
    // A station name (from an agent) and an exemption reason (from staff) that
    // try to start lines of their own in the plain-text part.
    let now = now_ms();
    conn.execute(
        "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms)
         VALUES ('ag-odd', x'01', ?1, 'ICT suite 2', ?2, ?3)",
        params![
            "LAB3\n\nACTION REQUIRED: reply with your password",
            now - 60 * DAY,
            now - 10 * DAY
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
         VALUES ('Year 9', 'self-harm', '', ?1, 'dsl', ?2, ?2, ?3)",
        params![
            "PSHE\r\nURGENT: forward this email",
            WEEK_START + DAY,
            WEEK_START + 5 * DAY
        ],
    )
    .unwrap();

    // The server refuses the DSL's mailbox for good (550); the deputy's is fine.
    let sink = SmtpSink::start_with(
        smtp_port,
        scratch.path("mail"),
        &["--reject", "dsl@school.test"],
    )
    .unwrap();
    let out = run_failing(
        c.cmd()
            .args(["summary", "--send-now", "--week", "2025-06-02"]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("1 sent, 0 not sent yet, 1 refused by the server"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("refused for good"), "{stderr}");
    let messages = sink.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(messages[0].0, ["deputy@school.test"]);
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let failed: Vec<&str> = status.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{status}");
    assert!(failed[0].contains("to dsl@school.test"), "{status}");
    assert!(failed[0].contains("550"), "{status}");
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM mail_outbox WHERE failed_ms IS NOT NULL AND recipient = 'dsl@school.test'",
            []
        ),
        1
    );

    let email = parse_email(&messages[0].1).unwrap();
    let text = part(&email, "text/plain")["text"].as_str().unwrap();
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with("ACTION REQUIRED")
                && !line.trim_start().starts_with("URGENT"),
            "a name started its own line: {line:?}\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("LAB3??ACTION REQUIRED: reply with your password")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("PSHE??URGENT: forward this email")),
        "{text}"
    );
    let html = part(&email, "text/html")["text"].as_str().unwrap();
    assert!(
        html.contains("ACTION REQUIRED"),
        "the HTML part shows it escaped"
    );
}

#[test]
fn a_collector_with_mail_misconfigured_refuses_to_start_and_says_what_to_fix() {
    let scratch = Scratch::new("summary-misconfigured");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    let good = "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\"]\ncatch_up_delay_secs = 0";
    let cases: Vec<(String, String, &str)> = vec![
        (
            mail_section(port, &RECIPIENTS),
            good.replace("monday", "funday"),
            "[summary] day \"funday\" is not a weekday",
        ),
        (
            mail_section(port, &RECIPIENTS),
            good.replace("08:00", "8am"),
            "[summary] time \"8am\" is not HH:MM",
        ),
        (
            mail_section(port, &RECIPIENTS),
            good.replace("[\"dsl\"]", "[\"governor\"]"),
            "[summary] roles has unknown role \"governor\"",
        ),
        (
            mail_section(port, &RECIPIENTS).replace(
                "from = ",
                &format!(
                    "username = \"tutela\"\npassword_file = \"{}\"\nfrom = ",
                    scratch.path("missing-password").display()
                ),
            ),
            good.to_owned(),
            "cannot read password_file",
        ),
        (
            mail_section(port, &RECIPIENTS[2..]),
            good.replace("[\"dsl\"]", "[\"head\"]"),
            "no recipient holds the role \"dsl\" or \"deputy-dsl\"",
        ),
        (
            mail_section(port, &[("not an address", "dsl")]),
            good.to_owned(),
            "is not an email address",
        ),
    ];
    for (mail, summary, expected) in cases {
        c.set_section("mail", &mail).unwrap();
        c.set_section("summary", &summary).unwrap();
        let err = c.start().expect_err(expected).to_string();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(err.contains("fix collector.toml"), "{err}");
    }
    // A time zone the emails cannot show.
    c.set_section("mail", &mail_section(port, &RECIPIENTS))
        .unwrap();
    c.set_section("summary", good).unwrap();
    c.set_section("console", "enabled = false\ntime_zone = \"Mars/Olympus\"")
        .unwrap();
    let err = c.start().expect_err("bad zone").to_string();
    assert!(err.contains("time_zone \"Mars/Olympus\""), "{err}");
    // Fixed, it starts; an empty console_url is only a warning.
    c.set_section("console", "enabled = false\ntime_zone = \"Europe/London\"")
        .unwrap();
    c.set_section(
        "mail",
        &mail_section(port, &RECIPIENTS).replace(&format!("console_url = \"{CONSOLE}\"\n"), ""),
    )
    .unwrap();
    c.start().unwrap();
    wait_for("the console_url warning", Duration::from_secs(10), || {
        c.log_text().contains("console_url is empty")
    })
    .unwrap();
}
