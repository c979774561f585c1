//! The review console in real headless Chromium: a DSL signs in, finds the
//! severity-5 alert at the top of the queue, opens it, reveals the blurred
//! capture with a reason, adds a note and closes it as a false positive; a
//! new alert appears without a reload; forged posts without the CSRF token
//! are refused; a technician gets 403 on a capture; staff alerts reach only
//! the head teacher; the audit log lists every step. The browser part is
//! `tests/console/scenario.mjs` (playwright-core from npm).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tutela_tests::script::Script;

use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{AckStatus, Observation, RuleMatch, SignedEvent, Source};
use tutela_tests::{console_scripts, free_port, Agent, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A synthetic screenshot: a window-like picture, no real content.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 400, |x, y| {
        if y < 40 {
            image::Rgb([35, 49, 90])
        } else if (60..340).contains(&y) && (40..600).contains(&x) && (y / 20) % 2 == 0 {
            image::Rgb([200, 205, 215])
        } else {
            image::Rgb([250, 250, 250])
        }
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

struct Seed<'a> {
    user: &'a str,
    station: &'a str,
    context: &'a str,
    word: &'a str,
    category: &'a str,
    severity: u32,
    age_ms: i64,
    capture: bool,
}

fn draft(s: &Seed<'_>) -> EventDraft {
    let start = s.context.find(s.word).expect("the word is in the context") as u32;
    EventDraft {
        time_ms: now_ms() - s.age_ms,
        user: s.user.into(),
        station: s.station.into(),
        observation: Observation {
            source: Source::Typed as i32,
            context: s.context.into(),
            app: "chromium".into(),
            window_title: "Homework help - Chromium".into(),
            url: "https://search.example/".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: format!("{}/seed", s.category),
            category: s.category.into(),
            severity: s.severity,
            term: s.word.into(),
            start,
            end: start + s.word.len() as u32,
        }],
        evidence: s.capture.then(|| Evidence {
            jpeg: jpeg(),
            width: 640,
            height: 400,
        }),
        rules_version: 3,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

/// Signs `seeds` as the enrolled agent, continuing its chain, and streams them.
struct Sender {
    enrolment: Enrolment,
    identity: Identity,
    seq: u64,
    prev: [u8; 32],
    rt: tokio::runtime::Runtime,
}

impl Sender {
    fn send(&mut self, seeds: &[Seed<'_>]) {
        let mut events: Vec<SignedEvent> = Vec::new();
        for s in seeds {
            self.seq += 1;
            let sealed = seal(
                &self.identity,
                &self.enrolment.agent_id,
                self.seq,
                self.prev,
                0,
                draft(s),
            );
            self.prev = sealed.body_hash();
            events.push(sealed.to_wire());
        }
        let last_seq = self.seq;
        let enrolment = &self.enrolment;
        self.rt.block_on(async {
            let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
                .await
                .unwrap();
            let mut client = IngestClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
            let mut acks = client
                .stream(tokio_stream::iter(events))
                .await
                .unwrap()
                .into_inner();
            // An acknowledgement covers its event and every earlier one on the stream.
            let mut acked = 0;
            while acked < last_seq {
                let ack = acks
                    .message()
                    .await
                    .unwrap()
                    .expect("every event acknowledged");
                assert_eq!(ack.status, AckStatus::Stored as i32);
                acked = ack.seq;
            }
        });
    }
}

fn audit_actions(db: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, action, target FROM console_audit ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn dsl_reviews_an_alert_in_chromium_and_the_audit_log_shows_each_step() {
    let scratch = Scratch::new("console");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    let url = collector.set_console_port(free_port()).unwrap();
    // One account reads its password from a file, the others from stdin.
    std::fs::write(scratch.path("pw"), format!("{PASSWORD}\n")).unwrap();
    tutela_tests::run_ok(
        collector
            .cmd()
            .args(["user", "add", "dsl1", "--role", "dsl", "--password-file"])
            .arg(scratch.path("pw")),
    )
    .unwrap();
    for (name, role) in [
        ("dsl2", "deputy-dsl"),
        ("tech1", "technician"),
        ("head1", "head"),
        ("audit1", "auditor"),
    ] {
        collector.add_console_user(name, role, PASSWORD).unwrap();
    }
    let short = tutela_tests::run_failing(
        collector
            .cmd()
            .args(["user", "add", "weak", "--role", "dsl"])
            .stdin(Stdio::null()),
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    std::fs::write(
        scratch.path("staff.csv"),
        "username,groups,type\nmr.smith,Staff;Science,staff\npupil.one,Year 10,pupil\n",
    )
    .unwrap();
    let out = tutela_tests::run_ok(
        collector
            .cmd()
            .args(["users", "import"])
            .arg(scratch.path("staff.csv")),
    )
    .unwrap();
    assert!(out.contains("imported 1 staff"), "{out}");
    collector.start().unwrap();

    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let mut sender = Sender {
        enrolment: Enrolment::load(&agent.dir).unwrap(),
        identity: Identity::load_or_create(&agent.dir).unwrap(),
        seq: 0,
        prev: [0; 32],
        rt: tokio::runtime::Runtime::new().unwrap(),
    };
    sender.send(&[
        Seed {
            user: "pupil.one",
            station: "LAB1-PC07",
            context: "best odds on the match tonight",
            word: "odds",
            category: "gambling",
            severity: 2,
            age_ms: 240_000,
            capture: false,
        },
        Seed {
            user: "pupil.one",
            station: "LAB1-PC07",
            context: "i want to kill myself tonight",
            word: "kill myself",
            category: "suicide",
            severity: 5,
            age_ms: 180_000,
            capture: true,
        },
        Seed {
            user: "pupil.two",
            station: "LAB2-PC01",
            context: "everyone hates you, loser",
            word: "loser",
            category: "bullying",
            severity: 3,
            age_ms: 120_000,
            capture: false,
        },
        Seed {
            user: "mr.smith",
            station: "STAFF-PC02",
            context: "how to hide a weapon",
            word: "weapon",
            category: "weapons",
            severity: 4,
            age_ms: 60_000,
            capture: false,
        },
    ]);
    let db = collector.dir.join("tutela.db");
    let severe_id: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT id FROM alerts WHERE severity = 5", [], |r| r.get(0))
        .unwrap();

    let console_dir = console_scripts();
    // Screenshots go to the test's own directory, so a test run leaves the work tree as it
    // found it; `TUTELA_CONSOLE_SCREENSHOTS=docs` copies them over the README's pictures.
    let shots = collector.dir.join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let (mut node, lines) = Script::spawn(
        Command::new("node")
            .arg("scenario.mjs")
            .current_dir(&console_dir)
            .env("CONSOLE_URL", &url)
            .env("PASSWORD", PASSWORD)
            .env("SEVERE_ID", severe_id.to_string())
            .env("SHOTS_DIR", &shots),
        Duration::from_secs(240),
    );
    let mut result = None;
    for line in lines {
        let line = line.unwrap();
        if line == "SEED_MORE" {
            sender.send(&[Seed {
                user: "pupil.three",
                station: "LAB3-PC11",
                context: "bringing a knife to school",
                word: "knife",
                category: "weapons",
                severity: 4,
                age_ms: 0,
                capture: false,
            }]);
            let id: i64 = rusqlite::Connection::open(&db)
                .unwrap()
                .query_row("SELECT MAX(id) FROM alerts", [], |r| r.get(0))
                .unwrap();
            writeln!(node.stdin(), "{id}").unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
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
    for step in [
        "severe alert is first in the queue",
        "new alert appears without a reload",
        "signature verified mark",
        "capture blurred before reveal",
        "capture revealed with a reason",
        "note added",
        "post without csrf token refused",
        "closed as false positive",
        "technician gets 403 on a capture",
        "staff alerts go to the head only",
        "account locked after five failures",
        "audit chain intact",
    ] {
        assert_eq!(result[step], true, "step {step:?} missing from {result:#}");
    }

    // The store agrees with what the browser saw.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (state, reason): (String, String) = conn
        .query_row(
            "SELECT a.state, r.fp_reason FROM alerts a JOIN console_review r ON r.alert_id = a.id WHERE a.id = ?1",
            [severe_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "false_positive");
    assert!(reason.contains("Song lyrics"));
    let notes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM console_notes WHERE alert_id = ?1",
            [severe_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(notes, 1, "the forged note was not stored");
    assert!(
        conn.execute("DELETE FROM console_notes", []).is_err(),
        "notes are append-only"
    );

    // The DSL's steps, in order, in the audit log.
    let target = format!("alert:{severe_id}");
    let log = audit_actions(&db);
    let position = |action: &str| {
        log.iter()
            .position(|(actor, a, t)| {
                actor == "dsl1" && a == action && (t == &target || a == "login")
            })
            .unwrap_or_else(|| panic!("no {action} by dsl1 in the audit log: {log:?}"))
    };
    let steps = [
        "login",
        "view_alert",
        "reveal_capture",
        "add_note",
        "state_change",
        "export_record",
    ];
    let positions: Vec<usize> = steps.iter().map(|s| position(s)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "audit order {steps:?} at {positions:?}"
    );
    assert!(log
        .iter()
        .any(|(actor, a, _)| actor == "dsl1" && a == "csrf_refused"));
    assert!(
        log.iter()
            .any(|(actor, a, t)| actor == "tech1" && a == "denied" && t == &target),
        "the technician's refused capture is audited"
    );
    assert!(
        conn.execute("UPDATE console_audit SET actor = 'someone else'", [])
            .is_err(),
        "the audit log refuses edits"
    );
    for name in ["console-queue.png", "console-alert.png"] {
        let png = std::fs::read(shots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
        if let Some(dest) = std::env::var_os("TUTELA_CONSOLE_SCREENSHOTS") {
            std::fs::write(std::path::Path::new(&dest).join(name), &png).unwrap();
        }
    }
}
