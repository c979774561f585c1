//! Queuing: each target gets its audience's alerts at its severity, once,
//! and none from before it was added; targets are checked at start.

use super::*;
use crate::summary::tests::{insert_alert, store};
use rusqlite::Connection;

fn target(name: &str, format: WebhookFormat, audience: WebhookAudience) -> WebhookTarget {
    WebhookTarget {
        name: name.into(),
        format,
        url: "https://hooks.school.test/in".into(),
        url_file: String::new(),
        url_env: String::new(),
        secret_file: String::new(),
        secret_env: String::new(),
        audience,
        min_severity: 4,
        include_pupil: false,
        include_match: false,
        school: String::new(),
    }
}

fn queued(conn: &Connection) -> Vec<(String, i64)> {
    conn.prepare("SELECT target, alerts FROM webhook_outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn each_audience_gets_its_urgent_alerts_once_and_none_from_before() {
    let (dir, conn) = store();
    let jobs = Jobs::sqlite(crate::store::open(dir.path()).unwrap()).unwrap();
    outbox::ensure_schema(&conn).unwrap();
    crate::console::schema::create(&conn).unwrap();
    let mut config = CollectorConfig::default();
    config.console.staff_pattern = "mr.*".into();
    let targets: Vec<Target> = [
        target("pupils", WebhookFormat::Teams, WebhookAudience::Pupils),
        target("staff", WebhookFormat::Slack, WebhookAudience::Staff),
    ]
    .iter()
    .map(|t| Target::from_config(t).unwrap())
    .collect();
    // Before the targets were added: never posted.
    insert_alert(&conn, "pupil.a", 1, 5);
    for t in &targets {
        outbox::init_cursor(&conn, &t.config.name).unwrap();
    }
    insert_alert(&conn, "pupil.b", 2, 5);
    insert_alert(&conn, "pupil.c", 3, 4);
    insert_alert(&conn, "pupil.d", 4, 3);
    insert_alert(&conn, "mr.smith", 5, 4);
    assert_eq!(queue(&jobs, &config, &targets).await.unwrap(), 2);
    assert_eq!(
        queued(&conn),
        [("pupils".to_owned(), 2), ("staff".to_owned(), 1)]
    );
    // A second pass finds nothing new.
    assert_eq!(queue(&jobs, &config, &targets).await.unwrap(), 0);
    insert_alert(&conn, "pupil.e", 6, 5);
    assert_eq!(queue(&jobs, &config, &targets).await.unwrap(), 1);
    assert_eq!(queued(&conn).len(), 3);
}

#[test]
fn targets_are_checked_with_what_to_fix() {
    let json = target("j", WebhookFormat::Json, WebhookAudience::Pupils);
    let err = Target::from_config(&json).unwrap_err().to_string();
    assert!(err.contains("signing secret"), "{err}");
    let mut plain = target("t", WebhookFormat::Teams, WebhookAudience::Pupils);
    plain.url = "http://hooks.school.test/in".into();
    let err = Target::from_config(&plain).unwrap_err().to_string();
    assert!(err.contains("https"), "{err}");
    plain.url = "http://127.0.0.1:9/in".into();
    Target::from_config(&plain).unwrap();
    plain.url_env = "TUTELA_TEST_NO_SUCH_VARIABLE".into();
    let err = Target::from_config(&plain).unwrap_err().to_string();
    assert!(err.contains("one way only"), "{err}");
    let mut config = CollectorConfig::default();
    config.webhooks.targets = vec![
        target("x", WebhookFormat::Slack, WebhookAudience::Pupils),
        target("x", WebhookFormat::Slack, WebhookAudience::Staff),
    ];
    assert!(targets(&config)
        .unwrap_err()
        .to_string()
        .contains("named twice"));
    // The signature: HMAC-SHA256 over "<timestamp>.<body>", hex.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
    assert_eq!(
        signature(&key, 1, b"{}"),
        format!(
            "sha256={}",
            hex::encode(ring::hmac::sign(&key, b"1.{}").as_ref())
        )
    );
}
