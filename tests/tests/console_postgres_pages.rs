//! The review console on PostgreSQL over HTTP: the Publish rules,
//! Exemptions, Notice, Fleet, Report a concern and Subject access pages and
//! the week's summary figures.

use std::process::Command;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_pg::{listed, node, port_of, send};
use tutela_tests::load::now_ms;
use tutela_tests::postgres::PgCluster;
use tutela_tests::{Agent, Scratch};

/// A small pack of weapons terms at `version`.
fn pack(version: u32, weapons: &[&str]) -> String {
    use tutela_tests::packs::{self, small_pack, About};
    let about = About::new(
        "console-pg",
        "Console test pack",
        "A small pack for console tests.",
    );
    small_pack(&about, version, &[packs::weapons(weapons)])
}

#[test]
fn on_postgresql_the_publish_exemption_notice_fleet_concern_and_access_pages_work() {
    use tutela_tests::web::{field, http, sign_in};
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("console-postgres-pages");
    let (mut c, console) = node(&scratch, "c", &pg.url());
    c.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    c.add_console_user("tech1", "technician", PASSWORD).unwrap();
    c.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&c.token(&["--group", "y10"]).unwrap()).unwrap();
    send(
        &agent.dir,
        &[("pupil.one", "how to hide a weapon", "weapon", "weapons", 4)],
    );
    let port = port_of(&console);
    let (dsl, dsl_csrf) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let (tech, tech_csrf) = sign_in(port, "tech1", PASSWORD, "/fleet");
    let as_dsl = |path: &str, form: &[(&str, &str)]| {
        let mut fields = vec![("csrf", dsl_csrf.as_str())];
        fields.extend_from_slice(form);
        http(port, "POST", path, &dsl, &fields)
    };
    // Every page the navigation links to is served on PostgreSQL.
    for (cookie, path) in [
        (&tech, "/rules/publish"),
        (&tech, "/fleet"),
        (&tech, "/exemptions"),
        (&dsl, "/notices"),
        (&dsl, "/subject-access"),
        (&String::new(), "/concern"),
    ] {
        let r = http(port, "GET", path, cookie, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    // Publish rules: checked against what PostgreSQL holds, stored there
    // with its audit entry.
    let publish = |version: u32, terms: &[&str], shadow: bool| {
        let text = pack(version, terms);
        let mut form = vec![
            ("csrf", tech_csrf.as_str()),
            ("action", "publish"),
            ("pack", text.as_str()),
        ];
        if shadow {
            form.push(("shadow", "on"));
        }
        http(port, "POST", "/rules/publish", &tech, &form).body
    };
    let r = publish(1, &["pipe bomb", "zip gun"], false);
    assert!(r.contains("Published live version 1"), "{r}");
    let r = publish(1, &["pipe bomb"], false);
    assert!(r.contains("is not newer than 1"), "{r}");
    let r = publish(2, &["zip gun", "ghost gun"], true);
    assert!(r.contains("Published shadow version 2"), "{r}");
    assert_eq!(
        pg.query(
            "SELECT string_agg(version || ':' || shadow, ',' ORDER BY version) FROM rule_bundles"
        )
        .unwrap(),
        "1:false,2:true"
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'tech1' AND action = 'rules-publish'"
        ),
        2
    );
    let page = http(port, "GET", "/rules/publish", &tech, &[]).body;
    assert!(
        page.contains("pipe bomb"),
        "the live pack is offered: {page}"
    );

    // Exemptions: added and revoked, each audited.
    let r = as_dsl(
        "/exemptions/add",
        &[
            ("group", "y10"),
            ("category", "weapons"),
            ("until", "7d"),
            ("reason", "history topic: the world wars"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let exemption = pg.count("SELECT id FROM exemptions WHERE grp = 'y10'");
    let list = http(port, "GET", "/exemptions", &tech, &[]).body;
    assert!(list.contains("history topic: the world wars"), "{list}");
    assert!(
        !list.contains("/revoke"),
        "a technician sees no revoke button"
    );
    let r = as_dsl(&format!("/exemptions/{exemption}/revoke"), &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM exemptions WHERE revoked_ms IS NOT NULL"),
        1
    );
    assert_eq!(
        as_dsl(&format!("/exemptions/{}/revoke", exemption + 100), &[]).status,
        404
    );

    // Notices: a new version per change; who has accepted is worked out
    // from PostgreSQL (the pupil with an alert from the group has not).
    let notice = |text: &str| {
        as_dsl(
            "/notices",
            &[
                ("group", "y10"),
                ("text", text),
                ("mode", "every-sign-in"),
                ("concern_url", &format!("http://127.0.0.1:{port}/concern")),
            ],
        )
    };
    assert_eq!(notice("This computer is monitored.").status, 303);
    assert_eq!(notice("This computer is monitored for safety.").status, 303);
    assert_eq!(notice("").status, 400, "an empty notice is refused");
    assert_eq!(
        pg.query(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM notices WHERE grp = 'y10'"
        )
        .unwrap(),
        "1,2"
    );
    let page = http(port, "GET", "/notices?group=y10", &dsl, &[]).body;
    assert!(
        page.contains("This computer is monitored for safety."),
        "{page}"
    );
    assert!(
        page.contains("pupil.one"),
        "the pupil yet to accept: {page}"
    );

    // Fleet: a station quiet for weeks is silent; the shadow candidate's section shows.
    pg.query(&format!(
        "UPDATE agents SET last_seen_ms = {0}, enrolled_ms = {0}",
        now_ms() - 30 * 24 * 3600 * 1000
    ))
    .unwrap();
    let fleet = http(port, "GET", "/fleet", &tech, &[]).body;
    assert!(fleet.contains("1 stations: 1 silent"), "{fleet}");
    assert!(
        fleet.contains("Candidate rules (shadow version 2)"),
        "{fleet}"
    );

    // Report a concern: stored in PostgreSQL as an alert, audited.
    let form = http(port, "GET", "/concern", "", &[]);
    let token = field(&form.body, "token").expect("a form token");
    let r = http(
        port,
        "POST",
        "/concern",
        "",
        &[
            ("token", &token),
            ("name", "pupil.one"),
            ("text", "someone keeps messaging me at night"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let report = pg.count("SELECT id FROM alerts WHERE source = 'pupil_report'");
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM console_audit WHERE action = 'report_received' AND target = 'alert:{report}'"
        )),
        1
    );
    let queue = http(port, "GET", "/queue", &dsl, &[]).body;
    assert!(listed(&queue).contains(&report), "{queue}");

    // Subject access: the account's alerts and report, as a ZIP, audited.
    let r = as_dsl("/subject-access", &[("account", "pupil.one")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl1' AND action = 'subject_access_export'"
        ),
        1
    );

    // The week's summary on PostgreSQL counts the publications, the
    // exemption, the notice's standing and the time to first review.
    let weapon = pg.count("SELECT id FROM alerts WHERE source <> 'pupil_report'");
    assert_eq!(
        as_dsl(
            "/queue/bulk",
            &[("id", &weapon.to_string()), ("reason", "history lesson")]
        )
        .status,
        303
    );
    let preview = scratch.path("summary.html");
    let today = tutela_tests::run_ok(Command::new("date").args(["-u", "+%F"]))
        .unwrap()
        .trim()
        .to_owned();
    tutela_tests::run_ok(
        c.cmd()
            .args(["summary", "--week", &today, "--preview"])
            .arg(&preview),
    )
    .unwrap();
    let summary = std::fs::read_to_string(&preview).unwrap();
    for expected in [
        "Rule changes this week: <b>2</b>",
        "Curriculum exemptions made or revoked this week: <b>1</b>",
        "0 acknowledgement(s) this week; 0 pupil(s) have accepted their group's current version, 1 have not yet.",
        "(1 alerts reviewed)",
    ] {
        assert!(summary.contains(expected), "{expected} in {summary}");
    }

    // One chain throughout.
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit c JOIN console_audit p ON p.id = c.id - 1
             WHERE c.prev_hash <> p.hash"
        ),
        0
    );
    assert_eq!(pg.count("SELECT MAX(id) - COUNT(*) FROM console_audit"), 0);
    let log = c.log_text();
    assert!(!log.contains("console database error"), "{log}");
    c.kill9();
}
