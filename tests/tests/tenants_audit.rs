//! Whose audit log an account's own entries go to, on SQLite and on
//! PostgreSQL. An account whose grants span several schools (one grant over
//! two schools, or a grant at each of two) signs in, switches grant and
//! signs out in the trust's log, seen by the trust's auditor and by no
//! school's; a school's account does so in its school's. A school's account
//! refused another school's alert is recorded in its own school's log: the
//! other school's auditor never sees it (nor any of the other school's
//! accounts' entries), its own does.

mod tenants_common;

use tenants_common::{ask, console_with_schools, seed_schools, Db, PASSWORD};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{http, sign_in};
use tutela_tests::{run_ok, Scratch};

/// The audit page rows' account cells: `<td>name</td>` for each entry.
fn actor_cell(name: &str) -> String {
    format!("<td>{name}</td>")
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = console_with_schools(&c, &["north", "south"]);
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    for (account, role, scope) in [
        ("aud-north", "auditor", &["--school", "north"][..]),
        ("aud-south", "auditor", &["--school", "south"][..]),
        ("aud-trust", "auditor", &["--trust"][..]),
        ("dsl-north", "dsl", &["--school", "north"][..]),
        ("tech-south", "technician", &["--school", "south"][..]),
        ("lead-two", "dsl", &["--school", "north"][..]),
        ("two-roles", "dsl", &["--school", "north"][..]),
    ] {
        run_ok(
            c.cmd()
                .args(["user", "add", account, "--role", role])
                .args(scope)
                .arg("--password-file")
                .arg(&password),
        )
        .unwrap();
    }
    // The command line's name in the audit log is no account's: an account
    // `cli` at North would have the command line's entries in North's log.
    let refused = tutela_tests::run_failing(
        c.cmd()
            .args(["user", "add", "cli", "--role", "dsl", "--school", "north"])
            .arg("--password-file")
            .arg(&password),
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("choose another account name"), "{why}");
    // DSL over North and South in one grant; DSL at North and technician
    // at South in two.
    run_ok(c.cmd().args([
        "users", "grant", "lead-two", "--role", "dsl", "--school", "south",
    ]))
    .unwrap();
    run_ok(c.cmd().args([
        "users",
        "grant",
        "two-roles",
        "--role",
        "technician",
        "--school",
        "south",
    ]))
    .unwrap();
    c.start().unwrap();
    let rows = seed_schools(&c, &scratch, &db, port, &["north", "south"]);
    let (north, south) = (&rows[0], &rows[1]);

    // A school's accounts: North's DSL opens North's alert; South's
    // technician asks for North's alert and is refused.
    let dsl = sign_in(port, "dsl-north", PASSWORD, "/queue");
    let r = ask(port, &dsl, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(ask(port, &dsl, "POST", "/logout", &[]).status, 303);
    let tech = sign_in(port, "tech-south", PASSWORD, "/fleet");
    let r = ask(port, &tech, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(r.status, 403, "{}", r.body);

    // Accounts over several schools: sign in, switch, sign out.
    let lead = sign_in(port, "lead-two", PASSWORD, "/queue");
    assert_eq!(ask(port, &lead, "POST", "/logout", &[]).status, 303);
    let two = sign_in(port, "two-roles", PASSWORD, "/grants");
    let switched = ask(port, &two, "POST", "/grants", &[("role", "technician")]);
    assert_eq!(switched.status, 303, "{}", switched.body);
    let cookie = tutela_tests::web::cookie_value(&switched.headers, "tutela_session");
    let page = http(
        port,
        "GET",
        "/grants",
        &format!("tutela_session={cookie}"),
        &[],
    );
    let two = (
        format!("tutela_session={cookie}"),
        tutela_tests::web::csrf(&page.body),
    );
    assert_eq!(ask(port, &two, "POST", "/logout", &[]).status, 303);

    // Where each entry went, straight from the store.
    let school_of = |actor: &str, action: &str| {
        db.one(&format!(
            "SELECT COALESCE(MIN(school), 'none') || '|' || COALESCE(MAX(school), 'none')
             FROM console_audit WHERE actor = '{actor}' AND action = '{action}'"
        ))
    };
    assert_eq!(school_of("dsl-north", "login"), "north|north");
    assert_eq!(school_of("dsl-north", "logout"), "north|north");
    assert_eq!(school_of("dsl-north", "view_alert"), "north|north");
    assert_eq!(
        school_of("tech-south", "denied"),
        "south|south",
        "a refusal of North's alert is South's technician's, in South's log"
    );
    for action in ["login", "logout"] {
        assert_eq!(school_of("lead-two", action), "|", "lead-two {action}");
        assert_eq!(school_of("two-roles", action), "|", "two-roles {action}");
    }
    assert_eq!(school_of("two-roles", "account_grant_switched"), "|");

    // What each auditor's page shows.
    let page_of = |auditor: &str| {
        let me = sign_in(port, auditor, PASSWORD, "/audit");
        let r = ask(port, &me, "GET", "/audit", &[]);
        assert_eq!(r.status, 200, "{auditor}: {}", r.body);
        assert!(r.body.contains("Hash chain intact"), "{}", r.body);
        r.body
    };
    let north_log = page_of("aud-north");
    assert!(north_log.contains(&actor_cell("dsl-north")));
    for other in [
        "tech-south",
        "lead-two",
        "two-roles",
        "aud-south",
        "aud-trust",
    ] {
        assert!(
            !north_log.contains(&actor_cell(other)),
            "North's auditor sees {other}'s entries: {north_log}"
        );
    }
    let south_log = page_of("aud-south");
    assert!(south_log.contains(&actor_cell("tech-south")));
    assert!(south_log.contains(&format!("alert:{}", north.pupil)));
    for other in [
        "dsl-north",
        "lead-two",
        "two-roles",
        "aud-north",
        "aud-trust",
    ] {
        assert!(
            !south_log.contains(&actor_cell(other)),
            "South's auditor sees {other}'s entries: {south_log}"
        );
    }
    let trust_log = page_of("aud-trust");
    for actor in ["dsl-north", "tech-south", "lead-two", "two-roles"] {
        assert!(
            trust_log.contains(&actor_cell(actor)),
            "the trust's auditor sees {actor}'s entries"
        );
    }
    assert!(trust_log.contains("account_grant_switched"));
    // South's alert views stay South's: nobody viewed one, so North's log
    // has no entry naming it.
    assert!(!north_log.contains(&format!("alert:{}<", south.pupil)));
    c.kill9();
}

#[test]
fn on_sqlite_entries_of_accounts_over_several_schools_go_to_the_trust() {
    scenario(None, "tenants-audit-sqlite");
}

#[test]
fn on_postgresql_entries_of_accounts_over_several_schools_go_to_the_trust() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-audit-postgres");
}
