//! The fleet and exemption pages of the review console, over real HTTP
//! against the real collector: silent and flagged stations are highlighted
//! for a technician; only the DSL roles add and revoke exemptions, with the
//! CSRF token, and every change lands in the audit log. A technician clears
//! a station's flag and revokes a station from the fleet page, and publishes
//! the full shipped en-GB pack from the console.

use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tutela_tests::packs::{self, small_pack, About};
use tutela_tests::web::{self, http, url_encode};
use tutela_tests::{Agent, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

/// Signs in with the test password; returns the session cookie and CSRF token.
fn sign_in(port: u16, name: &str) -> (String, String) {
    web::sign_in(port, name, PASSWORD, "/exemptions")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The console audit log, oldest first: (actor, action, target).
fn audit_log(db: &rusqlite::Connection) -> Vec<(String, String, String)> {
    db.prepare("SELECT actor, action, target FROM console_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Whether `audit` holds an entry by `actor` of `action` on `target`.
fn logged(audit: &[(String, String, String)], actor: &str, action: &str, target: &str) -> bool {
    audit
        .iter()
        .any(|(a, b, c)| a == actor && b == action && c == target)
}

/// Replaces `[fleet]` in collector.toml: school all day, every day.
fn always_school(collector: &Collector) {
    let path = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[fleet]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(
        "[fleet]\nsilent_after_mins = 60\nschool_days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\", \"Sat\", \"Sun\"]\nschool_hours = \"00:00-24:00\"\n",
    );
    std::fs::write(&path, out).unwrap();
}

#[test]
fn fleet_exemptions_rules_and_tokens_pages_per_role() {
    let scratch = Scratch::new("fleet-console");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("dsl.one", "dsl"), ("tech.one", "technician")],
        PASSWORD,
    )
    .unwrap();
    always_school(&collector);
    collector.start().unwrap();

    let mut ids = Vec::new();
    for station in ["Y10-PC01", "Y10-PC02", "Y10-PC03"] {
        let mut agent = Agent::new(scratch.path(station));
        agent.as_station(station);
        agent
            .enrol(&collector.token(&["--group", "year-10"]).unwrap())
            .unwrap();
        ids.push(agent.agent_id());
    }
    // PC01 reported a minute ago; PC02 three hours ago; PC03 is flagged.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let now = now_ms();
    for (id, seen) in [
        (&ids[0], now - 60_000),
        (&ids[1], now - 3 * 3_600_000),
        (&ids[2], now),
    ] {
        db.execute(
            "UPDATE agents SET last_seen_ms = ?2, agent_version = '0.1.0', rules_version = 7, spool_backlog = 4 WHERE agent_id = ?1",
            rusqlite::params![id, seen],
        )
        .unwrap();
    }
    db.execute(
        "UPDATE agents SET flag = 'identity cloned: re-keyed as ag-x' WHERE agent_id = ?1",
        [&ids[2]],
    )
    .unwrap();

    let (tech, tech_csrf) = sign_in(port, "tech.one");
    let fleet = http(port, "GET", "/fleet", &tech, &[]);
    assert_eq!(fleet.status, 200);
    let row = |id: &str| {
        let at = fleet
            .body
            .find(&format!(r#"data-agent="{id}""#))
            .unwrap_or_else(|| panic!("{id} missing:\n{}", fleet.body));
        let start = fleet.body[..at].rfind("<tr").unwrap();
        let end = at + fleet.body[at..].find("</tr>").unwrap();
        fleet.body[start..end].to_owned()
    };
    assert!(
        row(&ids[0]).starts_with("<tr data-agent="),
        "not highlighted: {}",
        row(&ids[0])
    );
    assert!(row(&ids[0]).contains("<td>ok</td>"), "{}", row(&ids[0]));
    assert!(
        row(&ids[1]).contains(r#"class="silent""#),
        "{}",
        row(&ids[1])
    );
    assert!(
        row(&ids[2]).contains(r#"class="flagged""#),
        "{}",
        row(&ids[2])
    );
    assert!(row(&ids[2]).contains("identity cloned"), "{}", row(&ids[2]));
    assert!(row(&ids[0]).contains("Y10-PC01") && row(&ids[0]).contains("year-10"));
    assert!(
        fleet.body.contains("3 stations: 1 silent, 1 flagged"),
        "{}",
        fleet.body
    );

    // A technician sees the exemptions but cannot add one.
    let page = http(port, "GET", "/exemptions", &tech, &[]);
    assert!(!page.body.contains("add-exemption"));
    let add = [
        ("group", "year-10"),
        ("category", "drugs"),
        ("until", "7d"),
        ("reason", "Year 10 PSHE on drugs this week"),
    ];
    let mut form = vec![("csrf", tech_csrf.as_str())];
    form.extend(add);
    assert_eq!(
        http(port, "POST", "/exemptions/add", &tech, &form).status,
        403
    );

    // The DSL adds one (the form without its CSRF token is refused), then revokes it.
    let (dsl, dsl_csrf) = sign_in(port, "dsl.one");
    assert_eq!(
        http(port, "POST", "/exemptions/add", &dsl, &add).status,
        403
    );
    let mut form = vec![("csrf", dsl_csrf.as_str())];
    form.extend(add);
    let r = http(port, "POST", "/exemptions/add", &dsl, &form);
    assert_eq!(r.status, 303, "{}", r.body);
    let page = http(port, "GET", "/exemptions", &dsl, &[]);
    assert!(
        page.body
            .contains(r#"<td>active</td><td>year-10</td><td>category drugs</td>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("Year 10 PSHE on drugs this week"));
    let r = http(
        port,
        "POST",
        "/exemptions/1/revoke",
        &dsl,
        &[("csrf", &dsl_csrf)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = http(port, "GET", "/exemptions", &dsl, &[]);
    assert!(page.body.contains("<td>revoked</td>"), "{}", page.body);
    // A bad end time is explained, not stored.
    let mut form = vec![("csrf", dsl_csrf.as_str())];
    form.extend([
        ("group", "year-10"),
        ("term", "cannabis"),
        ("until", "soon"),
        ("reason", "x"),
    ]);
    let r = http(port, "POST", "/exemptions/add", &dsl, &form);
    assert!(r.body.contains("is not an end time"), "{}", r.body);

    let audit = audit_log(&db);
    let has = |actor: &str, action: &str, target: &str| logged(&audit, actor, action, target);
    assert!(has("tech.one", "denied", "exemptions: add"), "{audit:?}");
    assert!(has("dsl.one", "exemption-add", "exemption:1"), "{audit:?}");
    assert!(
        has("dsl.one", "exemption-revoke", "exemption:1"),
        "{audit:?}"
    );
    assert!(has("dsl.one", "csrf_refused", "console"), "{audit:?}");
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM exemptions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);

    // A technician checks and publishes packs from the console.
    let form_page = http(port, "GET", "/rules/publish", &tech, &[]);
    assert_eq!(form_page.status, 200);
    assert!(form_page.body.contains("publish-form"));
    let post = |action: &str, pack: &str, shadow: bool| {
        let mut form = vec![
            ("csrf", tech_csrf.as_str()),
            ("action", action),
            ("pack", pack),
        ];
        if shadow {
            form.push(("shadow", "on"));
        }
        http(port, "POST", "/rules/publish", &tech, &form)
    };
    let duplicate = pack(1, &["zip gun", "zip gun"]);
    let r = post("check", &duplicate, false);
    assert!(r.body.contains("1 lint errors"), "{}", r.body);
    assert!(r.body.contains("duplicate term"), "{}", r.body);
    let r = post("publish", &duplicate, false);
    assert!(r.body.contains("lint error"), "{}", r.body);
    assert!(!r.body.contains("Rules published"));
    let r = post("publish", &pack(1, &["pipe bomb", "zip gun"]), false);
    assert!(r.body.contains("Published live version 1"), "{}", r.body);
    let r = post("check", &pack(1, &["pipe bomb"]), false);
    assert!(r.body.contains("is not newer than 1"), "{}", r.body);
    let candidate = pack(2, &["zip gun", "ghost gun"]);
    let r = post("check", &candidate, true);
    assert!(r.body.contains("+ weapons/ghost gun"), "{}", r.body);
    assert!(r.body.contains("- weapons/pipe bomb"), "{}", r.body);
    let r = post("publish", &candidate, true);
    assert!(r.body.contains("Published shadow version 2"), "{}", r.body);
    let status = tutela_tests::run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    assert!(
        status.contains("live: 1") && status.contains("shadow: 2"),
        "{status}"
    );
    let fleet = http(port, "GET", "/fleet", &tech, &[]);
    assert!(
        fleet.body.contains("Candidate rules (shadow version 2)"),
        "{}",
        fleet.body
    );
    let published: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'tech.one' AND action = 'rules-publish'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(published, 2);
    // The audit log names the rules each publication added and removed.
    let detail: String = db
        .query_row(
            "SELECT detail FROM console_audit WHERE actor = 'tech.one' AND action = 'rules-publish' AND target = 'rules:console-test:2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        detail,
        "shadow; added 1 rule: weapons/ghost gun; removed 1 rule: weapons/pipe bomb"
    );

    // A technician makes a token in the console, a device enrols with it, then it is revoked.
    let r = http(
        port,
        "POST",
        "/tokens/create",
        &tech,
        &[
            ("csrf", &tech_csrf),
            ("group", "year-9"),
            ("expires", "2h"),
            ("uses", "2"),
            ("label", "ICT 3"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r
        .body
        .find("tutela-agent enrol '")
        .expect("the token is shown")
        + "tutela-agent enrol '".len();
    let token = r.body[at..at + r.body[at..].find('\'').unwrap()].to_owned();
    let device = Agent::new(scratch.path("Y9-PC01"));
    let out = device.enrol(&token).unwrap();
    assert!(out.contains("group year-9"), "{out}");
    let tokens = http(port, "GET", "/tokens", &tech, &[]);
    let row_at = tokens
        .body
        .find("<td>ICT 3</td>")
        .expect("the token is listed");
    let row_start = tokens.body[..row_at].rfind("data-token=\"").unwrap() + "data-token=\"".len();
    let token_id = tokens.body[row_start..row_start + 12].to_owned();
    assert!(
        tokens
            .body
            .contains("<td>valid</td><td>year-9</td><td>1/2</td>"),
        "{}",
        tokens.body
    );
    assert!(
        !tokens.body.contains(&token),
        "the secret is shown only once"
    );
    let r = http(
        port,
        "POST",
        "/tokens/revoke",
        &tech,
        &[("csrf", &tech_csrf), ("id", &token_id)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let tokens = http(port, "GET", "/tokens", &tech, &[]);
    assert!(
        tokens.body.contains("<td>revoked</td><td>year-9</td>"),
        "{}",
        tokens.body
    );
    let refused = Agent::new(scratch.path("Y9-PC02"));
    let out = tutela_tests::run_failing(refused.cmd().args(["enrol", &token]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    let token_audit: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'tech.one' AND action IN ('token-create', 'token-revoke')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(token_audit, 2);
}

/// The console test pack at `version`, with `weapons` phrases.
fn pack(version: u32, weapons: &[&str]) -> String {
    let about = About::new(
        "console-test",
        "Console test pack",
        "A small pack for console tests.",
    );
    small_pack(&about, version, &[packs::weapons(weapons)])
}

/// The shipped en-GB pack.
fn en_gb_pack() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/packs/en-GB.toml"
    ))
    .unwrap()
}

/// The form body `http` sends for `form`.
fn encoded_len(form: &[(&str, &str)]) -> usize {
    form.iter()
        .map(|(k, v)| url_encode(k).len() + url_encode(v).len() + 2)
        .sum()
}

#[test]
fn the_full_en_gb_pack_is_published_from_the_console_and_an_oversized_form_is_explained() {
    let scratch = Scratch::new("console-publish-large");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("tech.one", "technician")],
        PASSWORD,
    )
    .unwrap();
    collector.start().unwrap();
    tutela_tests::wait_for("the console to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let (tech, csrf) = sign_in(port, "tech.one");
    // As a browser sends a textarea: CRLF line ends.
    let publish = |pack: &str| {
        let pack = pack.replace('\n', "\r\n");
        let form = [
            ("csrf", csrf.as_str()),
            ("action", "publish"),
            ("pack", pack.as_str()),
        ];
        (
            encoded_len(&form),
            http(port, "POST", "/rules/publish", &tech, &form),
        )
    };

    // The shipped pack as it is, at whatever version it has reached.
    let shipped = en_gb_pack();
    let v = tutela_rules::Pack::parse(&shipped, "en-GB.toml")
        .unwrap()
        .version;
    let (_, r) = publish(&shipped);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("Published live version {v} of en-GB")),
        "{}",
        r.body
    );

    // A new version of it, with its notes grown past the default 256 KiB form limit.
    let mut next = shipped
        .replacen(
            &format!("\nversion = {v}\n"),
            &format!("\nversion = {}\n", v + 1),
            1,
        )
        .replacen(
            &format!("[[changelog]]\nversion = {v}\n"),
            &format!("[[changelog]]\nversion = {}\ndate = \"2026-11-22\"\nnotes = \"Reviewer notes added.\"\n\n[[changelog]]\nversion = {v}\n", v + 1),
            1,
        );
    for n in 0..2000 {
        next.push_str(&format!(
            "# Reviewer note {n}: checked against the corpus, no change to the terms.\n"
        ));
    }
    let (size, r) = publish(&next);
    assert!(size > 256 * 1024, "the form is {size} bytes");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("Published live version {} of en-GB", v + 1)),
        "{}",
        r.body
    );
    let status = tutela_tests::run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    assert!(status.contains(&format!("live: {}", v + 1)), "{status}");
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let stored: String = db
        .query_row(
            "SELECT pack_toml FROM rule_bundles WHERE shadow = 0 AND version = ?1",
            [v + 1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored, next,
        "the whole pack was stored, line ends normalised"
    );

    // Above 2 MiB the page says what to do instead; nothing is published.
    let mut huge = next.replacen(
        &format!("\nversion = {}\n", v + 1),
        &format!("\nversion = {}\n", v + 2),
        1,
    );
    huge.push_str(&"# padding\n".repeat(120_000));
    let (size, r) = publish(&huge);
    assert!(size > 2 * 1024 * 1024, "the form is {size} bytes");
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 2048 KiB"), "{}", r.body);
    assert!(r.body.contains("tutela-collector rules push"), "{}", r.body);
    let status = tutela_tests::run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    assert!(status.contains(&format!("live: {}", v + 1)), "{status}");

    // Other forms keep the default limit.
    let reason = "x".repeat(300 * 1024);
    let r = http(
        port,
        "POST",
        "/exemptions/add",
        &tech,
        &[("csrf", &csrf), ("reason", &reason)],
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 256 KiB"), "{}", r.body);
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
    let r = http(
        port,
        "POST",
        "/fleet/clear-flag",
        &tech,
        &[("agent", &flagged), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(flag_of(&flagged).is_some());

    // First the confirm page (nothing changes yet), then the change.
    let r = http(
        port,
        "POST",
        "/fleet/clear-flag",
        &tech,
        &[("csrf", &csrf), ("agent", &flagged)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Clear the flag?"), "{}", r.body);
    assert!(r.body.contains("LAB4-PC01"), "{}", r.body);
    assert!(
        r.body.contains(r#"name="confirm" value="yes""#),
        "{}",
        r.body
    );
    assert!(flag_of(&flagged).is_some(), "not before confirming");
    let r = http(
        port,
        "POST",
        "/fleet/clear-flag",
        &tech,
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
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &tech,
        &[("csrf", &csrf), ("agent", &other)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Revoke the station?"), "{}", r.body);
    assert!(!revoked(&other), "not before confirming");
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &tech,
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
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &tech,
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
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &tech,
        &[("csrf", &csrf), ("agent", &flagged)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("2 other identities were re-keyed from this one")
            && r.body.contains("ag-child000001")
            && r.body.contains(r#"name="descendants" value="yes""#),
        "{}",
        r.body
    );
    let r = http(
        port,
        "POST",
        "/fleet/revoke",
        &tech,
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
