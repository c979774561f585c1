//! Console accounts over real HTTP against the real collector: failed
//! sign-ins lock an account, `user unlock` lifts the lock, `user passwd`
//! replaces the password and ends sessions, `user disable` stops sign-in;
//! every failed sign-in gets the same answer; over-long account names and
//! reasons are refused before the audit log; forwarded addresses count only
//! from the trusted proxy.

use std::io::Write;
use std::process::Stdio;

use tutela_tests::console_client::{started, wait_for_port, Endpoint, Response, PASSWORD};
use tutela_tests::console_db::{audit_details, audit_log, count, insert_alert, open_db};
use tutela_tests::{run_failing, run_ok, Collector, Scratch};

const NEW_PASSWORD: &str = "a different long passphrase";

/// `user passwd NAME` with the password on standard input.
fn passwd(collector: &Collector, name: &str, password: &str) -> std::process::Output {
    let mut child = collector
        .cmd()
        .args(["user", "passwd", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn user_list(collector: &Collector) -> String {
    run_ok(collector.cmd().args(["user", "list"])).unwrap()
}

#[test]
fn a_locked_account_is_unlocked_by_the_cli_and_signs_in_again() {
    let scratch = Scratch::new("console-accounts");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    let http = Endpoint::Http(port);

    // Five wrong passwords in a row lock the account.
    for attempt in 1..=4 {
        let r = http.login("dsl1", "not the password at all");
        assert_eq!(r.status, 401, "attempt {attempt}: {r:?}");
    }
    let locked = http.login("dsl1", "not the password at all");
    assert_eq!(locked.status, 401, "{locked:?}");
    assert!(locked.body.contains("locked"), "{}", locked.body);
    // Locked: even the right password is refused, and no session is made.
    let still = http.login("dsl1", PASSWORD);
    assert_eq!(still.status, 401, "{still:?}");
    assert!(still.set_cookie("tutela_session").is_none());
    let list = user_list(&collector);
    assert!(
        list.lines().any(|l| l.starts_with("dsl1\tdsl\tlocked")),
        "{list}"
    );

    // The CLI lifts the lock; the right password then opens a session.
    let out = run_ok(collector.cmd().args(["user", "unlock", "dsl1"])).unwrap();
    assert!(out.contains("dsl1 unlocked"), "{out}");
    assert!(
        user_list(&collector).contains("dsl1\tdsl\tactive"),
        "{}",
        user_list(&collector)
    );
    let ok = http.login("dsl1", PASSWORD);
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.header("location"), Some("/queue"));
    let session = ok
        .cookie_value("tutela_session")
        .expect("a session cookie after sign-in");
    let queue = http.get("/queue", &[("tutela_session", &session)]);
    assert_eq!(queue.status, 200, "{queue:?}");
    assert!(queue.body.contains("Review queue"));

    // A new password: the old session ends, the old password stops working.
    let out = passwd(&collector, "dsl1", NEW_PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = http.get("/queue", &[("tutela_session", &session)]);
    assert_eq!(ended.status, 303, "the old session ended: {ended:?}");
    assert_eq!(ended.header("location"), Some("/login"));
    assert_eq!(http.login("dsl1", PASSWORD).status, 401);
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);
    // A short password is refused and changes nothing.
    let short = passwd(&collector, "dsl1", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);

    // Disabled: the right password no longer signs in; enabled again, it does.
    run_ok(collector.cmd().args(["user", "disable", "dsl1"])).unwrap();
    assert!(user_list(&collector).contains("dsl1\tdsl\tdisabled"));
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 401);
    run_ok(collector.cmd().args(["user", "enable", "dsl1"])).unwrap();
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);

    // Unknown accounts are named in the error.
    let unknown = run_failing(collector.cmd().args(["user", "unlock", "nobody"]));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no console account named \"nobody\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // Every account change by the CLI is in the audit log.
    let log = audit_log(&open_db(&collector));
    for action in [
        "account_unlocked",
        "password_reset",
        "account_disabled",
        "account_enabled",
    ] {
        assert!(
            log.iter()
                .any(|(actor, a, target)| actor == "cli" && a == action && target == "user:dsl1"),
            "{action} missing from the audit log: {log:?}"
        );
    }
    assert!(log
        .iter()
        .any(|(actor, a, _)| actor == "dsl1" && a == "login_failed"));
}

#[test]
fn every_failed_sign_in_gets_the_same_answer_and_the_audit_log_the_true_reason() {
    let (_scratch, collector, http) = started(
        "console-login-oracle",
        &[("dsl1", "dsl"), ("dsl2", "dsl"), ("dsl3", "dsl")],
    );
    run_ok(collector.cmd().args(["user", "disable", "dsl3"])).unwrap();
    for _ in 0..5 {
        assert_eq!(http.login("dsl2", "not the password at all").status, 401);
    }
    assert!(user_list(&collector).contains("dsl2\tdsl\tlocked"));

    // The form's own CSRF token differs per answer; everything else must not.
    let answer = |name: &str, password: &str| -> (u16, String) {
        let r = http.login(name, password);
        assert!(r.set_cookie("tutela_session").is_none(), "{name}: {r:?}");
        let token = r
            .cookie_value("tutela_login")
            .expect("a fresh form after a failure");
        (r.status, r.body.replace(&token, "TOKEN"))
    };
    let cases = [
        ("unknown account", answer("nobody.here", PASSWORD)),
        ("wrong password", answer("dsl1", "not the password at all")),
        ("locked, right password", answer("dsl2", PASSWORD)),
        (
            "locked, wrong password",
            answer("dsl2", "still not the password"),
        ),
        ("disabled, right password", answer("dsl3", PASSWORD)),
        ("not an account name", answer("no such name!", PASSWORD)),
    ];
    let (status, body) = &cases[0].1;
    assert_eq!(*status, 401);
    assert!(body.contains("id=\"login-error\""), "{body}");
    assert!(body.contains("Sign-in failed"), "{body}");
    for (case, (s, b)) in &cases[1..] {
        assert_eq!(s, status, "{case}");
        assert_eq!(b, body, "{case}: the answer differs");
    }

    // The audit log keeps the true reason of each.
    let log = audit_details(&open_db(&collector));
    let has = |actor: &str, action: &str, detail: &str| {
        log.iter()
            .any(|(a, b, c)| a == actor && b == action && c.contains(detail))
    };
    assert!(
        has("nobody.here", "login_failed", "unknown account"),
        "{log:?}"
    );
    assert!(has("dsl1", "login_failed", "wrong password"), "{log:?}");
    assert!(
        has("dsl2", "login_locked", "attempt while locked"),
        "{log:?}"
    );
    assert!(has("dsl3", "login_failed", "account disabled"), "{log:?}");
    assert!(!log.iter().any(|(a, _, _)| a == "no such name!"), "{log:?}");
}

#[test]
fn over_long_names_and_reasons_are_refused_before_they_reach_the_audit_log() {
    let (_scratch, collector, http) = started("console-lengths", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    let a1 = insert_alert(&db, "ev-len-1", "pupil.one", "violence/seed", 5, "new");
    let a2 = insert_alert(&db, "ev-len-2", "pupil.one", "violence/seed", 3, "new");

    // Names that no account can have: the generic refusal, nothing logged.
    let refused = http.login("nobody.here", PASSWORD);
    assert_eq!(refused.status, 401);
    let generic = refused.body.split("id=\"login-error\">").nth(1).unwrap();
    let generic = &generic[..generic.find("</p>").unwrap()];
    for name in ["a".repeat(65), "x".repeat(200_000)] {
        let r = http.login(&name, PASSWORD);
        assert_eq!(r.status, 401, "{}", name.len());
        assert!(r.body.contains(generic), "{}", r.body);
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM console_audit WHERE length(actor) > 64"
        ),
        0
    );

    let (session, csrf) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let long = "r".repeat(1025);
    let (id1, id2) = (a1.to_string(), a2.to_string());
    let too_long = |r: Response| {
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body.contains("reason is too long"), "{}", r.body);
        assert!(r.body.contains("at most 1024 bytes"), "{}", r.body);
    };
    too_long(http.post(
        &format!("/alerts/{a1}/reveal"),
        &cookies,
        &[("csrf", &csrf), ("reason", &long)],
    ));
    too_long(http.post(
        &format!("/alerts/{a2}/state"),
        &cookies,
        &[("csrf", &csrf), ("to", "false_positive"), ("reason", &long)],
    ));
    too_long(http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", &long),
        ],
    ));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_reveals"), 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM alerts WHERE state <> 'new'"),
        0
    );
    // 1 KiB exactly is taken.
    let r = http.post(
        &format!("/alerts/{a2}/state"),
        &cookies,
        &[
            ("csrf", &csrf),
            ("to", "false_positive"),
            ("reason", &long[..1024]),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        count(&db, "SELECT MAX(length(detail)) FROM console_audit") < 1100,
        "no audit entry carries an over-long reason"
    );
}

/// Failed sign-ins from the browser at `address`, as a proxy in front would
/// forward them (`X-Forwarded-For`, after whatever the browser itself sent).
fn fail_from(http: &Endpoint, address: &str, times: usize) -> Vec<u16> {
    (0..times)
        .map(|_| {
            http.login_with(
                "dsl1",
                "not the password at all",
                &format!("X-Forwarded-For: {address}\r\n"),
            )
            .status
        })
        .collect()
}

#[test]
fn forwarded_addresses_count_only_from_the_trusted_proxy() {
    // No proxy trusted: a client cannot dodge the per-address throttle by
    // claiming other addresses; the log keeps its real one.
    let (_scratch, collector, http) = started("console-no-proxy", &[("dsl1", "dsl")]);
    let statuses: Vec<u16> = (0..20)
        .flat_map(|i| fail_from(&http, &format!("10.0.0.{i}"), 1))
        .collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        fail_from(&http, "10.0.0.99", 1),
        [429],
        "throttled by its real address"
    );
    let log = audit_details(&open_db(&collector));
    assert!(
        log.iter()
            .filter(|(_, a, _)| a == "login_failed")
            .all(|(_, _, d)| d.contains("from 127.0.0.1")),
        "{log:?}"
    );
    drop(collector);

    // Behind a trusted proxy: each browser is throttled on its own, by the
    // address the proxy added last, and the log names it.
    let scratch = Scratch::new("console-proxy");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    let config = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[console]\n"), "{text}");
    std::fs::write(
        &config,
        text.replacen(
            "[console]\n",
            "[console]\ntrusted_proxy = \"127.0.0.1\"\n",
            1,
        ),
    )
    .unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    let http = Endpoint::Http(port);
    let form = http.get("/login", &[]);
    assert!(
        form.set_cookie("tutela_login").unwrap().contains("Secure"),
        "the browser's side of the proxy is HTTPS: {form:?}"
    );
    // The browser's own claim comes first; the proxy's entry is the last.
    let statuses = fail_from(&http, "198.51.100.9, 203.0.113.5", 20);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(fail_from(&http, "203.0.113.5", 1), [429]);
    assert_eq!(
        fail_from(&http, "198.51.100.9", 1),
        [401],
        "another browser is not held up"
    );
    assert_eq!(fail_from(&http, "203.0.113.6", 1), [401]);
    let log = audit_details(&open_db(&collector));
    assert!(
        log.iter()
            .any(|(_, a, d)| a == "login_failed" && d.contains("from 203.0.113.5")),
        "{log:?}"
    );
}
