//! An account with a different role at different schools, on SQLite and on
//! PostgreSQL: DSL at North and technician at South. It acts under one
//! grant at a time: as North's DSL it sees North's alerts and captures and
//! none of South's; switched to South's technician it sees South's Fleet
//! but no alert or capture of either school, and North's DSL pages are
//! refused until it switches back. Switches are audited; a role the account
//! does not hold cannot be switched to; revoking one grant ends its
//! sessions and leaves the other.

mod tenants_common;

use tenants_common::{
    alert_pages, ask, console_with_schools, leaks, refused, seed_schools, Db, Rows, PASSWORD,
};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{cookie_value, csrf, http, sign_in, Reply};
use tutela_tests::{run_ok, Scratch};

/// Signs `name` in; the sign-in's answer (where it sends the browser) and
/// the session cookie.
fn sign_in_raw(port: u16, name: &str) -> (Reply, String) {
    let form = http(port, "GET", "/login", "", &[]);
    let cookie = format!(
        "tutela_login={}",
        cookie_value(&form.headers, "tutela_login")
    );
    let r = http(
        port,
        "POST",
        "/login",
        &cookie,
        &[
            ("csrf", &csrf(&form.body)),
            ("name", name),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "sign-in of {name}: {}", r.body);
    let session = format!(
        "tutela_session={}",
        cookie_value(&r.headers, "tutela_session")
    );
    (r, session)
}

/// Switches `session` to its grant of `role`.
fn switch(port: u16, session: &(String, String), role: &str) -> Reply {
    ask(port, session, "POST", "/grants", &[("role", role)])
}

/// Switches `session` to its grant of `role`: the switch's answer and the
/// new session (cookie, CSRF token) it rotated to. The old cookie and the
/// old CSRF token are refused from then on; the new ones work.
fn switch_rotated(port: u16, old: &(String, String), role: &str) -> (Reply, (String, String)) {
    let r = switch(port, old, role);
    assert_eq!(r.status, 303, "switch to {role}: {}", r.body);
    let cookie = format!(
        "tutela_session={}",
        cookie_value(&r.headers, "tutela_session")
    );
    assert_ne!(cookie, old.0, "a switch issues a new session token");
    let page = http(port, "GET", "/grants", &cookie, &[]);
    assert_eq!(page.status, 200, "the new session works: {}", page.body);
    let new = (cookie, csrf(&page.body));
    assert_ne!(new.1, old.1, "a switch issues a new CSRF token");
    // The old cookie is signed out at once, whatever it asks.
    for path in ["/grants", "/fleet", "/queue"] {
        let stale = http(port, "GET", path, &old.0, &[]);
        assert_eq!(stale.status, 303, "old cookie on {path}: {}", stale.body);
        assert_eq!(stale.header("location"), Some("/login"), "{path}");
    }
    assert_eq!(
        ask(port, old, "POST", "/grants", &[("role", "dsl")]).status,
        303,
        "the old session's switch goes to sign-in"
    );
    // The old CSRF token with the new cookie: a forged form, refused.
    let forged = ask(
        port,
        &(new.0.clone(), old.1.clone()),
        "POST",
        "/grants",
        &[("role", role)],
    );
    assert_eq!(forged.status, 403, "the old CSRF token: {}", forged.body);
    (r, new)
}

/// Every page of alert `id` is refused to `session` and shows nothing of
/// `school`.
fn all_refused(port: u16, session: &(String, String), id: i64, school: &str, rows: &Rows) {
    for (method, path, form) in alert_pages(id) {
        let r = ask(port, session, method, &path, &form);
        assert!(refused(&r), "{method} {path}: {}", r.status);
        assert!(leaks(&r.body, school, rows).is_none(), "{path}: {}", r.body);
    }
}

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = console_with_schools(&c, &["north", "south"]);
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    run_ok(
        c.cmd()
            .args([
                "user",
                "add",
                "two-roles",
                "--role",
                "dsl",
                "--school",
                "north",
            ])
            .arg("--password-file")
            .arg(&password),
    )
    .unwrap();
    let out = run_ok(c.cmd().args([
        "users",
        "grant",
        "two-roles",
        "--role",
        "technician",
        "--school",
        "south",
    ]))
    .unwrap();
    assert!(
        out.contains("now has the grants dsl: north; technician: south"),
        "{out}"
    );
    let list = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(
        list.contains("two-roles\tdsl: north; technician: south\tactive\n"),
        "{list}"
    );
    c.start().unwrap();

    let rows = seed_schools(&c, &scratch, &db, port, &["north", "south"]);
    let (north, south) = (&rows[0], &rows[1]);

    // Signing in shows the account's grants; it acts as North's DSL first.
    let (login, cookie) = sign_in_raw(port, "two-roles");
    assert_eq!(login.header("location"), Some("/grants"));
    let page = http(port, "GET", "/grants", &cookie, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Acting under this now")
            && page.body.contains("Act as technician")
            && page.body.contains("north")
            && page.body.contains("south"),
        "{}",
        page.body
    );
    let me = (cookie, csrf(&page.body));

    // As North's DSL: North's alerts and its capture, none of South's.
    let queue = ask(port, &me, "GET", "/queue?state=all", &[]);
    assert_eq!(queue.status, 200);
    assert!(
        queue.body.contains("Switch role") && queue.body.contains("(dsl at north)"),
        "the header says which grant and offers the switch"
    );
    assert!(
        leaks(&queue.body, "south", south).is_none(),
        "{}",
        queue.body
    );
    let alert = ask(port, &me, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(alert.status, 200);
    assert!(alert.body.contains("SECRET-north"));
    let reveal = ask(
        port,
        &me,
        "POST",
        &format!("/alerts/{}/reveal", north.pupil),
        &[("reason", "checking the context of the alert")],
    );
    assert!(reveal.status < 400, "reveal: {}", reveal.status);
    let capture = ask(
        port,
        &me,
        "GET",
        &format!("/alerts/{}/capture.jpg", north.pupil),
        &[],
    );
    assert_eq!(capture.status, 200, "North's DSL sees North's capture");
    for id in [south.pupil, south.staff, south.report] {
        all_refused(port, &me, id, "south", south);
    }
    let fleet = ask(port, &me, "GET", "/fleet", &[]);
    assert!(
        fleet.body.contains(&north.agent) && !fleet.body.contains(&south.agent),
        "North's DSL sees North's stations only"
    );

    // A role the account does not hold, or a form without the session's
    // token: refused, and it still acts as North's DSL.
    assert_eq!(switch(port, &me, "head").status, 403);
    let forged = http(port, "POST", "/grants", &me.0, &[("role", "technician")]);
    assert_eq!(forged.status, 403, "a switch without the CSRF token");
    let still = ask(port, &me, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(still.status, 200);

    // Switched to South's technician: South's Fleet, never an alert or a
    // capture of either school; North's DSL pages are refused.
    let (switched, me) = switch_rotated(port, &me, "technician");
    assert_eq!(switched.header("location"), Some("/fleet"));
    let fleet = ask(port, &me, "GET", "/fleet", &[]);
    assert_eq!(fleet.status, 200);
    assert!(
        fleet.body.contains(&south.agent) && !fleet.body.contains(&north.agent),
        "South's technician sees South's stations only: {}",
        fleet.body
    );
    assert!(fleet.body.contains("(technician at south)"));
    for (school, r) in [("north", north), ("south", south)] {
        for id in [r.pupil, r.staff, r.report] {
            all_refused(port, &me, id, school, r);
        }
    }
    for path in [
        "/queue?state=all",
        "/queue.csv?state=all",
        "/subject-access",
        "/rules",
    ] {
        let r = ask(port, &me, "GET", path, &[]);
        // Refused, or sent on to a page it may see.
        assert_ne!(r.status, 200, "technician {path}: {}", r.body);
        assert!(leaks(&r.body, "north", north).is_none(), "{path}");
        assert!(leaks(&r.body, "south", south).is_none(), "{path}");
    }

    // Back to North's DSL: North's alert again, under yet another token; a
    // capture revealed before the switches must be revealed again (the
    // reveal belonged to the old session).
    let (_, me) = switch_rotated(port, &me, "dsl");
    let back = ask(port, &me, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(back.status, 200);
    let capture = format!("/alerts/{}/capture.jpg", north.pupil);
    assert_eq!(ask(port, &me, "GET", &capture, &[]).status, 403);
    let reveal = ask(
        port,
        &me,
        "POST",
        &format!("/alerts/{}/reveal", north.pupil),
        &[("reason", "checking the context again")],
    );
    assert!(reveal.status < 400, "reveal: {}", reveal.status);
    assert_eq!(ask(port, &me, "GET", &capture, &[]).status, 200);

    // Both switches are in the audit log, by the account; the refused one
    // as a refusal.
    assert_eq!(
        db.one(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'two-roles'
             AND action = 'account_grant_switched'"
        ),
        "2"
    );
    assert_eq!(
        db.one(
            "SELECT detail FROM console_audit WHERE actor = 'two-roles'
             AND action = 'account_grant_switched' ORDER BY id LIMIT 1"
        ),
        "from=dsl; to=technician"
    );
    assert_eq!(
        db.one(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'two-roles'
             AND action = 'denied' AND target = 'grant head'"
        ),
        "1"
    );

    // South's technician grant revoked: the session ends; the account is
    // North's DSL only, signed in straight to the queue.
    let out = run_ok(c.cmd().args([
        "users",
        "revoke-grant",
        "two-roles",
        "--school",
        "south",
        "--role",
        "technician",
    ]))
    .unwrap();
    assert!(out.contains("is now dsl for the school north"), "{out}");
    let ended = http(port, "GET", "/queue", &me.0, &[]);
    assert_ne!(ended.status, 200, "the session ended");
    let (login, _) = sign_in_raw(port, "two-roles");
    assert_eq!(login.header("location"), Some("/queue"));
    let me = sign_in(port, "two-roles", PASSWORD, "/queue");
    let queue = ask(port, &me, "GET", "/queue?state=all", &[]);
    assert!(!queue.body.contains("Switch role"), "one grant: no switch");
    let r = ask(port, &me, "GET", &format!("/alerts/{}", north.pupil), &[]);
    assert_eq!(r.status, 200);
    assert!(refused(&switch(port, &me, "technician")));
    let fleet = ask(port, &me, "GET", "/fleet", &[]);
    assert!(!fleet.body.contains(&south.agent));
    let list = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(
        list.contains("two-roles\tdsl\tactive\tschool north\n"),
        "{list}"
    );
    c.kill9();
}

#[test]
fn on_sqlite_an_account_acts_under_one_of_its_grants_at_a_time() {
    scenario(None, "tenants-roles-sqlite");
}

#[test]
fn on_postgresql_an_account_acts_under_one_of_its_grants_at_a_time() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-roles-postgres");
}
