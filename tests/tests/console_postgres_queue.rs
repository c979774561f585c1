//! The review console on PostgreSQL over HTTP: the queue's filters and the
//! staff scope hold, and a console answers while the database is away and
//! recovers when it is back.

use std::time::Duration;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::console_pg::{listed, node, port_of, send};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{Agent, Scratch};

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
    let port = port_of(&console);
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
