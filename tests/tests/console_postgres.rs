//! The review console on PostgreSQL, in real headless Chromium: two real
//! collectors (`tutela-collector serve`) share one PostgreSQL; an agent's
//! alert stored through ingest shows in the queue of the first, a DSL opens
//! it (audited) and starts its review there, and the second collector shows
//! that state and takes the next step, which the first then shows. Accounts
//! are made with `tutela-collector user add` straight into PostgreSQL. The
//! browser part is `tests/console/postgres.mjs`.

use std::process::Command;
use std::time::Duration;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_pg::{node, send};
use tutela_tests::postgres::PgCluster;
use tutela_tests::script::Script;
use tutela_tests::{console_scripts, Agent, Scratch};

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
