//! The fleet page's actions over real HTTP against the real collector: a
//! technician clears a station's flag and revokes a station, and the audit
//! log records both.

use std::time::Duration;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_db::{audit_log, logged};
use tutela_tests::web::{self, http};
use tutela_tests::{Agent, Collector, Scratch};

/// Signs in with the test password; returns the session cookie and CSRF token.
fn sign_in(port: u16, name: &str) -> (String, String) {
    web::sign_in(port, name, PASSWORD, "/exemptions")
}

#[test]
fn a_technician_clears_a_flag_and_revokes_a_station_from_the_fleet_page() {
    let scratch = Scratch::new("fleet-actions");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("tech.one", "technician"), ("head.one", "head")],
        PASSWORD,
    )
    .unwrap();
    collector.start().unwrap();
    let mut agents = Vec::new();
    for station in ["LAB4-PC01", "LAB4-PC02"] {
        let mut agent = Agent::new(scratch.path(station));
        agent.as_station(station);
        agent.on_machine(&format!("machine-{station}"));
        agent
            .enrol(&collector.token(&["--group", "lab-4"]).unwrap())
            .unwrap();
        agents.push(agent);
    }
    let flagged = agents[0].agent_id();
    let other = agents[1].agent_id();
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE agents SET flag = 'identity cloned: re-keyed as ag-x' WHERE agent_id = ?1",
        [&flagged],
    )
    .unwrap();
    let flag_of = |id: &str| -> Option<String> {
        db.query_row("SELECT flag FROM agents WHERE agent_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let revoked = |id: &str| -> bool {
        db.query_row(
            "SELECT revoked FROM agents WHERE agent_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };

    // The head sees the fleet but has no actions, and a forged post is refused.
    let (head, head_csrf) = sign_in(port, "head.one");
    let page = http(port, "GET", "/fleet", &head, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&flagged), "{}", page.body);
    assert!(!page.body.contains("/fleet/revoke"), "{}", page.body);
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &head,
        &[("csrf", &head_csrf), ("agent", &other), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!revoked(&other));

    // The technician sees both actions on the flagged station, only Revoke on the other.
    let (tech, csrf) = sign_in(port, "tech.one");
    let tech_post = |path: &str, form: &[(&str, &str)]| http(port, "POST", path, &tech, form);
    let page = http(port, "GET", "/fleet", &tech, &[]);
    let row = |id: &str| {
        let at = page
            .body
            .find(&format!(r#"data-agent="{id}""#))
            .unwrap_or_else(|| panic!("{id} missing:\n{}", page.body));
        page.body[at..at + page.body[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row(&flagged).contains("Clear flag"), "{}", row(&flagged));
    assert!(row(&flagged).contains("Revoke"), "{}", row(&flagged));
    assert!(!row(&other).contains("Clear flag"), "{}", row(&other));
    assert!(row(&other).contains("Revoke"), "{}", row(&other));

    // Without the CSRF token: refused, nothing changes.
    let r = tech_post(
        "/fleet/clear-flag",
        &[("agent", &flagged), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(flag_of(&flagged).is_some());

    // First the confirm page (nothing changes yet), then the change.
    let r = tech_post("/fleet/clear-flag", &[("csrf", &csrf), ("agent", &flagged)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Clear the flag?"), "{}", r.body);
    assert!(r.body.contains("LAB4-PC01"), "{}", r.body);
    assert!(
        r.body.contains(r#"name="confirm" value="yes""#),
        "{}",
        r.body
    );
    assert!(flag_of(&flagged).is_some(), "not before confirming");
    let r = tech_post(
        "/fleet/clear-flag",
        &[("csrf", &csrf), ("agent", &flagged), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(flag_of(&flagged), None);
    let page = http(port, "GET", "/fleet", &tech, &[]);
    assert!(
        page.body.contains("2 stations: 0 silent, 0 flagged"),
        "{}",
        page.body
    );

    // Revoke: confirm page, then the identity is revoked, as `agents revoke` does.
    let r = tech_post("/fleet/revoke", &[("csrf", &csrf), ("agent", &other)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Revoke the station?"), "{}", r.body);
    assert!(!revoked(&other), "not before confirming");
    let r = tech_post(
        "/fleet/revoke",
        &[("csrf", &csrf), ("agent", &other), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(revoked(&other));
    let list = tutela_tests::run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with(&other) && l.contains("revoked=true")),
        "{list}"
    );
    let page = http(port, "GET", "/fleet", &tech, &[]);
    assert!(!page.body.contains(&other), "{}", page.body);
    // Again: explained, not repeated.
    let r = tech_post(
        "/fleet/revoke",
        &[("csrf", &csrf), ("agent", &other), ("confirm", "yes")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("revoked already"), "{}", r.body);

    // The revoked station's events are refused by the collector; the other's arrive.
    agents[1].start(&["--simulate", "2"]).unwrap();
    agents[0].start(&["--simulate", "2"]).unwrap();
    tutela_tests::wait_for(
        "the revoked station to be refused",
        Duration::from_secs(60),
        || agents[1].log_text().contains("has been revoked"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agents[1].log_text()));
    tutela_tests::wait_for(
        "the other station's events",
        Duration::from_secs(60),
        || collector.alert_count() == 2,
    )
    .unwrap();
    let alerts = collector.alerts().unwrap();
    assert!(
        alerts.iter().all(|a| a["agent_id"] == flagged.as_str()),
        "{alerts:?}"
    );

    let audit = audit_log(&db);
    let has = |actor: &str, action: &str, target: &str| logged(&audit, actor, action, target);
    assert!(has("head.one", "denied", "fleet: revoke"), "{audit:?}");
    assert!(has("tech.one", "csrf_refused", "console"), "{audit:?}");
    assert!(
        has("tech.one", "agent-clear-flag", &format!("agent:{flagged}")),
        "{audit:?}"
    );
    assert!(
        has("tech.one", "agent-revoke", &format!("agent:{other}")),
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|(_, b, _)| b.starts_with("agent-"))
            .count(),
        2,
        "one entry per confirmed action: {audit:?}"
    );

    // A station whose key was cloned has re-keyed descendants: the confirm
    // page lists them, and revoking "them too" takes every one.
    for (child, key) in [("ag-child000001", [7u8; 32]), ("ag-child000002", [8u8; 32])] {
        db.execute(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, rekeyed_from) VALUES (?1, ?2, 'LAB4-PC09', 'lab-4', 0, ?3)",
            rusqlite::params![child, key.to_vec(), flagged],
        )
        .unwrap();
    }
    let r = tech_post("/fleet/revoke", &[("csrf", &csrf), ("agent", &flagged)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("2 other identities were re-keyed from this one")
            && r.body.contains("ag-child000001")
            && r.body.contains(r#"name="descendants" value="yes""#),
        "{}",
        r.body
    );
    let r = tech_post(
        "/fleet/revoke",
        &[
            ("csrf", &csrf),
            ("agent", &flagged),
            ("confirm", "yes"),
            ("descendants", "yes"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    for id in [flagged.as_str(), "ag-child000001", "ag-child000002"] {
        assert!(revoked(id), "{id} revoked with its ancestor");
    }
    let descendants_audited: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE action = 'agent-revoke' AND detail LIKE 're-keyed from %'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(descendants_audited, 2);
}
