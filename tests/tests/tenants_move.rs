//! Moving a device to another school, on SQLite and on PostgreSQL: `agents
//! move <id> --school` (and a trust-wide technician's Fleet page) moves it,
//! audited; its later alerts belong to the new school, its earlier ones
//! stay with the old; a school's technician may not move it, an unknown
//! school or agent is refused with nothing changed.

mod tenants_common;

use tenants_common::{now_ms, Db, PASSWORD};
use tutela_agent::event::{seal, EventDraft};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_proto::v1::{Observation, RuleMatch, Source};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::sign_in;
use tutela_tests::{run_failing, run_ok, Agent, Scratch};

/// Streams one typed alert per user in `users` from the agent enrolled in
/// `dir`, numbered from `*seq + 1` and chained on `*prev`.
fn alerts(dir: &std::path::Path, seq: &mut u64, prev: &mut [u8; 32], users: &[&str]) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut events = Vec::new();
    for user in users {
        *seq += 1;
        let context = "how to hide a weapon";
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            *seq,
            *prev,
            0,
            EventDraft {
                time_ms: now_ms() - 60_000 + *seq as i64,
                user: (*user).to_owned(),
                station: "LAB-PC01".into(),
                observation: Observation {
                    source: Source::Typed as i32,
                    context: context.into(),
                    app: "chromium".into(),
                    ..Default::default()
                },
                matches: vec![RuleMatch {
                    rule_id: "weapons/seed".into(),
                    category: "weapons".into(),
                    severity: 4,
                    term: "weapon".into(),
                    start: 14,
                    end: 20,
                }],
                evidence: None,
                rules_version: 3,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        *prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    tutela_tests::ingest::stream_stored(&enrolment, events, *seq);
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = tenants_common::console_with_trust_and_north(&c, &scratch, "technician", "tech");
    c.start().unwrap();
    let token = c.token(&["--school", "north", "--group", "lab"]).unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.as_station("LAB-PC01");
    agent.enrol(&token).unwrap();
    let id = agent.agent_id();
    let (mut seq, mut prev) = (0, [0; 32]);
    alerts(&agent.dir, &mut seq, &mut prev, &["before.1", "before.2"]);

    // Refused, with nothing changed: an unknown school, an unknown agent.
    let unknown = run_failing(c.cmd().args(["agents", "move", &id, "--school", "west"]));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("there is no school \"west\""),
        "{unknown:?}"
    );
    let nobody = run_failing(
        c.cmd()
            .args(["agents", "move", "ag-none", "--school", "south"]),
    );
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("no enrolled, unrevoked agent"),
        "{nobody:?}"
    );
    let school_of = || {
        db.one(&format!(
            "SELECT school FROM agents WHERE agent_id = '{id}'"
        ))
    };
    assert_eq!(school_of(), "north");

    let out = run_ok(c.cmd().args(["agents", "move", &id, "--school", "south"])).unwrap();
    assert!(
        out.contains("moved from school north to school south"),
        "{out}"
    );
    alerts(&agent.dir, &mut seq, &mut prev, &["after.1"]);
    let of = |user: &str| {
        db.one(&format!(
            "SELECT school FROM alerts WHERE \"user\" = '{user}'"
        ))
    };
    assert_eq!(
        (of("before.1"), of("before.2"), of("after.1")),
        ("north".into(), "north".into(), "south".into()),
        "earlier alerts stay with the old school, later ones are the new school's"
    );
    assert_eq!(
        db.one(&format!(
            "SELECT detail FROM console_audit WHERE action = 'agent-move-school' AND target = 'agent:{id}'"
        )),
        "to school south"
    );

    // The Fleet page: North's technician no longer sees the station and may
    // not move it; the trust's technician moves it back.
    let north = sign_in(port, "tech-north", PASSWORD, "/fleet");
    let page = tutela_tests::web::http(port, "GET", "/fleet", &north.0, &[]);
    assert!(
        !page.body.contains(&id),
        "North's fleet lists a South station"
    );
    assert!(!page.body.contains("move-school"), "{}", page.body);
    let refused = tutela_tests::web::http(
        port,
        "POST",
        "/fleet/move-school",
        &north.0,
        &[("csrf", &north.1), ("agent", &id), ("school", "north")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(school_of(), "south");
    let trust = sign_in(port, "tech-trust", PASSWORD, "/fleet");
    let page = tutela_tests::web::http(port, "GET", "/fleet", &trust.0, &[]);
    assert!(
        page.body.contains("action=\"/fleet/move-school\"")
            && page.body.contains("value=\"north\""),
        "{}",
        page.body
    );
    for (school, status) in [("west", 400), ("north", 303)] {
        let r = tutela_tests::web::http(
            port,
            "POST",
            "/fleet/move-school",
            &trust.0,
            &[("csrf", &trust.1), ("agent", &id), ("school", school)],
        );
        assert_eq!(r.status, status, "move to {school}: {}", r.body);
    }
    assert_eq!(school_of(), "north");
    alerts(&agent.dir, &mut seq, &mut prev, &["back.1"]);
    assert_eq!(of("back.1"), "north");
    assert_eq!(
        db.one(&format!(
            "SELECT COUNT(*) FROM console_audit WHERE action = 'agent-move-school' AND actor = 'tech-trust' AND target = 'agent:{id}'"
        )),
        "1"
    );
    c.kill9();
}

#[test]
fn on_sqlite_a_device_moved_to_another_school_sends_its_later_alerts_there() {
    scenario(None, "tenants-move-sqlite");
}

#[test]
fn on_postgresql_a_device_moved_to_another_school_sends_its_later_alerts_there() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-move-postgres");
}
