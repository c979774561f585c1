//! Schools as tenants, on SQLite and on PostgreSQL: one collector serves two
//! schools (`schools add`), each with its enrolment token (`token create
//! --school`), an agent, alerts with captures, a pupil's report and audit
//! entries. Every role granted over one school (`users grant --school`)
//! asks for every page of the other school's alerts, captures, exports,
//! audit entries, stations, tokens and subject access and is refused (403
//! or 404) or shown none of it, while it sees its own school's; a
//! trust-wide DSL sees both schools; technicians never see a capture.

mod tenants_common;

use tenants_common::{
    alert_pages, ask, leaks, listed, refused, report, send, Db, Rows, PASSWORD, ROLES, SCHOOLS,
};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{csrf, http, sign_in};
use tutela_tests::{free_port, run_ok, Agent, Scratch};

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = free_port();
    c.set_section(
        "console",
        &format!("listen = \"127.0.0.1:{port}\"\nstaff_pattern = \"t_*\""),
    )
    .unwrap();

    // Two schools; a store without schools has the default one.
    for (id, title) in [("north", "North Primary"), ("south", "South Academy")] {
        let out = run_ok(c.cmd().args(["schools", "add", id, "--name", title])).unwrap();
        assert!(out.contains(&format!("added school {id}")), "{out}");
    }
    let schools = run_ok(c.cmd().args(["schools", "list"])).unwrap();
    assert!(
        schools.contains("default\t") && schools.contains("north\tNorth Primary"),
        "{schools}"
    );
    let unknown = tutela_tests::run_failing(c.cmd().args(["token", "create", "--school", "west"]));
    assert!(
        !unknown.status.success()
            && String::from_utf8_lossy(&unknown.stderr).contains("there is no school \"west\""),
        "{unknown:?}"
    );

    // Fail closed: with several schools, a new account must say which
    // school it is for, or that it is for the trust.
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let password = password.to_str().unwrap();
    let user_add = |args: &[&str]| {
        let mut cmd = c.cmd();
        cmd.args(["user", "add"])
            .args(args)
            .args(["--password-file", password]);
        cmd
    };
    let unscoped = tutela_tests::run_failing(&mut user_add(&["newbie", "--role", "dsl"]));
    let why = String::from_utf8_lossy(&unscoped.stderr);
    assert!(
        !unscoped.status.success()
            && why.contains("pass --school <id>")
            && why.contains("--trust")
            && why.contains("nothing was changed"),
        "{unscoped:?}"
    );
    // Every role in each school (one made trust-wide, then granted its
    // school), and a trust-wide DSL, technician and auditor.
    for school in SCHOOLS {
        for role in ROLES {
            let account = format!("{role}-{school}");
            if role == "head" {
                run_ok(&mut user_add(&[&account, "--role", role, "--trust"])).unwrap();
                let out = run_ok(c.cmd().args([
                    "users", "grant", &account, "--role", role, "--school", school,
                ]))
                .unwrap();
                assert!(out.contains(&format!("for the school {school}")), "{out}");
            } else {
                let out = run_ok(&mut user_add(&[
                    &account, "--role", role, "--school", school,
                ]))
                .unwrap();
                assert!(
                    out.contains(&format!(
                        "created console account {account} ({role}) for the school {school}"
                    )),
                    "{out}"
                );
            }
        }
    }
    for role in ["dsl", "technician", "auditor"] {
        run_ok(&mut user_add(&[
            &format!("{role}-trust"),
            "--role",
            role,
            "--trust",
        ]))
        .unwrap();
    }
    let accounts = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(
        !accounts.contains("newbie")
            && accounts.contains("dsl-trust\tdsl\tactive\n")
            && accounts.contains("head-south\thead\tactive\tschool south"),
        "{accounts}"
    );
    c.start().unwrap();

    // Each school's token enrols its agent into that school.
    let mut rows = Vec::new();
    for school in SCHOOLS {
        let token = c.token(&["--school", school, "--group", "lab"]).unwrap();
        let mut agent = Agent::new(scratch.path(&format!("agent-{school}")));
        agent.as_station(&format!("{school}-PC01"));
        agent.on_machine(&(if school == "north" { "a" } else { "b" }).repeat(64));
        agent.enrol(&token).unwrap();
        let agent_id = agent.agent_id();
        assert_eq!(
            db.one(&format!(
                "SELECT school FROM agents WHERE agent_id = '{agent_id}'"
            )),
            school,
            "the agent enrolled with {school}'s token belongs to {school}"
        );
        send(&agent.dir, school);
        report(port, school);
        let id = |user: &str, source: &str| {
            db.id(&format!(
                "SELECT id FROM alerts WHERE \"user\" = '{user}' AND source = '{source}'"
            ))
        };
        let token_id = db.one(&format!(
            "SELECT substr({}, 1, 12) FROM tokens WHERE school = '{school}'",
            if pg.is_some() {
                "encode(secret_hash, 'hex')"
            } else {
                "lower(hex(secret_hash))"
            }
        ));
        rows.push(Rows {
            pupil: id(&format!("pupil.{school}"), "typed"),
            staff: id(&format!("t_{school}"), "typed"),
            report: id(&format!("pupil.{school}"), "pupil_report"),
            token: token_id,
            agent: agent_id,
        });
        // Alerts take their agent's school; the report its form's.
        assert_eq!(
            db.one(&format!(
                "SELECT COUNT(*) FROM alerts WHERE school = '{school}'"
            )),
            "3"
        );
    }

    // Each school's DSL opens its pupil's alert (an audit entry of that
    // school); the trust DSL opens both and lets technicians see the
    // category-only queue.
    let trust_dsl = sign_in(port, "dsl-trust", PASSWORD, "/queue");
    for (school, r) in SCHOOLS.iter().zip(&rows) {
        let dsl = sign_in(port, &format!("dsl-{school}"), PASSWORD, "/queue");
        let own = ask(port, &dsl, "GET", &format!("/alerts/{}", r.pupil), &[]);
        assert_eq!(own.status, 200, "{school}'s DSL opens its alert");
        assert!(own.body.contains(&format!("SECRET-{school}")));
        for id in [r.pupil, r.staff, r.report] {
            let seen = ask(port, &trust_dsl, "GET", &format!("/alerts/{id}"), &[]);
            let expected = if id == r.staff { 404 } else { 200 };
            assert_eq!(seen.status, expected, "the trust DSL and alert {id}");
        }
        // An alert is assigned only to reviewers of its school or the trust.
        let other = if *school == "north" { "south" } else { "north" };
        let page = ask(
            port,
            &trust_dsl,
            "GET",
            &format!("/alerts/{}", r.pupil),
            &[],
        );
        assert!(
            page.body.contains(&format!("value=\"dsl-{school}\""))
                && page.body.contains("value=\"dsl-trust\"")
                && !page.body.contains(&format!("value=\"dsl-{other}\"")),
            "assignees of {school}'s alert"
        );
        let assign = |who: &str| {
            ask(
                port,
                &trust_dsl,
                "POST",
                &format!("/alerts/{}/assign", r.pupil),
                &[("assignee", who)],
            )
            .status
        };
        assert_eq!(assign(&format!("dsl-{other}")), 400);
        assert_eq!(assign(&format!("dsl-{school}")), 303);
    }
    let settings = http(port, "GET", "/settings", &trust_dsl.0, &[]);
    assert_eq!(settings.status, 200);
    let changed = http(
        port,
        "POST",
        "/settings",
        &trust_dsl.0,
        &[
            ("csrf", &csrf(&settings.body)),
            ("technician_queue", "category-only"),
        ],
    );
    assert_eq!(changed.status, 303, "{}", changed.body);

    // Every role of each school against the other school.
    for (mine, theirs) in [(0, 1), (1, 0)] {
        let (school, other) = (SCHOOLS[mine], SCHOOLS[theirs]);
        let (own, foreign) = (&rows[mine], &rows[theirs]);
        for role in ROLES {
            let account = format!("{role}-{school}");
            let page = if role == "auditor" {
                "/audit"
            } else {
                "/fleet"
            };
            let page = if role == "technician" { "/fleet" } else { page };
            let session = sign_in(port, &account, PASSWORD, page);
            for id in [foreign.pupil, foreign.staff, foreign.report] {
                for (method, path, form) in alert_pages(id) {
                    let r = ask(port, &session, method, &path, &form);
                    assert!(
                        refused(&r),
                        "{account} {method} {path}: {} {}",
                        r.status,
                        r.body
                    );
                    assert!(leaks(&r.body, other, foreign).is_none(), "{account} {path}");
                }
            }
            for path in [
                "/queue",
                "/queue?state=all",
                "/queue?fragment=1&state=all",
                "/queue.csv?state=all",
                "/rules",
                "/audit",
                &format!("/audit?actor=dsl-{other}"),
                "/fleet",
                "/tokens",
                "/subject-access",
            ] {
                let r = ask(port, &session, "GET", path, &[]);
                if let Some(what) = leaks(&r.body, other, foreign) {
                    panic!("{account} GET {path} shows {what} of {other}: {}", r.body);
                }
            }
            // Filtered on the other school's pupil, the queue lists nothing.
            let filtered = ask(
                port,
                &session,
                "GET",
                &format!("/queue?state=all&pupil=pupil.{other}"),
                &[],
            );
            for body in [
                &filtered.body,
                &ask(port, &session, "GET", "/queue?state=all", &[]).body,
            ] {
                let ids = listed(body);
                assert!(
                    ids.iter()
                        .all(|id| [own.pupil, own.staff, own.report].contains(id)),
                    "{account} lists {ids:?}, not only its school's alerts"
                );
            }
            // The queue's newest id is its own school's, not the other's.
            let poll = ask(port, &session, "GET", "/queue?fragment=1&state=all", &[]);
            if poll.status == 200 {
                let json: serde_json::Value = serde_json::from_str(&poll.body).unwrap();
                assert_eq!(
                    json["max_id"].as_i64(),
                    Some(own.pupil.max(own.staff).max(own.report)),
                    "{account}"
                );
            }
            let export = ask(
                port,
                &session,
                "POST",
                "/subject-access",
                &[("account", &format!("pupil.{other}"))],
            );
            assert!(
                refused(&export),
                "{account} subject access: {}",
                export.status
            );
            assert_ne!(export.header("content-type"), Some("application/zip"));
            for path in ["/fleet/revoke", "/fleet/clear-flag"] {
                let agent = db.one(&format!(
                    "SELECT agent_id FROM agents WHERE school = '{other}'"
                ));
                let r = ask(port, &session, "POST", path, &[("agent", &agent)]);
                assert!(r.status >= 400, "{account} {path}: {}", r.status);
            }
            let revoke = ask(
                port,
                &session,
                "POST",
                "/tokens/revoke",
                &[("id", &foreign.token)],
            );
            assert_ne!(revoke.status, 303, "{account} revokes {other}'s token");
            // What the school's accounts may not change for every school.
            for path in ["/settings", "/rules/publish"] {
                let r = ask(port, &session, "GET", path, &[]);
                if role == "dsl" && path == "/settings" {
                    // Its own school's settings only.
                    assert_eq!(r.status, 200, "{account} {path}");
                    assert!(
                        r.body.contains(&format!("Save {school}"))
                            && !r.body.contains(&format!("Save {other}"))
                            && !r.body.contains("settings-form"),
                        "{account} {path}: {}",
                        r.body
                    );
                } else {
                    assert!(refused(&r), "{account} {path}: {}", r.status);
                }
            }
            let trust_setting = ask(
                port,
                &session,
                "POST",
                "/settings",
                &[("technician_queue", "none")],
            );
            assert!(refused(&trust_setting), "{account} changes a trust setting");
            let foreign_setting = ask(
                port,
                &session,
                "POST",
                "/settings/school",
                &[
                    ("school", other),
                    ("time_zone", "UTC"),
                    ("retention_months", "1"),
                ],
            );
            assert!(
                refused(&foreign_setting),
                "{account} changes {other}'s settings"
            );

            // Its own school: the reviewing roles see their alerts; the
            // technician and auditor none, nor any capture.
            let sees = matches!(role, "dsl" | "deputy-dsl" | "head");
            let id = if role == "head" { own.staff } else { own.pupil };
            let r = ask(port, &session, "GET", &format!("/alerts/{id}"), &[]);
            assert_eq!(
                r.status == 200,
                sees,
                "{account} on its own alert: {}",
                r.status
            );
            if sees {
                assert!(r.body.contains(&format!("SECRET-{school}")));
            }
            if role == "auditor" {
                let log = ask(port, &session, "GET", "/audit", &[]);
                assert!(
                    log.body.contains(&format!("dsl-{school}")),
                    "the auditor sees its school's entries"
                );
            }
            if role == "technician" {
                let capture = ask(
                    port,
                    &session,
                    "GET",
                    &format!("/alerts/{}/capture.jpg", own.pupil),
                    &[],
                );
                assert!(refused(&capture), "{account}: no capture");
                let fleet = ask(port, &session, "GET", "/fleet", &[]);
                assert!(fleet.body.contains(&own.agent), "{}", fleet.body);
            }
        }
    }

    // Trust-wide: the DSL's queue lists both schools' pupils; the auditor
    // sees both schools' entries; the technician never a capture.
    let queue = http(port, "GET", "/queue?state=all", &trust_dsl.0, &[]);
    for school in SCHOOLS {
        assert!(
            queue.body.contains(&format!("pupil.{school}")),
            "trust queue"
        );
    }
    let auditor = sign_in(port, "auditor-trust", PASSWORD, "/audit");
    let log = ask(port, &auditor, "GET", "/audit", &[]);
    for school in SCHOOLS {
        assert!(log.body.contains(&format!("dsl-{school}")), "trust audit");
    }
    let technician = sign_in(port, "technician-trust", PASSWORD, "/fleet");
    for r in &rows {
        let capture = ask(
            port,
            &technician,
            "GET",
            &format!("/alerts/{}/capture.jpg", r.pupil),
            &[],
        );
        assert!(refused(&capture), "the trust technician: no capture");
    }
    // Tokens made in the console: a trust-wide account chooses the school
    // (one that exists); a school's account makes its own school's,
    // whatever the form says.
    let page = ask(port, &technician, "GET", "/tokens", &[]);
    assert!(
        page.body.contains("<select name=\"school\"")
            && page.body.contains("value=\"north\"")
            && page.body.contains("value=\"south\""),
        "{}",
        page.body
    );
    let make = |session: &(String, String), school: Option<&str>, label: &str| {
        let mut form = vec![
            ("group", "lab-2"),
            ("expires", "24h"),
            ("uses", "2"),
            ("label", label),
        ];
        form.extend(school.map(|s| ("school", s)));
        ask(port, session, "POST", "/tokens/create", &form)
    };
    let made = make(&technician, Some("south"), "trust-made");
    assert!(
        made.status == 200 && made.body.contains("School south"),
        "{}",
        made.body
    );
    for (school, label) in [(Some("west"), "west-made"), (None, "unnamed-made")] {
        let refused = make(&technician, school, label);
        assert!(
            refused.body.contains("Choose the school"),
            "{}",
            refused.body
        );
        assert_eq!(
            db.one(&format!(
                "SELECT COUNT(*) FROM tokens WHERE label = '{label}'"
            )),
            "0"
        );
    }
    let north_technician = sign_in(port, "technician-north", PASSWORD, "/fleet");
    let page = ask(port, &north_technician, "GET", "/tokens", &[]);
    assert!(!page.body.contains("name=\"school\""), "{}", page.body);
    let made = make(&north_technician, Some("south"), "north-made");
    assert!(
        made.status == 200 && made.body.contains("School north"),
        "{}",
        made.body
    );
    for (label, school) in [("trust-made", "south"), ("north-made", "north")] {
        assert_eq!(
            db.one(&format!(
                "SELECT school FROM tokens WHERE label = '{label}'"
            )),
            school,
            "the token {label}"
        );
    }

    // Entries about an alert are its school's, whoever acted: the trust
    // DSL's views of each school's alerts are that school's entries, and
    // that school's auditor sees them; sign-ins stay the actor's (trust).
    for (school, r) in SCHOOLS.iter().zip(&rows) {
        for id in [r.pupil, r.report] {
            assert_eq!(
                db.one(&format!(
                    "SELECT school FROM console_audit WHERE actor = 'dsl-trust'
                     AND action = 'view_alert' AND target = 'alert:{id}' ORDER BY id LIMIT 1"
                )),
                *school,
                "the trust DSL's view of alert {id}"
            );
        }
        let auditor = sign_in(port, &format!("auditor-{school}"), PASSWORD, "/audit");
        let log = ask(port, &auditor, "GET", "/audit?actor=dsl-trust", &[]);
        assert!(
            log.body.contains(&format!("alert:{}<", r.pupil)),
            "{school}'s auditor sees the trust DSL's view of its alert: {}",
            log.body
        );
        let other = &rows[usize::from(*school == "north")];
        assert!(
            !log.body.contains(&format!("alert:{}<", other.pupil)),
            "{school}'s auditor does not see views of the other school's alert"
        );
    }
    assert_eq!(
        db.one(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl-trust' AND action = 'login' AND school <> ''"
        ),
        "0",
        "a trust account's sign-ins are trust entries"
    );
    // The audit chain holds with entries of every school in it.
    let chain = ask(port, &auditor, "GET", "/audit", &[]);
    assert!(chain.body.contains("Hash chain intact"), "{}", chain.body);
    c.kill9();
}

#[test]
fn on_sqlite_every_role_of_one_school_is_refused_the_other_schools_data() {
    scenario(None, "tenants-sqlite");
}

#[test]
fn on_postgresql_every_role_of_one_school_is_refused_the_other_schools_data() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-postgres");
}
