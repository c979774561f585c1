//! 'Report a concern' end to end: real Chromium (tests/console/concern.mjs)
//! sends a named report and an anonymous one asking for help now to the
//! real collector; the stored rows, the audit log and the collector's log
//! are checked to hold nothing that identifies the anonymous writer (no
//! account, station, address or browser); the help-now report reaches the
//! DSL as an urgent email at a real SMTP server; bad forms get clear answers.

use std::process::Command;
use std::time::Duration;
use tutela_tests::script::Script;

use tutela_tests::web::{field, http, Reply};
use tutela_tests::{
    console_scripts, free_port, parse_email, wait_for, Collector, Scratch, SmtpSink,
};

const PASSWORD: &str = "correct horse battery staple";
/// The anonymous pupil's browser: it must not be kept anywhere.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) PupilBrowserMarker/7Q3Z";

/// Every text value in every table of the database, as one string.
fn all_text(db: &rusqlite::Connection) -> String {
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .iter()
        .map(|t| text_of(db, &format!("SELECT * FROM \"{t}\"")))
        .collect()
}

/// Every text and blob value `sql` selects, as one string.
fn text_of(db: &rusqlite::Connection, sql: &str) -> String {
    let mut out = String::new();
    let mut stmt = db.prepare(sql).unwrap();
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..columns {
            match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    out.push_str(&String::from_utf8_lossy(t));
                    out.push('\n');
                }
                _ => {}
            }
        }
    }
    drop(rows);
    out
}

#[test]
fn pupils_report_concerns_named_and_anonymous_and_help_now_is_emailed_at_once() {
    let scratch = Scratch::new("console-concern");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("dsl1", "dsl"), ("tech1", "technician")],
        PASSWORD,
    )
    .unwrap();
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port, scratch.path("mail")).unwrap();
    collector
        .set_section(
            "mail",
            &format!(
                "host = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"Tutela <tutela@school.test>\"\n\
                 console_url = \"https://console.school.test\"\nurgent_interval_secs = 1\nretry_initial_secs = 1\nretry_max_secs = 2\n\
                 \n[[mail.recipients]]\naddress = \"dsl@school.test\"\nroles = [\"dsl\"]\n"
            ),
        )
        .unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();

    let console_dir = console_scripts();
    let (node, lines) = Script::spawn(
        Command::new("node")
            .arg("concern.mjs")
            .current_dir(&console_dir)
            .env("CONSOLE_URL", format!("http://127.0.0.1:{port}"))
            .env("PASSWORD", PASSWORD)
            .env("USER_AGENT", USER_AGENT),
        Duration::from_secs(180),
    );
    let mut result = None;
    for line in lines {
        if let Some(json) = line.unwrap().strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    let status = node.finish();
    let result = result.expect("the scenario reported a result");
    assert!(
        status.success() && result.get("error").is_none(),
        "browser scenario failed: {result:#}\ncollector log:\n{}",
        collector.log_text()
    );

    // The stored reports: the named one carries its name, the anonymous ones nothing.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    type Row = (i64, String, String, String, String, i64, String, Vec<u8>);
    let rows: Vec<Row> = db
        .prepare(
            "SELECT id, user, station, agent_id, category, severity, context, signature
             FROM alerts WHERE source = 'pupil_report' ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let (_, user, station, agent, category, severity, _, signature) = &rows[0];
    assert_eq!(
        (
            user.as_str(),
            station.as_str(),
            agent.as_str(),
            category.as_str(),
            *severity
        ),
        ("pupil.dara", "", "pupil-report", "bullying", 3)
    );
    assert!(signature.is_empty(), "a report carries no signature");
    let help_now = &rows[1];
    assert_eq!(
        (
            help_now.1.as_str(),
            help_now.2.as_str(),
            help_now.4.as_str(),
            help_now.5
        ),
        ("", "", "concern", 5)
    );
    assert!(help_now.6.contains("scared to go home"));
    assert_eq!(rows[2].1, "", "the second anonymous report");
    // Refused forms left nothing behind.
    let everything = all_text(&db);
    for refused in [
        "forged report without a token",
        "a report posted from another site",
        "replayed report",
    ] {
        assert!(!everything.contains(refused), "{refused:?} was stored");
    }
    // Nothing anywhere in the database names the anonymous writer's browser
    // or address.
    assert!(!everything.contains("PupilBrowserMarker"));
    // (Staff sign-ins record their address; reports and their audit entries do not.)
    let reports = text_of(&db, "SELECT * FROM alerts WHERE source = 'pupil_report'")
        + &text_of(
            &db,
            "SELECT * FROM console_audit WHERE action = 'report_received'",
        );
    assert!(
        !reports.contains("127.0.0.1"),
        "an address was stored: {reports}"
    );
    let audit: Vec<(String, String, String)> = db
        .prepare("SELECT actor, target, detail FROM console_audit WHERE action = 'report_received' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        audit,
        vec![
            (
                "pupil-report".into(),
                format!("alert:{}", rows[0].0),
                "named".into()
            ),
            (
                "pupil-report".into(),
                format!("alert:{}", help_now.0),
                "anonymous; help now".into()
            ),
            (
                "pupil-report".into(),
                format!("alert:{}", rows[2].0),
                "anonymous".into()
            ),
        ]
    );

    // The help-now report reaches the DSL as an urgent email: a link, no words.
    let messages = sink.wait_for(1, Duration::from_secs(60)).unwrap();
    assert_eq!(messages[0].0, vec!["dsl@school.test".to_owned()]);
    let email = parse_email(&messages[0].1).unwrap();
    let text = email.to_string();
    assert!(
        text.contains(&format!("/alerts/{}", help_now.0)),
        "the email links the report: {text}"
    );
    assert!(!text.contains("scared to go home"), "no words in the email");

    // The collector's log says reports arrived, and nothing about who sent them.
    let log = collector.log_text();
    assert!(log.contains("pupil report received"), "{log}");
    assert!(!log.contains("PupilBrowserMarker"), "{log}");
    assert!(!log.contains("pupil.dara"), "{log}");
    for line in log.lines().filter(|l| l.contains("report")) {
        assert!(!line.contains("127.0.0.1"), "an address in the log: {line}");
    }
}

/// Sends one report from the pupils' page over HTTP.
fn post_report(port: u16, text: &str) -> Reply {
    let form = http(port, "GET", "/concern", "", &[]);
    assert_eq!(form.status, 200);
    assert!(
        form.header("set-cookie").is_none(),
        "the report page sets no cookie"
    );
    let token = field(&form.body, "token").expect("a form token");
    http(
        port,
        "POST",
        "/concern",
        "",
        &[("token", &token), ("text", text)],
    )
}

fn pupil_reports(db: &rusqlite::Connection) -> i64 {
    db.query_row(
        "SELECT COUNT(*) FROM alerts WHERE source = 'pupil_report'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_report_that_cannot_be_kept_says_so_and_a_flood_is_held_off_without_identity() {
    let scratch = Scratch::new("console-concern-limits");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();

    // The audit log refuses the entry (as a full disk would): the report is
    // not kept without it, and the pupil is told and keeps their words.
    db.execute_batch(
        "CREATE TRIGGER test_report_audit_refused BEFORE INSERT ON console_audit
         WHEN NEW.action = 'report_received'
         BEGIN SELECT RAISE(ABORT, 'audit entry refused by the test'); END;",
    )
    .unwrap();
    let r = post_report(port, "words that must come back to the pupil");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("could not be saved just now"));
    assert!(r.body.contains("words that must come back to the pupil"));
    assert_eq!(pupil_reports(&db), 0, "nothing half-kept");
    db.execute_batch("DROP TRIGGER test_report_audit_refused")
        .unwrap();

    // One bucket for everyone: a burst gets through, then every writer is
    // asked to wait, with their words kept on the page.
    let mut sent = 0;
    let mut held = None;
    for i in 0..30 {
        let r = post_report(port, &format!("report number {i} of a flood"));
        match r.status {
            303 => sent += 1,
            429 => {
                held = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let held = held.expect("the flood was held off");
    assert!(sent >= 19, "a burst gets through first ({sent})");
    assert!(held.body.contains("Too many reports are arriving at once"));
    assert!(held
        .body
        .contains(&format!("report number {sent} of a flood")));
    assert_eq!(pupil_reports(&db), sent);
}
