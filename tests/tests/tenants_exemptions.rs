//! Exemptions and monitoring notices per school, on SQLite and on
//! PostgreSQL: a school's DSL adds and revokes its own school's exemptions
//! and sets its school's notice, sees the trust-wide ones read-only and
//! never another school's; each agent's rule stream (a real subscription
//! over gRPC on loopback) carries the trust-wide exemptions plus its
//! school's, and its school's notice (else the trust's); a device moved to
//! another school gets that school's at once, on the stream it holds.

mod tenants_common;

use std::time::{Duration, Instant};

use prost::Message;
use tenants_common::{subscribe, Db, PASSWORD};
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{Notice, RulesUpdate};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{http, sign_in};
use tutela_tests::{run_ok, Agent, Collector, Scratch};

const WAIT: Duration = Duration::from_secs(30);

/// What a stream has delivered so far: the newest exemption set's terms and
/// categories (sorted) and the newest notice's text.
#[derive(Debug, Default)]
struct Held {
    exempt: Vec<String>,
    notice: String,
}

/// Reads `stream` until what it has delivered satisfies `done`.
async fn until(
    stream: &mut tonic::Streaming<RulesUpdate>,
    held: &mut Held,
    what: &str,
    done: impl Fn(&Held) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(held) {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("{what}: not delivered in time; held {held:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: the stream ended; held {held:?}"));
        match update.update {
            Some(Update::Exemptions(signed)) => {
                let set = tutela_proto::v1::ExemptionSet::decode(signed.body.as_slice()).unwrap();
                let mut exempt: Vec<String> = set
                    .exemptions
                    .iter()
                    .map(|e| format!("{}{}", e.category, e.term))
                    .collect();
                exempt.sort();
                held.exempt = exempt;
            }
            Some(Update::Notice(signed)) => {
                held.notice = Notice::decode(signed.body.as_slice()).unwrap().text;
            }
            _ => {}
        }
    }
}

fn add_exemption(c: &Collector, term: &str, school: Option<&str>) {
    let mut cmd = c.cmd();
    cmd.args(["exemption", "add", "--group", "lab", "--term", term])
        .args(["--until", "7d", "--reason", "PSHE lesson"]);
    if let Some(school) = school {
        cmd.args(["--school", school]);
    }
    run_ok(&mut cmd).unwrap();
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = tenants_common::console_with_trust_and_north(&c, &scratch, "dsl", "dsl");
    c.start().unwrap();
    let north_pc = Agent::new(scratch.path("north-pc"));
    north_pc
        .enrol(&c.token(&["--school", "north", "--group", "lab"]).unwrap())
        .unwrap();
    let south_pc = Agent::new(scratch.path("south-pc"));
    south_pc
        .enrol(&c.token(&["--school", "south", "--group", "lab"]).unwrap())
        .unwrap();

    // 1: trust-wide, from the command line; 2: South's.
    add_exemption(&c, "trust-term", None);
    add_exemption(&c, "south-term", Some("south"));
    let notice_file = scratch.path("notice.txt");
    std::fs::write(&notice_file, "Trust notice").unwrap();
    run_ok(
        c.cmd()
            .args(["notice", "set", "--group", "lab", "--file"])
            .arg(&notice_file),
    )
    .unwrap();

    // North's DSL: an exemption for North whatever the form says (3).
    let north = sign_in(port, "dsl-north", PASSWORD, "/exemptions");
    let added = http(
        port,
        "POST",
        "/exemptions/add",
        &north.0,
        &[
            ("csrf", &north.1),
            ("group", "lab"),
            ("term", "north-term"),
            ("until", "7d"),
            ("reason", "North PSHE"),
            ("school", "south"),
        ],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(
        db.one("SELECT school FROM exemptions WHERE term = 'north-term'"),
        "north"
    );
    let page = http(port, "GET", "/exemptions", &north.0, &[]);
    assert!(
        page.body.contains("data-id=\"1\"") && page.body.contains("data-id=\"3\""),
        "North sees the trust's and its own: {}",
        page.body
    );
    assert!(
        !page.body.contains("data-id=\"2\""),
        "North sees South's exemption: {}",
        page.body
    );
    assert!(
        page.body.contains("action=\"/exemptions/3/revoke\"")
            && !page.body.contains("action=\"/exemptions/1/revoke\""),
        "only North's own can be revoked there: {}",
        page.body
    );
    // Refused with nothing changed: South's (as if it did not exist), the trust's.
    for (id, status) in [(2, 404), (1, 403)] {
        let r = http(
            port,
            "POST",
            &format!("/exemptions/{id}/revoke"),
            &north.0,
            &[("csrf", &north.1)],
        );
        assert_eq!(r.status, status, "revoke {id}: {}", r.body);
    }
    assert_eq!(
        db.one("SELECT COUNT(*) FROM exemptions WHERE revoked_ms IS NOT NULL"),
        "0"
    );
    // North's notice, from the console.
    let set = http(
        port,
        "POST",
        "/notices",
        &north.0,
        &[
            ("csrf", &north.1),
            ("group", "lab"),
            ("text", "North notice"),
            ("mode", "every-sign-in"),
            ("concern_url", ""),
            ("school", ""),
        ],
    );
    assert_eq!(set.status, 303, "{}", set.body);
    assert_eq!(
        db.one("SELECT school FROM notices WHERE text = 'North notice'"),
        "north"
    );
    assert!(
        db.one("SELECT detail FROM console_audit WHERE action = 'exemption-add' AND actor = 'dsl-north'")
            .starts_with("school north, group lab"),
        "the change is audited"
    );
    // Who accepted: North's DSL is shown North's pupils only.
    let byte = db.blob("00");
    for (n, (agent, user)) in [(&north_pc, "pupil.north"), (&south_pc, "pupil.south")]
        .into_iter()
        .enumerate()
    {
        db.exec(&format!(
            "INSERT INTO notice_acks (agent_id, ack_id, \"user\", station, grp, version, time_ms, received_ms, body, signature)
             VALUES ('{}', 'ack-{n}', '{user}', 'PC', 'lab', 1, 1, 1, {byte}, {byte})",
            agent.agent_id()
        ));
    }
    let page = http(port, "GET", "/notices?group=lab", &north.0, &[]).body;
    assert!(
        page.contains("pupil.north") && !page.contains("pupil.south"),
        "{page}"
    );
    // The trust's DSL sees every exemption and may revoke any.
    let trust = sign_in(port, "dsl-trust", PASSWORD, "/exemptions");
    let page = http(port, "GET", "/exemptions", &trust.0, &[]);
    assert!(
        page.body.contains("data-id=\"2\"") && page.body.contains("<option value=\"\">"),
        "{}",
        page.body
    );
    let page = http(port, "GET", "/notices?group=lab", &trust.0, &[]).body;
    assert!(
        page.contains("pupil.north") && page.contains("pupil.south"),
        "{page}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut north_stream = subscribe(&north_pc).await;
        let mut south_stream = subscribe(&south_pc).await;
        let (mut n, mut s) = (Held::default(), Held::default());
        until(&mut north_stream, &mut n, "North's set and notice", |h| {
            h.exempt == ["north-term", "trust-term"] && h.notice == "North notice"
        })
        .await;
        until(
            &mut south_stream,
            &mut s,
            "South's set and the trust's notice",
            |h| h.exempt == ["south-term", "trust-term"] && h.notice == "Trust notice",
        )
        .await;

        // North revokes its own: North's stations drop it at once.
        let r = http(
            port,
            "POST",
            "/exemptions/3/revoke",
            &north.0,
            &[("csrf", &north.1)],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        until(&mut north_stream, &mut n, "North's revocation", |h| {
            h.exempt == ["trust-term"]
        })
        .await;

        // South's station moves to North: on the stream it holds, North's
        // set and notice.
        add_exemption(&c, "north-again", Some("north"));
        let id = south_pc.agent_id();
        run_ok(c.cmd().args(["agents", "move", &id, "--school", "north"])).unwrap();
        until(&mut south_stream, &mut s, "North's, after the move", |h| {
            h.exempt == ["north-again", "trust-term"] && h.notice == "North notice"
        })
        .await;
    });
    c.kill9();
}

#[test]
fn on_sqlite_exemptions_and_notices_go_per_school() {
    scenario(None, "tenants-exemptions-sqlite");
}

#[test]
fn on_postgresql_exemptions_and_notices_go_per_school() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-exemptions-postgres");
}
