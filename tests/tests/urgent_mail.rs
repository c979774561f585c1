//! Urgent notifications, sent by the real collector to a real SMTP server
//! (aiosmtpd) on loopback: once, as links, to the right people, and through
//! an SMTP outage.

use std::time::Duration;

use tutela_tests::load::now_ms;
use tutela_tests::mail_setup::{configure, linked_ids, part};
use tutela_tests::{free_port, parse_email, run_ok, wait_for, Agent, Collector, Scratch, SmtpSink};

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
