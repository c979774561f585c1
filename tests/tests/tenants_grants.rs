//! Accounts over several schools, on SQLite and on PostgreSQL: `users
//! grant` adds a school to an account's grant (or a grant of another role
//! beside it), `users revoke-grant` takes
//! one away (ending its sessions), `user list` shows them all. A DSL over
//! North and South sees both schools' alerts and stations and makes tokens
//! for either, and is refused every page of West's; once North is taken
//! away it sees South only, and with no school left it sees nothing.

mod tenants_common;

use tenants_common::{
    alert_pages, ask, console_with_schools, leaks, listed, refused, seed_schools, Db, PASSWORD,
};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{csrf, http, sign_in};
use tutela_tests::{run_failing, run_ok, Collector, Scratch};

const THREE: [&str; 3] = ["north", "south", "west"];

/// `tutela-collector users ARGS`' output.
fn grants(c: &Collector, args: &[&str]) -> String {
    run_ok(c.cmd().arg("users").args(args)).unwrap()
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = console_with_schools(&c, &THREE);
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let add = |name: &str, args: &[&str]| {
        run_ok(
            c.cmd()
                .args(["user", "add", name])
                .args(args)
                .arg("--password-file")
                .arg(&password),
        )
        .unwrap()
    };

    // A DSL for North, then South too; a head for West, given a grant of
    // another role over North beside it (one grant per role).
    add("dsl-two", &["--role", "dsl", "--school", "north"]);
    let out = grants(
        &c,
        &["grant", "dsl-two", "--role", "dsl", "--school", "south"],
    );
    assert!(
        out.contains("is now dsl for the schools north, south"),
        "{out}"
    );
    add("dsl-west", &["--role", "dsl", "--school", "west"]);
    add("moved", &["--role", "head", "--school", "west"]);
    let out = grants(
        &c,
        &["grant", "moved", "--role", "dsl", "--school", "north"],
    );
    assert!(
        out.contains("now has the grants dsl: north; head: west"),
        "{out}"
    );
    let unknown = run_failing(c.cmd().args([
        "users", "grant", "dsl-two", "--role", "dsl", "--school", "east",
    ]));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("there is no school \"east\""),
        "{unknown:?}"
    );
    let list = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(
        list.contains("dsl-two\tdsl\tactive\tschools north, south\n")
            && list.contains("moved\tdsl: north; head: west\tactive\n"),
        "{list}"
    );
    c.start().unwrap();

    let rows = seed_schools(&c, &scratch, &db, port, &THREE);
    let (north, south, west) = (&rows[0], &rows[1], &rows[2]);

    // Over North and South: both schools' alerts, stations and tokens.
    let two = sign_in(port, "dsl-two", PASSWORD, "/queue");
    for r in [north, south] {
        for id in [r.pupil, r.report] {
            let page = ask(port, &two, "GET", &format!("/alerts/{id}"), &[]);
            assert_eq!(page.status, 200, "dsl-two opens alert {id}");
        }
    }
    let ids = listed(&ask(port, &two, "GET", "/queue?state=all", &[]).body);
    for id in [north.pupil, north.report, south.pupil, south.report] {
        assert!(ids.contains(&id), "dsl-two's queue lists {id}: {ids:?}");
    }
    let page = ask(port, &two, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert!(
        page.body.contains("value=\"dsl-two\"") && !page.body.contains("value=\"dsl-west\""),
        "assignees of North's alert"
    );
    let fleet = ask(port, &two, "GET", "/fleet", &[]);
    assert!(
        fleet.body.contains(&north.agent) && fleet.body.contains(&south.agent),
        "{}",
        fleet.body
    );
    // Never West's.
    for id in [west.pupil, west.staff, west.report] {
        for (method, path, form) in alert_pages(id) {
            let r = ask(port, &two, method, &path, &form);
            assert!(refused(&r), "dsl-two {method} {path}: {}", r.status);
            assert!(leaks(&r.body, "west", west).is_none(), "dsl-two {path}");
        }
    }
    for path in [
        "/queue?state=all",
        "/queue.csv?state=all",
        "/audit",
        "/fleet",
        "/tokens",
        "/subject-access",
    ] {
        let r = ask(port, &two, "GET", path, &[]);
        if let Some(what) = leaks(&r.body, "west", west) {
            panic!("dsl-two GET {path} shows {what} of West: {}", r.body);
        }
    }
    // Filtered on West's pupil, the queue lists none of West's alerts.
    let ids = listed(&ask(port, &two, "GET", "/queue?state=all&pupil=pupil.west", &[]).body);
    assert!(
        !ids.iter()
            .any(|id| [west.pupil, west.staff, west.report].contains(id)),
        "{ids:?}"
    );
    let export = ask(
        port,
        &two,
        "POST",
        "/subject-access",
        &[("account", "pupil.west")],
    );
    assert!(refused(&export), "subject access: {}", export.status);
    let r = ask(
        port,
        &two,
        "POST",
        "/fleet/revoke",
        &[("agent", &west.agent)],
    );
    assert!(r.status >= 400, "revokes West's station: {}", r.status);
    let r = ask(port, &two, "POST", "/tokens/revoke", &[("id", &west.token)]);
    assert_ne!(r.status, 303, "revokes West's token");
    // Tokens: it chooses among its own schools.
    let tokens = ask(port, &two, "GET", "/tokens", &[]);
    assert!(
        tokens.body.contains("value=\"north\"")
            && tokens.body.contains("value=\"south\"")
            && !tokens.body.contains("value=\"west\""),
        "{}",
        tokens.body
    );
    let make = |school: &str, label: &str| {
        ask(
            port,
            &two,
            "POST",
            "/tokens/create",
            &[
                ("group", "lab-2"),
                ("expires", "24h"),
                ("uses", "2"),
                ("label", label),
                ("school", school),
            ],
        )
    };
    let made = make("south", "two-south");
    assert!(made.body.contains("School south"), "{}", made.body);
    let other = make("west", "two-west");
    assert!(other.body.contains("Choose the school"), "{}", other.body);
    assert_eq!(
        db.one("SELECT COUNT(*) FROM tokens WHERE label = 'two-west'"),
        "0"
    );

    // North taken away: the session ends; a new one sees South only.
    let out = grants(&c, &["revoke-grant", "dsl-two", "--school", "north"]);
    assert!(out.contains("is now dsl for the school south"), "{out}");
    let ended = http(port, "GET", "/queue", &two.0, &[]);
    assert_ne!(ended.status, 200, "the session ended");
    let two = sign_in(port, "dsl-two", PASSWORD, "/queue");
    let r = ask(port, &two, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert!(refused(&r), "North after revoke-grant: {}", r.status);
    let r = ask(port, &two, "GET", &format!("/alerts/{}", south.pupil), &[]);
    assert_eq!(r.status, 200);
    let queue = ask(port, &two, "GET", "/queue?state=all", &[]);
    assert!(
        leaks(&queue.body, "north", north).is_none(),
        "{}",
        queue.body
    );

    // No school left: nothing, until a grant.
    let out = grants(&c, &["revoke-grant", "dsl-two", "--school", "south"]);
    assert!(out.contains("now has no school"), "{out}");
    let list = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(
        list.contains("dsl-two\tdsl\tactive\tno school yet"),
        "{list}"
    );
    let form = http(port, "GET", "/login", "", &[]);
    let cookie = format!(
        "tutela_login={}",
        tutela_tests::web::cookie_value(&form.headers, "tutela_login")
    );
    let login = http(
        port,
        "POST",
        "/login",
        &cookie,
        &[
            ("csrf", &csrf(&form.body)),
            ("name", "dsl-two"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(login.status, 303, "{}", login.body);
    let session = format!(
        "tutela_session={}",
        tutela_tests::web::cookie_value(&login.headers, "tutela_session")
    );
    for path in [
        format!("/alerts/{}", north.pupil),
        format!("/alerts/{}", south.pupil),
        "/queue?state=all".to_owned(),
        "/fleet".to_owned(),
    ] {
        let r = http(port, "GET", &path, &session, &[]);
        assert_eq!(r.status, 403, "{path} with no school: {}", r.body);
        assert!(r.body.contains("dsl-two"), "the page names the account");
    }

    // Each change is audited.
    assert_eq!(
        db.one(
            "SELECT COUNT(*) FROM console_audit WHERE target = 'user:dsl-two'
             AND action = 'account_grant_revoked'"
        ),
        "2"
    );
    c.kill9();
}

#[test]
fn on_sqlite_an_account_over_two_schools_sees_both_and_never_a_third() {
    scenario(None, "tenants-grants-sqlite");
}

#[test]
fn on_postgresql_an_account_over_two_schools_sees_both_and_never_a_third() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-grants-postgres");
}
