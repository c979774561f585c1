//! `tutela-collector migrate --to postgres://...`: a real collector on
//! SQLite stores an enrolled agent's events (with captures), a console
//! account signs in and opens an alert (audited), a rule pack is published
//! and an exemption set; the collector stops, its store is copied into a
//! real PostgreSQL, and a collector on PostgreSQL with the same data
//! directory serves it: the same rows, the agent's next event carries on
//! its chain (stored, not flagged), the account signs in and sees the
//! alert and its capture. Also the refusals: a running collector, an
//! unreachable database, a target that already holds data.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_proto::v1::{Observation, RuleMatch, Source};
use tutela_tests::packs::{self, small_pack, About};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{http, sign_in};
use tutela_tests::{free_port, run_ok, Agent, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

/// Tables whose rows must all arrive, and that this test fills.
const FILLED: &[&str] = &[
    "agents",
    "tokens",
    "alerts",
    "captures",
    "console_users",
    "console_sessions",
    "console_audit",
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A synthetic screenshot (no real content).
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(320, 200, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 200])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&img)
        .unwrap();
    out
}

/// Streams typed alerts `first_seq..` from the agent enrolled in `dir`,
/// chained from `prev`, each with a capture; waits until all are stored and
/// returns the last one's body hash.
fn send(dir: &Path, first_seq: u64, prev: [u8; 32], contexts: &[&str]) -> [u8; 32] {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut prev = prev;
    let mut events = Vec::new();
    for (n, context) in contexts.iter().enumerate() {
        let word = "pipe bomb";
        let start = context.find(word).unwrap() as u32;
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            first_seq + n as u64,
            prev,
            0,
            EventDraft {
                time_ms: now_ms() - 1_000 + n as i64,
                user: "pupil.one".into(),
                station: "LAB1-PC07".into(),
                observation: Observation {
                    source: Source::Typed as i32,
                    context: (*context).into(),
                    app: "chromium".into(),
                    window_title: "Homework help - Chromium".into(),
                    url: "https://search.example/".into(),
                    ..Default::default()
                },
                matches: vec![RuleMatch {
                    rule_id: "weapons/seed".into(),
                    category: "weapons".into(),
                    severity: 3,
                    term: word.into(),
                    start,
                    end: start + word.len() as u32,
                }],
                evidence: Some(Evidence {
                    jpeg: jpeg(),
                    width: 320,
                    height: 200,
                }),
                rules_version: 1,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    let last = first_seq + contexts.len() as u64 - 1;
    tutela_tests::ingest::stream_stored(&enrolment, events, last);
    prev
}

/// Rows in each of `tables` of the SQLite store in `dir`.
fn sqlite_counts(dir: &Path, tables: &[&str]) -> Vec<i64> {
    let db = rusqlite::Connection::open(dir.join("tutela.db")).unwrap();
    tables
        .iter()
        .map(|t| {
            db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        })
        .collect()
}

fn migrate(collector: &Collector, url: &str) -> std::process::Output {
    collector
        .cmd()
        .args(["migrate", "--to", url])
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_school_moves_from_sqlite_to_postgresql_and_carries_on() {
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("migrate-postgres");
    let (mut collector, console_port) =
        Collector::with_console(scratch.path("school"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();

    // An enrolled agent's events, each with a capture.
    let token = collector
        .token(&["--uses", "2", "--group", "lab-1"])
        .unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&token).unwrap();
    let agent_id = agent.agent_id();
    let contexts = [
        "how to make a pipe bomb",
        "pipe bomb instructions",
        "is a pipe bomb legal",
    ];
    let last_hash = send(&agent.dir, 1, [0; 32], &contexts);
    // A published pack and an exemption (both audited).
    let pack = scratch.path("pack.toml");
    let about = About::new("migrate-test", "Migrate test pack", "A pack to move.");
    std::fs::write(
        &pack,
        small_pack(&about, 2, &[packs::weapons(&["pipe bomb"])]),
    )
    .unwrap();
    let out = run_ok(collector.cmd().args(["rules", "push"]).arg(&pack)).unwrap();
    assert!(out.contains("published"), "{out}");
    run_ok(collector.cmd().args([
        "exemption",
        "add",
        "--group",
        "lab-1",
        "--category",
        "drugs",
        "--until",
        "7d",
        "--reason",
        "PSHE on drugs",
        "--by",
        "dsl1",
    ]))
    .unwrap();
    // The DSL signs in and opens an alert (audited).
    let (session, _) = sign_in(console_port, "dsl1", PASSWORD, "/queue");
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let alert_id: i64 = db
        .query_row("SELECT max(id) FROM alerts", [], |r| r.get(0))
        .unwrap();
    drop(db);
    let page = http(
        console_port,
        "GET",
        &format!("/alerts/{alert_id}"),
        &session,
        &[],
    );
    assert_eq!(page.status, 200, "{}", page.body);

    // Refused while the collector runs: it would copy a store being written.
    let out = migrate(&collector, &pg.url());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("stop it first"),
        "running collector: {}",
        text(&out)
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"),
        0,
        "nothing created while refused"
    );
    collector.kill9();

    // Refused: nothing listens there.
    let nowhere = format!("postgres://tutela:x@127.0.0.1:{}/postgres", free_port());
    let out = migrate(&collector, &nowhere);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach PostgreSQL"),
        "unreachable: {}",
        text(&out)
    );
    assert!(!text(&out).contains(":x@"), "no password shown");

    let before = sqlite_counts(&collector.dir, FILLED);
    assert!(
        before.iter().all(|n| *n > 0),
        "every table filled: {before:?}"
    );
    let (exemptions, bundles, audit) = {
        let c = sqlite_counts(
            &collector.dir,
            &["exemptions", "rule_bundles", "console_audit"],
        );
        (c[0], c[1], c[2])
    };
    let out = migrate(&collector, &pg.url());
    let said = text(&out);
    assert!(out.status.success(), "migrate: {said}");
    assert!(said.contains("alerts: 3 / 3 rows copied"), "{said}");
    assert!(said.contains("captures: 3 / 3 rows copied"), "{said}");
    assert!(
        said.contains(&format!(
            "1 agents' event chains (3 events), the audit log ({audit} entries)"
        )),
        "{said}"
    );
    for (table, rows) in FILLED.iter().zip(&before) {
        assert_eq!(
            pg.count(&format!("SELECT count(*) FROM {table}")),
            *rows,
            "{table}"
        );
    }
    // The pack and the exemption moved too.
    assert_eq!(exemptions, 1);
    assert_eq!(pg.count("SELECT count(*) FROM exemptions"), exemptions);
    assert!(bundles >= 1);
    assert_eq!(pg.count("SELECT count(*) FROM rule_bundles"), bundles);
    // Ids kept: the next alert gets a fresh id, never a copied one.
    assert_eq!(pg.count("SELECT max(id) FROM alerts"), alert_id);

    // Refused: the target now holds data; it is left as it was.
    let out = migrate(&collector, &pg.url());
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds data"), "{}", text(&out));
    assert_eq!(pg.count("SELECT count(*) FROM alerts"), 3);

    // The same data directory (keys, certificate) served from PostgreSQL.
    collector
        .set_section("storage", &format!("url = \"{}\"", pg.url()))
        .unwrap();
    collector.start().unwrap();
    send(&agent.dir, 4, last_hash, &["where to get a pipe bomb"]);
    assert_eq!(
        pg.query(&format!(
            "SELECT chain_ok, id > {alert_id} FROM alerts WHERE agent_id = '{agent_id}' AND seq = 4"
        ))
        .unwrap(),
        "t|t",
        "the agent's next event follows its chain"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM agents WHERE agent_id = '{agent_id}' AND flag IS NULL AND last_seq = 4"
        )),
        1
    );
    assert_eq!(pg.count("SELECT count(*) FROM gaps"), 0);
    // The account signs in on PostgreSQL and sees the moved alert.
    let (session, _) = sign_in(console_port, "dsl1", PASSWORD, "/queue");
    let page = http(
        console_port,
        "GET",
        &format!("/alerts/{alert_id}"),
        &session,
        &[],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "is a <mark>pipe bomb</mark> legal",
        "Signature verified",
        "id=\"capture\"",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(
        pg.count("SELECT count(*) FROM console_audit") > audit,
        "the sign-in was audited after the moved entries"
    );
    collector.kill9();
}

#[test]
fn a_store_whose_chain_is_broken_is_not_moved() {
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("migrate-postgres-broken");
    let mut collector = Collector::init(scratch.path("school")).unwrap();
    collector.start().unwrap();
    let token = collector.token(&["--uses", "1"]).unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&token).unwrap();
    send(
        &agent.dir,
        1,
        [0; 32],
        &["pipe bomb one", "pipe bomb two", "pipe bomb three"],
    );
    collector.kill9();
    // Someone edits a stored event in the file.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let mut body: Vec<u8> = db
        .query_row("SELECT body FROM alerts WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    body.push(0);
    db.execute("UPDATE alerts SET body = ?1 WHERE seq = 2", [body])
        .unwrap();
    drop(db);
    let out = migrate(&collector, &pg.url());
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "agent {}'s event chain in SQLite: event 2 no longer matches its stored hash",
            agent.agent_id()
        )),
        "{said}"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"),
        0,
        "PostgreSQL left untouched"
    );
}
