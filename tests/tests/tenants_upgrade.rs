//! Schools on an upgraded PostgreSQL store: a database made by schema
//! migrations 1-6 only (a collector from before schools), with an agent,
//! an enrolment token, an alert, a console account and an audit entry in
//! it, is upgraded to version 10 by the collector, and finds every row in
//! the default school, the account holding a trust-wide grant of its role,
//! its exemption and notice trust-wide (every school's) and the audit chain
//! (made before schools) still intact; version 9 lets the account hold a
//! grant of another role, version 10 gives the default school the trust's
//! time zone and retention. A SQLite store at version 3 upgrades to 5 with
//! its sessions still signed in.

use tutela_collector::store::audit::{entry_hash, ChainCheck, Entry, GENESIS};
use tutela_collector::store::postgres::schema::{migrations_to, VERSION};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_ok, Collector, Scratch};

/// The audit log as stored, checked link by link.
fn chain(pg: &PgCluster) -> Result<usize, i64> {
    let rows = pg
        .query(
            "SELECT id, time_ms, actor, action, target, detail, prev_hash, hash, school
             FROM console_audit ORDER BY id",
        )
        .unwrap();
    let mut check = ChainCheck::default();
    for line in rows.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 9, "{line}");
        let entry = Entry {
            id: f[0].parse().unwrap(),
            time_ms: f[1].parse().unwrap(),
            actor: f[2].to_owned(),
            action: f[3].to_owned(),
            target: f[4].to_owned(),
            detail: f[5].to_owned(),
            school: f[8].to_owned(),
        };
        check.next(&entry, f[6], f[7]);
    }
    check.result()
}

#[test]
fn a_postgresql_store_at_schema_version_6_upgrades_with_its_rows_in_the_default_school() {
    assert_eq!(VERSION, 11, "this test checks the upgrade from 6 to 11");
    let pg = PgCluster::start().unwrap();
    // The schema an older collector made: migrations 1-6, version 6.
    for migration in migrations_to(6) {
        pg.query(migration).unwrap();
    }
    pg.query(
        "CREATE TABLE tutela_schema (version BIGINT NOT NULL);
         INSERT INTO tutela_schema (version) VALUES (6)",
    )
    .unwrap();
    assert_eq!(
        pg.query(
            "SELECT COUNT(*) FROM information_schema.columns WHERE column_name = 'school'
             AND table_name IN ('agents', 'tokens', 'alerts', 'console_audit')"
        )
        .unwrap(),
        "0",
        "version 6 has no schools"
    );
    // Its rows: an agent, a token, an alert, an account, an audit entry
    // hashed as collectors before schools hashed it.
    pg.query(
        "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms)
             VALUES ('old-agent', '\\x01', 'OLD-PC01', 'lab', 1);
         INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses)
             VALUES ('\\x02', 'old-token', 'lab', 1, 2, 5);
         INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
             source, context, app, app_path, window_title, url, search_query, category,
             severity, rule_id, term, matches, rules_version, body, signature, body_hash)
         VALUES ('old-event', 'old-agent', 1, 1, 1, 'pupil.old', 'OLD-PC01', 'keystrokes', '',
             'app', '', '', '', '', 'self-harm', 4, 'r1', '', '[]', 1, '\\x00', '\\x00', '\\x00');
         INSERT INTO console_users (name, password_hash, role, created_ms)
             VALUES ('old.dsl', 'not-a-hash', 'dsl', 1)",
    )
    .unwrap();
    let old = Entry {
        id: 1,
        time_ms: 5,
        actor: "cli".into(),
        action: "account_created".into(),
        target: "user:old.dsl".into(),
        detail: "role dsl".into(),
        school: String::new(),
    };
    let hash = entry_hash(GENESIS, &old);
    pg.query(&format!(
        "INSERT INTO console_audit (id, time_ms, actor, action, target, detail, prev_hash, hash)
         VALUES (1, 5, 'cli', 'account_created', 'user:old.dsl', 'role dsl', '{GENESIS}', '{hash}')"
    ))
    .unwrap();

    // The collector's command line upgrades the store when it opens it.
    let scratch = Scratch::new("tenants-upgrade");
    pg.query(
        "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
             VALUES ('lab', 'drugs', '', 'old', 'old.dsl', 1, 1, 2);
         INSERT INTO notices (grp, version, text, mode, concern_url, body, signature, created_by, created_ms)
             VALUES ('lab', 1, 'old notice', 'every-sign-in', '', '\\x00', '\\x00', 'old.dsl', 1)",
    )
    .unwrap();
    let c = Collector::init(scratch.path("collector")).unwrap();
    c.set_section("storage", &format!("url = \"{}\"", pg.url()))
        .unwrap();
    let schools = run_ok(c.cmd().args(["schools", "list"])).unwrap();
    assert!(schools.contains("default\t"), "{schools}");
    assert_eq!(pg.query("SELECT version FROM tutela_schema").unwrap(), "11");
    assert_eq!(
        pg.query("SELECT time_zone || '|' || retention_months FROM schools WHERE id = 'default'")
            .unwrap(),
        "|0",
        "the default school takes the trust's time zone and retention"
    );
    assert_eq!(
        pg.query("SELECT (SELECT school FROM exemptions) || '|' || (SELECT school FROM notices)")
            .unwrap(),
        "|",
        "the old exemption and notice hold for every school"
    );
    assert_eq!(
        pg.query("SELECT issue FROM notices").unwrap(),
        "1",
        "the old notice's first issue is its version, the order agents knew"
    );
    for (what, sql) in [
        (
            "agent",
            "SELECT school FROM agents WHERE agent_id = 'old-agent'",
        ),
        (
            "token",
            "SELECT school FROM tokens WHERE label = 'old-token'",
        ),
        (
            "alert",
            "SELECT school FROM alerts WHERE event_id = 'old-event'",
        ),
    ] {
        assert_eq!(pg.query(sql).unwrap(), "default", "the old {what}");
    }
    assert_eq!(
        pg.query("SELECT role, school FROM console_grants WHERE \"user\" = 'old.dsl'")
            .unwrap(),
        "dsl|",
        "the old account holds a trust-wide grant of its role"
    );
    let accounts = run_ok(c.cmd().args(["user", "list"])).unwrap();
    assert!(accounts.contains("old.dsl\tdsl\tactive\n"), "{accounts}");
    // One school still: an account made now is trust-wide without asking,
    // and its audit entry continues the chain made before schools.
    let password = scratch.path("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();
    run_ok(c.cmd().args([
        "user",
        "add",
        "new.dsl",
        "--role",
        "dsl",
        "--password-file",
        password.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(chain(&pg), Ok(2), "the audit chain across the upgrade");
    assert_eq!(
        pg.query("SELECT school FROM console_grants WHERE \"user\" = 'new.dsl'")
            .unwrap(),
        ""
    );
    // Version 9: the old account may hold a grant of another role beside
    // its first.
    let out = run_ok(c.cmd().args([
        "users", "grant", "old.dsl", "--role", "auditor", "--school", "default",
    ]))
    .unwrap();
    assert!(
        out.contains("now has the grants dsl: trust; auditor: default"),
        "{out}"
    );
    assert_eq!(
        pg.query("SELECT COUNT(*) FROM console_grants WHERE \"user\" = 'old.dsl'")
            .unwrap(),
        "2"
    );
}

/// A SQLite store at schema version 3 (one grant per account, sessions
/// without a grant of their own) is upgraded to version 4 by the
/// collector: a session opened before goes on acting under its account's
/// one grant, and the account may then hold a grant of another role.
#[test]
fn a_sqlite_store_at_schema_version_3_keeps_its_sessions_and_takes_several_grants() {
    const PASSWORD: &str = "correct horse battery staple";
    let scratch = Scratch::new("tenants-upgrade-sqlite");
    let (mut c, port) =
        Collector::with_console(scratch.path("collector"), &[("old.dsl", "dsl")], PASSWORD)
            .unwrap();
    c.start().unwrap();
    tutela_tests::console_client::wait_for_port(port);
    let session = tutela_tests::web::sign_in(port, "old.dsl", PASSWORD, "/queue");
    c.kill9();
    // Back to version 3's shape: grants keyed by account, no session role.
    let db_path = c.dir.join("tutela.db");
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.execute_batch(
        "CREATE TABLE console_grants_v3 (user TEXT PRIMARY KEY, role TEXT NOT NULL,
             school TEXT NOT NULL DEFAULT '');
         INSERT INTO console_grants_v3 SELECT user, role, school FROM console_grants;
         DROP TABLE console_grants;
         ALTER TABLE console_grants_v3 RENAME TO console_grants;
         ALTER TABLE console_sessions DROP COLUMN role;
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(db);

    c.start().unwrap();
    tutela_tests::console_client::wait_for_port(port);
    let version = |db: &rusqlite::Connection| -> i64 {
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    let db = rusqlite::Connection::open(&db_path).unwrap();
    assert_eq!(version(&db), 6);
    let own: String = db
        .query_row(
            "SELECT time_zone || '|' || retention_months FROM schools WHERE id = 'default'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(own, "|0", "the trust's time zone and retention");
    let queue = tutela_tests::web::http(port, "GET", "/queue", &session.0, &[]);
    assert_eq!(queue.status, 200, "the session from before: {}", queue.body);
    let out = run_ok(
        c.cmd()
            .args(["users", "grant", "old.dsl", "--role", "auditor", "--trust"]),
    )
    .unwrap();
    assert!(
        out.contains("now has the grants dsl: trust; auditor: trust"),
        "{out}"
    );
    let grants: String = db
        .query_row(
            "SELECT group_concat(role, ',') FROM (SELECT role FROM console_grants
             WHERE user = 'old.dsl' ORDER BY role)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(grants, "auditor,dsl");
    c.kill9();
}
