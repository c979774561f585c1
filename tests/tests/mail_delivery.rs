//! Mail delivery from the real collector to a real SMTP server (aiosmtpd) on
//! loopback: STARTTLS and implicit TLS with authentication, names kept on
//! one line, a refused recipient not stopping the others, and a mail
//! configuration refused at start with what to fix.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};
use tutela_tests::load::now_ms;
use tutela_tests::mail_setup::{configure, mail_section, part, CONSOLE, RECIPIENTS};
use tutela_tests::summary_week::{count, DAY, WEEK_START};
use tutela_tests::{
    free_port, parse_email, run_failing, run_ok, wait_for, Collector, Scratch, SmtpSink,
};

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
