//! Captures in S3-compatible object storage: a real S3 server (moto's, on
//! loopback) holds each capture sealed by the collector; the console shows
//! it after a reveal, with the audit entries; a bucket that goes away makes
//! ingest answer UNAVAILABLE and ingest recovers when it is back; a capture
//! whose object is gone shows as "capture missing"; the purge deletes the
//! objects of the alerts it removes. Run with
//! `cargo test -p tutela-tests --test captures_s3` (needs moto's server,
//! installed by tests/setup-debian.sh into tests/s3/venv unless Python
//! already has it).

use std::time::Duration;

use rusqlite::{params, Connection};
use tonic::{Code, Status};
use tutela_agent::event::{seal, EventDraft, Evidence, SealedEvent};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{Ack, AckStatus, Observation, RuleMatch, SignedEvent};
use tutela_tests::s3::{Moto, BUCKET};
use tutela_tests::web::{http, sign_in};
use tutela_tests::{free_port, run_ok, wait_for, Agent, Collector, Scratch};

const PASSWORD: &str = "a long enough console password 42";
const KEY_ENV: &str = "TUTELA_TEST_S3_KEY_ID";
const SECRET_ENV: &str = "TUTELA_TEST_S3_SECRET";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A severity-5 event (its capture is blurred until revealed) with `capture`.
fn event(
    identity: &Identity,
    agent_id: &str,
    seq: u64,
    prev: [u8; 32],
    capture: &[u8],
) -> SealedEvent {
    let draft = EventDraft {
        time_ms: now_ms(),
        user: "pupil.one".into(),
        station: "LAB1-PC01".into(),
        observation: Observation {
            context: "a capture stored in the bucket".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "self-harm/test".into(),
            category: "self-harm".into(),
            severity: 5,
            term: "test".into(),
            start: 0,
            end: 2,
        }],
        evidence: Some(Evidence {
            jpeg: capture.to_vec(),
            width: 2,
            height: 1,
        }),
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    };
    seal(identity, agent_id, seq, prev, 0, draft)
}

/// Sends events on one stream; returns the acks, or the status that ended it.
async fn send(enrolment: &Enrolment, events: Vec<SignedEvent>) -> Result<Vec<Ack>, Status> {
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let mut client = IngestClient::new(channel);
    let n = events.len();
    let mut acks = client
        .stream(tokio_stream::iter(events))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.message().await? {
            Some(a) => out.push(a),
            None => break,
        }
    }
    Ok(out)
}

/// The collector reads its bucket credentials from the environment variables
/// its configuration names (moto accepts any); its processes inherit them.
fn credentials() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        std::env::set_var(KEY_ENV, "moto-key-id");
        std::env::set_var(SECRET_ENV, "moto-secret");
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn open_db(collector: &Collector) -> Connection {
    let conn = Connection::open(collector.dir.join("tutela.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

#[test]
fn captures_in_object_storage_are_sealed_revealed_audited_and_purged() {
    let scratch = Scratch::new("captures-s3");
    let mut moto = Moto::start(free_port(), scratch.path("moto.log"));
    credentials();
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    let captures = |collector: &Collector, endpoint: &str| {
        collector
            .set_section(
                "storage.captures",
                &format!(
                    "url = \"s3://{BUCKET}/school-a\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id_env = \"{KEY_ENV}\"\nsecret_access_key_env = \"{SECRET_ENV}\"\nallow_http = true\nsweep_secs = 1"
                ),
            )
            .unwrap()
    };
    // Plain HTTP to another machine is refused, whatever allow_http says.
    captures(&collector, "http://192.0.2.10:9000");
    let refused = collector.start().unwrap_err().to_string();
    assert!(refused.contains("loopback"), "{refused}");
    captures(&collector, &moto.endpoint());
    collector
        .set_section("retention", "closed_alert_months = 12\npurge_daily = false")
        .unwrap();

    // No bucket yet: `serve` stops and says what to fix.
    let refused = collector.start().unwrap_err().to_string();
    assert!(
        refused.contains("[storage.captures]") && refused.contains(BUCKET),
        "{refused}"
    );
    moto.create_bucket();
    collector.start().unwrap();

    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    let id = enrolment.agent_id.clone();
    let plain_1 = b"\xff\xd8 plain capture one: a pupil's screen \xff\xd9".to_vec();
    let plain_2 = b"\xff\xd8 plain capture two: another screen \xff\xd9".to_vec();
    let first = event(&identity, &id, 1, [0; 32], &plain_1);
    let second = event(&identity, &id, 2, first.body_hash(), &plain_2);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let acks = rt
        .block_on(send(&enrolment, vec![first.to_wire()]))
        .unwrap();
    assert_eq!(acks[0].status, AckStatus::Stored as i32);

    // The bucket holds the capture sealed, never the plain image; the row
    // keeps its hash, size and object key, and no image bytes.
    let keys = moto.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key_1 = keys[0].clone();
    assert!(key_1.starts_with("school-a/"), "{key_1}");
    let object = moto.object(&key_1);
    assert!(
        !contains(&object, &plain_1),
        "the bucket holds the plain image"
    );
    assert!(
        object.len() >= plain_1.len() + 16,
        "sealed: nonce and tag added"
    );
    let conn = open_db(&collector);
    let (alert_1, stored_key, sealed_len, size): (i64, String, i64, i64) = conn
        .query_row(
            "SELECT alert_id, object_key, length(sealed), size FROM captures",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(format!("school-a/{stored_key}"), key_1);
    assert_eq!(sealed_len, 0, "the row holds no image bytes");
    assert_eq!(size, plain_1.len() as i64);

    // The console serves it through the collector: blurred (refused) until
    // revealed with a reason, then the plain image, both audited.
    let (dsl, csrf) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let capture_url = format!("/alerts/{alert_1}/capture.jpg");
    assert_eq!(http(port, "GET", &capture_url, &dsl, &[]).status, 403);
    let revealed = http(
        port,
        "POST",
        &format!("/alerts/{alert_1}/reveal"),
        &dsl,
        &[("csrf", &csrf), ("reason", "checking the screen")],
    );
    assert_eq!(revealed.status, 303, "{}", revealed.body);
    let shown = http(port, "GET", &capture_url, &dsl, &[]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.bytes, plain_1);
    let audited: Vec<String> = conn
        .prepare(
            "SELECT action FROM console_audit WHERE actor = 'dsl1' AND target = ?1 ORDER BY id",
        )
        .unwrap()
        .query_map([format!("alert:{alert_1}")], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        audited.contains(&"reveal_capture".to_owned())
            && audited.contains(&"view_capture".to_owned()),
        "{audited:?}"
    );
    // The command line opens it too, checking the agent's signed SHA-256.
    let out = scratch.path("capture-1.jpg");
    assert_eq!(collector.capture(alert_1, &out).unwrap(), plain_1);

    // The bucket goes away: ingest answers UNAVAILABLE (the agent keeps the
    // event) and stores nothing.
    moto.stop();
    let status = rt
        .block_on(send(&enrolment, vec![second.to_wire()]))
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(collector.alert_count(), 1);

    // It comes back (empty: moto keeps nothing): the same event is stored.
    moto.restart();
    moto.create_bucket();
    let acks = rt
        .block_on(send(&enrolment, vec![second.to_wire()]))
        .unwrap();
    assert_eq!(acks[0].status, AckStatus::Stored as i32);
    assert_eq!(collector.alert_count(), 2);
    let keys = moto.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!contains(&moto.object(&keys[0]), &plain_2));

    // The first capture's object was lost with the old bucket: its alert
    // page still opens, and its image says "capture missing".
    let page = http(port, "GET", &format!("/alerts/{alert_1}"), &dsl, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let missing = http(port, "GET", &capture_url, &dsl, &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Capture missing"), "{}", missing.body);
    assert!(collector.log_text().contains("missing from the bucket"));

    // Both alerts closed 400 days ago: the purge removes them, and the
    // collector deletes their objects from the bucket.
    let day = 24 * 3600 * 1000;
    for alert in [alert_1, alert_1 + 1] {
        conn.execute("UPDATE alerts SET state = 'closed' WHERE id = ?1", [alert])
            .unwrap();
        conn.execute(
            "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, 'dsl1', 'new', 'closed', '')",
            params![alert, now_ms() - 400 * day],
        )
        .unwrap();
    }
    let purged = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(purged.contains("removed 2 alerts"), "{purged}");
    wait_for(
        "the purged capture's object deleted",
        Duration::from_secs(30),
        || moto.keys().is_empty(),
    )
    .unwrap();
    wait_for(
        "the deletion queue emptied",
        Duration::from_secs(30),
        || {
            conn.query_row("SELECT COUNT(*) FROM capture_objects_gone", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 0
        },
    )
    .unwrap();
    collector.kill9();
}

#[test]
fn on_postgresql_captures_go_to_the_bucket_and_deleted_rows_take_their_objects() {
    let scratch = Scratch::new("captures-s3-pg");
    let moto = Moto::start(free_port(), scratch.path("moto.log"));
    moto.create_bucket();
    let pg = tutela_tests::postgres::PgCluster::start().unwrap();
    credentials();
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[], PASSWORD).unwrap();
    collector
        .set_section(
            "storage",
            &format!(
                "url = \"{}\"\n\n[storage.captures]\nurl = \"s3://{BUCKET}\"\nendpoint = \"{}\"\naccess_key_id_env = \"{KEY_ENV}\"\nsecret_access_key_env = \"{SECRET_ENV}\"\nallow_http = true\nsweep_secs = 1",
                pg.url(),
                moto.endpoint()
            ),
        )
        .unwrap();
    collector.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    let plain = b"\xff\xd8 a capture kept for PostgreSQL \xff\xd9".to_vec();
    let first = event(&identity, &enrolment.agent_id, 1, [0; 32], &plain);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acks = rt
        .block_on(send(&enrolment, vec![first.to_wire()]))
        .unwrap();
    assert_eq!(acks[0].status, AckStatus::Stored as i32);

    // The row names the object and holds no image bytes; the object is sealed.
    let row = pg
        .query("SELECT alert_id, object_key, length(sealed) FROM captures")
        .unwrap();
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields.len(), 3, "{row}");
    let (alert, key) = (fields[0].parse::<i64>().unwrap(), fields[1]);
    assert_eq!(fields[2], "0", "{row}");
    assert_eq!(moto.keys(), vec![key.to_owned()]);
    assert!(!contains(&moto.object(key), &plain));

    // Served through the collector after a reveal, audited in PostgreSQL.
    let (dsl, csrf) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let revealed = http(
        port,
        "POST",
        &format!("/alerts/{alert}/reveal"),
        &dsl,
        &[("csrf", &csrf), ("reason", "checking the screen")],
    );
    assert_eq!(revealed.status, 303, "{}", revealed.body);
    let shown = http(
        port,
        "GET",
        &format!("/alerts/{alert}/capture.jpg"),
        &dsl,
        &[],
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.bytes, plain);
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl1' AND target = 'alert:{alert}' AND action IN ('reveal_capture', 'view_capture')"
        )),
        2
    );

    // A deleted row queues its object; the collector deletes it.
    pg.query("DELETE FROM captures").unwrap();
    wait_for(
        "the deleted row's object deleted",
        Duration::from_secs(30),
        || moto.keys().is_empty(),
    )
    .unwrap();
    wait_for(
        "the deletion queue emptied",
        Duration::from_secs(30),
        || pg.count("SELECT COUNT(*) FROM capture_objects_gone") == 0,
    )
    .unwrap();
    collector.kill9();
}
