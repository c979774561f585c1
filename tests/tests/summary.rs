//! The weekly summary, sent by the real collector to a real SMTP server
//! (aiosmtpd) on loopback, parsed with Python's `email` package, and checked
//! against the collector's database; a missed weekly slot is caught up once.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rusqlite::Connection;
use tutela_tests::mail_setup::{configure, linked_ids, part};
use tutela_tests::summary_week::{count, expected_lines, seed, DAY, STAFF, WEEK_START};
use tutela_tests::{free_port, parse_email, run_failing, run_ok, Collector, Scratch, SmtpSink};

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
