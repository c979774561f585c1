//! Urgent alerts by webhook, end to end: the real collector posts to a real
//! HTTP receiver on loopback (tests/webhook/receiver.py) in the generic
//! JSON format (HMAC-SHA256 signed), as a Microsoft Teams card and as a
//! Slack message. The receiver is down when the alert arrives; the messages
//! wait in the durable outbox, are retried, and arrive once it is back; a
//! receiver answering 410 Gone has its message refused for good, shown by
//! `webhooks status` and queued again by `webhooks retry-failed`.
//! Without the school's opt-in no message carries the pupil's name or any
//! text; the Slack target opted in and carries the name.

use std::time::Duration;

use tutela_tests::web::{field, http, WebhookReceiver};
use tutela_tests::{free_port, run_ok, wait_for, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "webhook-signing-secret-9QxT2w";
const PUPIL: &str = "pupil.dara";
const TEXT: &str = "I do not feel safe at home tonight MARKER-4471";

/// Sends one report from the pupils' page; `help_now` makes it severity 5.
fn report(port: u16, name: &str, help_now: bool) {
    let form = http(port, "GET", "/concern", "", &[]);
    let token = field(&form.body, "token").expect("a form token");
    let mut fields = vec![("token", token.as_str()), ("text", TEXT), ("name", name)];
    if help_now {
        fields.push(("help_now", "on"));
    }
    let sent = http(port, "POST", "/concern", "", &fields);
    assert!(sent.status == 303 || sent.status == 200, "{}", sent.body);
}

fn outbox(db: &rusqlite::Connection) -> Vec<(i64, String, i64, Option<i64>, String)> {
    db.prepare("SELECT id, target, attempts, sent_ms, last_error FROM webhook_outbox ORDER BY id")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn urgent_alerts_reach_json_teams_and_slack_receivers_after_they_come_back() {
    let scratch = Scratch::new("webhook");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    let receiver_port = free_port();
    let base = format!("http://127.0.0.1:{receiver_port}");
    let secret = scratch.path("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let (teams_url, slack_url) = (scratch.path("teams-url"), scratch.path("slack-url"));
    std::fs::write(&teams_url, format!("{base}/teams\n")).unwrap();
    std::fs::write(&slack_url, format!("{base}/slack\n")).unwrap();
    collector
        .set_section("mail", "console_url = \"https://console.school.test\"")
        .unwrap();
    let metrics_port = free_port();
    collector
        .set_section("metrics", &format!("listen = \"127.0.0.1:{metrics_port}\""))
        .unwrap();
    let scrape = || http(metrics_port, "GET", "/metrics", "", &[]).body;
    collector
        .set_section(
            "webhooks",
            &format!(
                "school = \"Hill School\"\ninterval_secs = 1\nretry_initial_secs = 1\nretry_max_secs = 2\n\
                 [[webhooks.targets]]\nname = \"json\"\nformat = \"json\"\nurl = \"{base}/tutela\"\nsecret_file = \"{}\"\n\
                 [[webhooks.targets]]\nname = \"teams\"\nformat = \"teams\"\nurl_file = \"{}\"\n\
                 [[webhooks.targets]]\nname = \"slack\"\nformat = \"slack\"\nurl_file = \"{}\"\ninclude_pupil = true\n\
                 [[webhooks.targets]]\nname = \"gone\"\nformat = \"json\"\nurl = \"{base}/gone\"\nsecret_file = \"{}\"\n",
                secret.display(),
                teams_url.display(),
                slack_url.display(),
                secret.display()
            ),
        )
        .unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();

    // An ordinary report (severity 3) and one asking for help now (5).
    report(port, "pupil.other", false);
    report(port, PUPIL, true);
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let urgent: i64 = db
        .query_row("SELECT id FROM alerts WHERE severity = 5", [], |r| r.get(0))
        .unwrap();

    // The receiver is down: one message per target waits, retried.
    wait_for(
        "failed attempts while the receiver is down",
        Duration::from_secs(30),
        || {
            let rows = outbox(&db);
            rows.len() == 4 && rows.iter().all(|r| r.2 >= 2 && r.3.is_none())
        },
    )
    .unwrap();
    for row in outbox(&db) {
        assert!(row.4.contains("could not be reached"), "{row:?}");
        assert!(!row.4.contains(&base), "the URL is not recorded: {row:?}");
    }

    let status = run_ok(collector.cmd().args(["webhooks", "status"])).unwrap();
    assert_eq!(status.matches("waiting, next try").count(), 4, "{status}");
    assert!(status.contains("could not be reached"), "{status}");
    assert!(
        scrape().contains("tutela_webhook_outbox_pending 4"),
        "{}",
        scrape()
    );

    // It comes back: every message arrives, once recorded as sent; the
    // receiver that answers 410 Gone refuses its message for good.
    let log = scratch.path("received.jsonl");
    let _receiver = WebhookReceiver::start(receiver_port, &log);
    let refused = |db: &rusqlite::Connection| -> Option<i64> {
        db.query_row(
            "SELECT failed_ms FROM webhook_outbox WHERE target = 'gone'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    wait_for("the messages delivered", Duration::from_secs(30), || {
        outbox(&db).iter().all(|r| r.3.is_some() || r.1 == "gone") && refused(&db).is_some()
    })
    .unwrap();
    let status = run_ok(collector.cmd().args(["webhooks", "status"])).unwrap();
    assert_eq!(status.matches(": sent ").count(), 3, "{status}");
    assert!(
        status.contains("refused for good") && status.contains("410"),
        "{status}"
    );
    let metrics = scrape();
    assert!(
        metrics.contains("tutela_webhook_outbox_pending 0")
            && metrics.contains("tutela_webhook_outbox_failed 1"),
        "{metrics}"
    );
    // Queued again after the receiver is fixed (here: refused again).
    let again = run_ok(collector.cmd().args(["webhooks", "retry-failed"])).unwrap();
    assert!(again.starts_with("1 refused"), "{again}");
    wait_for(
        "the refused message tried again",
        Duration::from_secs(30),
        || {
            refused(&db).is_some()
                && db
                    .query_row(
                        "SELECT last_error FROM webhook_outbox WHERE target = 'gone'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .is_ok_and(|e| !e.starts_with("queued again"))
        },
    )
    .unwrap();
    let received: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |path: &str| {
        let hits: Vec<&serde_json::Value> = received.iter().filter(|r| r["path"] == path).collect();
        assert_eq!(hits.len(), 1, "one message at {path}: {received:#?}");
        hits[0].clone()
    };
    let link = format!("https://console.school.test/alerts/{urgent}");

    // Generic JSON, signed over "<timestamp>.<body>".
    let json = at("/tutela");
    let body = json["body"].as_str().unwrap();
    let timestamp = json["headers"]["x-tutela-timestamp"].as_str().unwrap();
    let signature = json["headers"]["x-tutela-signature"].as_str().unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let expected = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    assert_eq!(
        signature,
        format!("sha256={}", hex::encode(expected.as_ref()))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp.parse::<i64>().unwrap()).abs() < 600);
    let json_row = outbox(&db).into_iter().find(|r| r.1 == "json").unwrap();
    assert_eq!(json["headers"]["x-tutela-delivery"], json_row.0.to_string());
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["type"], "tutela.urgent_alerts");
    assert_eq!(parsed["school"], "Hill School");
    assert_eq!(
        parsed["count"], 1,
        "the severity-3 report is not urgent: {parsed}"
    );
    assert_eq!(parsed["alerts"][0]["severity"], 5);
    assert_eq!(parsed["alerts"][0]["link"], link.as_str());
    assert!(parsed["alerts"][0]["time"].as_str().unwrap().ends_with('Z'));
    // A changed body no longer matches the signature.
    let forged = ring::hmac::verify(
        &key,
        format!(
            "{timestamp}.{}",
            body.replace("\"severity\":5", "\"severity\":1")
        )
        .as_bytes(),
        expected.as_ref(),
    );
    assert!(forged.is_err());

    // Teams: an Adaptive Card with the link and an action to the queue.
    let teams: serde_json::Value =
        serde_json::from_str(at("/teams")["body"].as_str().unwrap()).unwrap();
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert!(card.to_string().contains(&link));
    assert_eq!(
        card["content"]["actions"][0]["url"],
        "https://console.school.test/queue"
    );

    // Slack: text with the link; this target opted in to the pupil's name.
    let slack: serde_json::Value =
        serde_json::from_str(at("/slack")["body"].as_str().unwrap()).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(text.contains(&format!("<{link}|alert {urgent}>")), "{text}");
    assert!(text.contains(PUPIL), "opted in: {text}");

    // Without opt-in: no name; and never the report's text or another alert.
    for (path, opted_in) in [("/tutela", false), ("/teams", false), ("/slack", true)] {
        let body = at(path)["body"].as_str().unwrap().to_owned();
        assert!(
            !body.contains("MARKER-4471"),
            "{path} carries the text: {body}"
        );
        assert!(
            !body.contains("pupil.other"),
            "{path} carries the non-urgent alert"
        );
        assert_eq!(body.contains(PUPIL), opted_in, "{path}: {body}");
    }
    let log_text = collector.log_text();
    assert!(log_text.contains("webhook message not delivered; will retry"));
    assert!(!log_text.contains(&base), "the log names no webhook URL");
}
