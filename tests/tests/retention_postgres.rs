//! The retention purge on PostgreSQL (`tutela-collector purge`): old closed
//! alerts go, the audit chain stays whole.

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_pg::{node, port_of, send};
use tutela_tests::load::now_ms;
use tutela_tests::postgres::PgCluster;
use tutela_tests::{Agent, Scratch};

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
    let port = port_of(&console);
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
