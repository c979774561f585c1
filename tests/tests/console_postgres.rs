//! The review console on PostgreSQL, in real headless Chromium: two real
//! collectors (`tutela-collector serve`) share one PostgreSQL; an agent's
//! alert stored through ingest shows in the queue of the first, a DSL opens
//! it (audited) and starts its review there, and the second collector shows
//! that state and takes the next step, which the first then shows. Accounts
//! are made with `tutela-collector user add` straight into PostgreSQL. The
//! browser part is `tests/console/postgres.mjs`. Also, over HTTP: the
//! queue's filters and the staff scope on PostgreSQL, and a console that
//! answers while the database is away and recovers when it is back; the
//! Publish rules, Exemptions, Notice, Fleet, Report a concern and Subject
//! access pages and the week's summary figures on PostgreSQL; and the
//! retention purge there (`tutela-collector purge`).

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tutela_agent::event::{seal, EventDraft};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_proto::v1::{Observation, RuleMatch, Source};
use tutela_tests::postgres::PgCluster;
use tutela_tests::script::Script;
use tutela_tests::{console_scripts, free_port, Agent, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A collector in `scratch/name` on the PostgreSQL at `url`, with its
/// console on; returns it and the console's address.
fn node(scratch: &Scratch, name: &str, url: &str) -> (Collector, String) {
    let collector = Collector::init(scratch.path(name)).unwrap();
    collector
        .set_section("storage", &format!("url = \"{url}\""))
        .unwrap();
    let console = collector.set_console_port(free_port()).unwrap();
    (collector, console)
}

/// An alert to send: (user, context, matched word, category, severity).
type Seed<'a> = (&'a str, &'a str, &'a str, &'a str, u32);

/// Typed alerts from the agent enrolled in `dir` (its first events, chained),
/// streamed to the collector that enrolled it and acknowledged as stored.
fn send(dir: &std::path::Path, seeds: &[Seed<'_>]) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut prev = [0; 32];
    let mut events = Vec::new();
    for (n, (user, context, word, category, severity)) in seeds.iter().enumerate() {
        let start = context.find(word).unwrap() as u32;
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            n as u64 + 1,
            prev,
            0,
            EventDraft {
                time_ms: now_ms() - 60_000 + n as i64,
                user: (*user).into(),
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
                    rule_id: format!("{category}/seed"),
                    category: (*category).into(),
                    severity: *severity,
                    term: (*word).into(),
                    start,
                    end: start + word.len() as u32,
                }],
                evidence: None,
                rules_version: 3,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    let last = events.len() as u64;
    tutela_tests::ingest::stream_stored(&enrolment, events, last);
}

#[test]
fn two_collectors_on_postgresql_serve_one_review_console() {
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("console-postgres");
    let (mut a, console_a) = node(&scratch, "a", &pg.url());
    let (mut b, console_b) = node(&scratch, "b", &pg.url());
    // Accounts made on either node's command line land in PostgreSQL.
    a.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    b.add_console_user("dsl2", "deputy-dsl", PASSWORD).unwrap();
    let listed = tutela_tests::run_ok(a.cmd().args(["user", "list"])).unwrap();
    assert!(
        listed.contains("dsl1\tdsl\tactive") && listed.contains("dsl2\tdeputy-dsl\tactive"),
        "both accounts, from either node: {listed}"
    );
    a.start().unwrap();
    b.start().unwrap();

    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&a.token(&[]).unwrap()).unwrap();
    send(
        &agent.dir,
        &[(
            "pupil.one",
            "i want to kill myself tonight",
            "kill myself",
            "suicide",
            5,
        )],
    );
    let id = pg.count("SELECT id FROM alerts WHERE severity = 5");

    let (browser, lines) = Script::spawn(
        Command::new("node")
            .arg("postgres.mjs")
            .current_dir(console_scripts())
            .env("CONSOLE_A", &console_a)
            .env("CONSOLE_B", &console_b)
            .env("PASSWORD", PASSWORD)
            .env("ALERT_ID", id.to_string()),
        Duration::from_secs(180),
    );
    let mut result = None;
    for line in lines {
        let line = line.unwrap();
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(json.to_owned());
        }
    }
    let status = browser.finish();
    assert!(
        status.success() && result.is_some(),
        "the browser scenario failed ({status}); collector logs:\n{}\n----\n{}",
        a.log_text(),
        b.log_text()
    );

    // What the console did is in PostgreSQL: the state, its history (one
    // step from each collector) and an audit chain with every view and move.
    assert_eq!(
        pg.query(&format!("SELECT state FROM alerts WHERE id = {id}"))
            .unwrap(),
        "escalated"
    );
    assert_eq!(
        pg.query(&format!(
            "SELECT string_agg(actor || ':' || from_state || '>' || to_state, ',' ORDER BY id)
             FROM console_history WHERE alert_id = {id}"
        ))
        .unwrap(),
        "dsl1:new>in_review,dsl2:in_review>escalated"
    );
    let target = format!("alert:{id}");
    for (actor, action) in [
        ("dsl1", "view_alert"),
        ("dsl1", "state_change"),
        ("dsl2", "view_alert"),
        ("dsl2", "state_change"),
    ] {
        assert!(
            pg.count(&format!(
                "SELECT COUNT(*) FROM console_audit WHERE actor = '{actor}' AND action = '{action}' AND target = '{target}'"
            )) >= 1,
            "{actor} {action} is audited"
        );
    }
    for actor in ["dsl1", "dsl2"] {
        assert_eq!(
            pg.count(&format!(
                "SELECT COUNT(*) FROM console_audit WHERE actor = '{actor}' AND action = 'login'"
            )),
            1
        );
    }
    // One chain across both collectors: ids without gaps, each entry
    // pointing at the one before.
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit c JOIN console_audit p ON p.id = c.id - 1
             WHERE c.prev_hash <> p.hash"
        ),
        0
    );
    assert_eq!(pg.count("SELECT MAX(id) - COUNT(*) FROM console_audit"), 0);
    // The log is append-only here too.
    assert!(pg
        .query("UPDATE console_audit SET actor = 'someone else' WHERE id = 1")
        .unwrap_err()
        .to_string()
        .contains("append-only"));
    for log in [a.log_text(), b.log_text()] {
        assert!(!log.contains("console database error"), "{log}");
    }
    a.kill9();
    b.kill9();
}

/// The alert ids a queue page lists.
fn listed(body: &str) -> Vec<i64> {
    body.match_indices("<tr data-id=\"")
        .filter_map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

#[test]
fn on_postgresql_the_queue_filters_and_the_staff_scope_hold() {
    use tutela_tests::web::{http, sign_in};
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("console-postgres-scope");
    let (mut c, console) = node(&scratch, "c", &pg.url());
    // Staff: the imported list, and names matching the pattern, where `_`
    // is a letter like any other.
    c.set_section(
        "console",
        &format!(
            "listen = \"{}\"\nstaff_pattern = \"t_*\"",
            console.trim_start_matches("http://").trim_end_matches('/')
        ),
    )
    .unwrap();
    std::fs::write(
        scratch.path("staff.csv"),
        "username,type\nmr.smith,staff\npupil.one,pupil\n",
    )
    .unwrap();
    let out = tutela_tests::run_ok(
        c.cmd()
            .args(["users", "import"])
            .arg(scratch.path("staff.csv")),
    )
    .unwrap();
    assert!(out.contains("imported 1 staff"), "{out}");
    c.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    c.add_console_user("head1", "head", PASSWORD).unwrap();
    c.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&c.token(&[]).unwrap()).unwrap();
    send(
        &agent.dir,
        &[
            (
                "pupil.one",
                "i want to kill myself tonight",
                "kill myself",
                "suicide",
                5,
            ),
            ("mr.smith", "how to hide a weapon", "weapon", "weapons", 4),
            ("t_lee", "you are such a loser", "loser", "bullying", 3),
            (
                "ta.teacher",
                "best odds on the match",
                "odds",
                "gambling",
                2,
            ),
            ("Pupil.One", "where to buy weed", "weed", "drugs", 1),
        ],
    );
    let id = |user: &str| pg.count(&format!("SELECT id FROM alerts WHERE \"user\" = '{user}'"));
    let (pupil, smith, lee, ta, upper) = (
        id("pupil.one"),
        id("mr.smith"),
        id("t_lee"),
        id("ta.teacher"),
        id("Pupil.One"),
    );
    let port: u16 = console
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (dsl, _) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let (head, _) = sign_in(port, "head1", PASSWORD, "/queue");
    let queue = |cookie: &str, query: &str| {
        let r = http(port, "GET", &format!("/queue?{query}"), cookie, &[]);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let mut ids = listed(&r.body);
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<i64>| {
        v.sort();
        v
    };
    assert_eq!(
        queue(&dsl, ""),
        sorted(vec![pupil, ta, upper]),
        "pupils' alerts"
    );
    assert_eq!(queue(&head, ""), sorted(vec![smith, lee]), "staff alerts");
    assert_eq!(
        queue(&dsl, "pupil=PUPIL.one"),
        sorted(vec![pupil, upper]),
        "the pupil filter ignores case"
    );
    assert_eq!(queue(&dsl, "q=KILL"), vec![pupil], "search ignores case");
    assert_eq!(
        queue(&dsl, "q=_"),
        Vec::<i64>::new(),
        "`_` is searched as itself"
    );
    assert_eq!(
        queue(&dsl, "q=%25"),
        Vec::<i64>::new(),
        "`%` is searched as itself"
    );
    assert_eq!(
        queue(&dsl, "q=weapon"),
        Vec::<i64>::new(),
        "no staff alert by search"
    );
    assert_eq!(queue(&dsl, "severity=2&category=gambling"), vec![ta]);
    // Out of scope is not found, whoever asks.
    assert_eq!(
        http(port, "GET", &format!("/alerts/{smith}"), &dsl, &[]).status,
        404
    );
    assert_eq!(
        http(port, "GET", &format!("/alerts/{pupil}"), &head, &[]).status,
        404
    );
    assert_eq!(
        http(port, "GET", &format!("/alerts/{pupil}"), &dsl, &[]).status,
        200
    );
    // Rule rates count only the viewer's alerts.
    let rules = http(port, "GET", "/rules", &dsl, &[]).body;
    assert!(
        rules.contains("suicide/seed") && !rules.contains("weapons/seed"),
        "{rules}"
    );
    let csv = http(port, "GET", "/queue.csv?state=all", &dsl, &[]).body;
    assert!(
        csv.contains("pupil.one") && !csv.contains("mr.smith"),
        "{csv}"
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl1' AND action = 'export_csv'"
        ),
        1
    );
    // The review's other steps, each a unit of work in PostgreSQL.
    let (dsl, csrf) = sign_in(port, "dsl1", PASSWORD, "/queue");
    let post = |path: &str, form: &[(&str, &str)]| {
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        http(port, "POST", path, &dsl, &fields)
    };
    assert_eq!(
        post(
            &format!("/alerts/{pupil}/note"),
            &[("text", "spoke to form tutor")]
        )
        .status,
        303
    );
    assert_eq!(
        post(&format!("/alerts/{pupil}/assign"), &[("assignee", "dsl1")]).status,
        303
    );
    assert_eq!(
        post(
            &format!("/alerts/{pupil}/reveal"),
            &[("reason", "checking context")]
        )
        .status,
        303
    );
    assert_eq!(
        post(
            "/queue/bulk",
            &[("id", &ta.to_string()), ("reason", "football odds")]
        )
        .status,
        303
    );
    assert_eq!(
        pg.query(&format!("SELECT state FROM alerts WHERE id = {ta}"))
            .unwrap(),
        "false_positive"
    );
    // A second close of the same alert finds nothing left to move.
    assert_eq!(
        post(
            "/queue/bulk",
            &[("id", &ta.to_string()), ("reason", "again")]
        )
        .status,
        303
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM console_history WHERE alert_id = {ta}"
        )),
        1
    );
    let page = http(port, "GET", &format!("/alerts/{pupil}"), &dsl, &[]).body;
    assert!(page.contains("spoke to form tutor"), "the note is shown");
    assert!(page.contains("id=\"alert-assignee\">dsl1<"), "{page}");
    let record = http(
        port,
        "GET",
        &format!("/alerts/{pupil}/record.json"),
        &dsl,
        &[],
    );
    assert_eq!(record.status, 200);
    assert!(
        record.body.contains("spoke to form tutor"),
        "{}",
        record.body
    );
    assert_eq!(
        post("/settings", &[("technician_queue", "category-only")]).status,
        303
    );
    assert_eq!(
        pg.query("SELECT value FROM console_settings WHERE key = 'technician_queue'")
            .unwrap(),
        "category-only"
    );
    let made = post(
        "/tokens/create",
        &[("group", "lab-2"), ("expires", "24h"), ("uses", "2")],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.contains("tutela-agent enrol"), "{}", made.body);
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM tokens WHERE grp = 'lab-2' AND max_uses = 2"),
        1
    );
    c.add_console_user("audit1", "auditor", PASSWORD).unwrap();
    let (auditor, _) = sign_in(port, "audit1", PASSWORD, "/audit");
    let log = http(port, "GET", "/audit?actor=dsl1", &auditor, &[]).body;
    assert!(log.contains("Hash chain intact"), "{log}");
    for action in [
        "add_note",
        "assign",
        "reveal_capture",
        "bulk_false_positive",
        "setting_changed",
        "token-create",
    ] {
        assert!(
            log.contains(&format!("<td>{action}</td>")),
            "{action} in {log}"
        );
    }

    // The database goes away: the console says so, and comes back with it
    // (the session is kept in PostgreSQL, so the reviewer stays signed in).
    pg.stop().unwrap();
    let down = http(port, "GET", "/queue", &dsl, &[]);
    assert_eq!(down.status, 500, "{}", down.body);
    assert!(
        down.body.contains("could not read its database"),
        "{}",
        down.body
    );
    pg.start_server().unwrap();
    tutela_tests::wait_for(
        "the console to read PostgreSQL again",
        Duration::from_secs(30),
        || http(port, "GET", "/queue", &dsl, &[]).status == 200,
    )
    .unwrap();
    assert_eq!(
        queue(&dsl, ""),
        sorted(vec![pupil, upper]),
        "the open queue"
    );
    assert!(c
        .log_text()
        .contains("the console connected to PostgreSQL again"));
    c.kill9();
}

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
    let port: u16 = console
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
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

#[test]
fn on_postgresql_purge_removes_old_closed_alerts_and_keeps_the_audit_chain() {
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("console-postgres-purge");
    let (mut c, console) = node(&scratch, "c", &pg.url());
    c.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    c.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&c.token(&[]).unwrap()).unwrap();
    send(
        &agent.dir,
        &[
            ("pupil.one", "how to hide a weapon", "weapon", "weapons", 4),
            ("pupil.two", "where to buy weed", "weed", "drugs", 2),
            (
                "pupil.three",
                "you are such a loser",
                "loser",
                "bullying",
                3,
            ),
        ],
    );
    // A sign-in starts the audit chain the purge's entry must follow on from.
    let port: u16 = console
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tutela_tests::web::sign_in(port, "dsl1", PASSWORD, "/queue");
    c.kill9();
    let id = |user: &str| pg.count(&format!("SELECT id FROM alerts WHERE \"user\" = '{user}'"));
    let (old, recent, open) = (id("pupil.one"), id("pupil.two"), id("pupil.three"));
    // Closed two years ago (with a capture and a folded repeat), closed
    // today, and still open.
    let two_years_ago = now_ms() - 2 * 365 * 24 * 3600 * 1000;
    pg.query(&format!(
        "UPDATE alerts SET state = 'closed' WHERE id = {old};
         UPDATE alerts SET state = 'false_positive' WHERE id = {recent};
         INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state)
             VALUES ({old}, {two_years_ago}, 'dsl1', 'new', 'closed'),
                    ({recent}, {}, 'dsl1', 'new', 'false_positive');
         INSERT INTO captures (alert_id, sha256, size, width, height, sealed)
             VALUES ({old}, '\\x00', 1, 1, 1, '\\x00');
         INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
             source, context, app, app_path, window_title, url, search_query, category, severity,
             rule_id, term, matches, rules_version, state, repeat_of, body, signature, body_hash)
           SELECT 'repeat-1', agent_id, 1000, time_ms, received_ms, \"user\", station, source,
             context, app, app_path, window_title, url, search_query, category, severity, rule_id,
             term, matches, rules_version, 'folded', event_id, body, signature, body_hash
           FROM alerts WHERE id = {old}",
        now_ms()
    ))
    .unwrap();
    let audit_before = pg.count("SELECT COUNT(*) FROM console_audit");

    let out = tutela_tests::run_ok(c.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(
        out.contains("would remove 1 alerts")
            && out.contains("(1 folded repeats or burst shots, 1 captures)"),
        "{out}"
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM alerts"),
        4,
        "a dry run removes nothing"
    );
    let out = tutela_tests::run_ok(c.cmd().args(["purge"])).unwrap();
    assert!(out.contains("removed 1 alerts"), "{out}");
    assert_eq!(
        pg.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM alerts")
            .unwrap(),
        format!("{recent},{open}"),
        "the old closed alert and its repeat are gone; the recent and the open ones stay"
    );
    assert_eq!(pg.count("SELECT COUNT(*) FROM captures"), 0);
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM console_history WHERE alert_id = {old}"
        )),
        1,
        "the review history is kept"
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM console_audit"),
        audit_before + 1
    );
    assert_eq!(
        pg.query("SELECT actor || ':' || action FROM console_audit ORDER BY id DESC LIMIT 1")
            .unwrap(),
        "retention:retention_purge"
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit c JOIN console_audit p ON p.id = c.id - 1
             WHERE c.prev_hash <> p.hash"
        ),
        0,
        "the purge's entry follows on from the chain"
    );
    let again = tutela_tests::run_ok(c.cmd().args(["purge"])).unwrap();
    assert!(again.contains("removed 0 alerts"), "{again}");
}
