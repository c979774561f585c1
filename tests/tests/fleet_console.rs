//! The fleet and exemption pages of the review console, over real HTTP
//! against the real collector: silent and flagged stations are highlighted
//! for a technician; only the DSL roles add and revoke exemptions, with the
//! CSRF token, and every change lands in the audit log.

use std::time::Duration;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_db::{audit_log, logged};
use tutela_tests::load::now_ms;
use tutela_tests::packs::{self, small_pack, About};
use tutela_tests::web::{self, http};
use tutela_tests::{Agent, Collector, Scratch};

/// Signs in with the test password; returns the session cookie and CSRF token.
fn sign_in(port: u16, name: &str) -> (String, String) {
    web::sign_in(port, name, PASSWORD, "/exemptions")
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
