//! Console hardening over real HTTP against the real collector: an action
//! whose audit entry cannot be written is undone whole and leaves the
//! database unlocked; background polls do not keep an idle session alive;
//! technicians never see false-positive reasons; capture previews are
//! audited; rule rates count only the viewer's alerts.

use std::time::Duration;

use tutela_tests::console_client::started;
use tutela_tests::console_db::{self, audit_details, count, insert_alert, open_db};
use tutela_tests::{run_ok, Collector};

#[test]
fn an_action_whose_audit_entry_fails_is_undone_and_leaves_the_database_unlocked() {
    let (_scratch, collector, http) = started("console-tx", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    let a1 = insert_alert(&db, "ev-tx-1", "pupil.one", "bullying/seed", 5, "new");
    let a2 = insert_alert(&db, "ev-tx-2", "pupil.one", "bullying/seed", 3, "new");
    db.execute(
        "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms) VALUES ('ag-hardening', x'01', 'LAB1-PC07', 'lab-1', 0)",
        [],
    )
    .unwrap();
    let (session, csrf) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];

    // The audit log refuses these entries (as a full disk or a broken
    // database would): each action must then be undone as a whole.
    db.execute_batch(
        "CREATE TRIGGER test_audit_refused BEFORE INSERT ON console_audit
         WHEN NEW.action IN ('bulk_false_positive', 'reveal_capture', 'add_note', 'assign', 'agent-revoke')
         BEGIN SELECT RAISE(ABORT, 'audit entry refused by the test'); END;",
    )
    .unwrap();
    let (id1, id2) = (a1.to_string(), a2.to_string());
    let r = http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", "pupils quoting a set text"),
        ],
    );
    assert_eq!(r.status, 500, "{r:?}");
    // The console's connection holds no write lock and no open transaction:
    // another writer (as ingest's) gets through at once.
    db.execute(
        "UPDATE alerts SET received_ms = received_ms + 1 WHERE id = ?1",
        [a1],
    )
    .expect("the database is not left locked by the failed request");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM alerts WHERE state = 'false_positive'"
        ),
        0,
        "the state changes were rolled back"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_history"), 0);

    let alert = format!("/alerts/{a1}");
    let r = http.post(
        &format!("{alert}/note"),
        &cookies,
        &[("csrf", &csrf), ("text", "spoke to the form tutor")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_notes"), 0);
    let r = http.post(
        &format!("{alert}/assign"),
        &cookies,
        &[("csrf", &csrf), ("assignee", "dsl1")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM console_review WHERE assignee <> ''"
        ),
        0
    );
    let r = http.post(
        &format!("{alert}/reveal"),
        &cookies,
        &[("csrf", &csrf), ("reason", "needed to judge the risk")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_reveals"), 0);
    let r = http.post(
        "/fleet/revoke",
        &cookies,
        &[
            ("csrf", &csrf),
            ("agent", "ag-hardening"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT revoked FROM agents WHERE agent_id = 'ag-hardening'"
        ),
        0
    );
    db.execute(
        "UPDATE alerts SET received_ms = received_ms + 1 WHERE id = ?1",
        [a2],
    )
    .expect("still unlocked");

    // With the audit log writable again, the same actions go through, each
    // with its entry, and later entries are committed (seen from here).
    db.execute_batch("DROP TRIGGER test_audit_refused").unwrap();
    let r = http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", "pupils quoting a set text"),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let r = http.post(
        &format!("{alert}/note"),
        &cookies,
        &[("csrf", &csrf), ("text", "spoke to the form tutor")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM alerts WHERE state = 'false_positive'"
        ),
        2
    );
    let log = audit_details(&db);
    for action in ["bulk_false_positive", "add_note"] {
        assert_eq!(
            log.iter().filter(|(_, a, _)| a == action).count(),
            1,
            "{action}: {log:?}"
        );
    }
    assert_eq!(
        log.iter().filter(|(_, a, _)| a == "state_change").count(),
        2
    );
}

#[test]
fn background_polls_do_not_keep_an_idle_session_alive_but_page_views_do() {
    let (_scratch, collector, http) = started("console-idle", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    insert_alert(&db, "ev-idle-1", "pupil.one", "bullying/seed", 3, "new");
    const IDLE_MS: i64 = 30 * 60_000;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // A session whose last activity was 4 seconds short of the idle limit.
    let nearly_idle = |session: &str| -> i64 {
        let last = now() - IDLE_MS + 4_000;
        let hash = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
        let n = db
            .execute(
                "UPDATE console_sessions SET last_ms = ?2 WHERE token_hash = ?1",
                rusqlite::params![hash.as_ref(), last],
            )
            .unwrap();
        assert_eq!(n, 1);
        last
    };
    let last_ms = |session: &str| -> Option<i64> {
        let hash = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
        use rusqlite::OptionalExtension;
        db.query_row(
            "SELECT last_ms FROM console_sessions WHERE token_hash = ?1",
            [hash.as_ref()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
    };

    // Polling alone: the polls are answered until the idle limit passes,
    // then refused with 401, and the session is gone.
    let (session, _) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let set = nearly_idle(&session);
    let first = http.poll("/queue?fragment=1", &cookies);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(first.body.contains("\"max_id\""), "{}", first.body);
    assert_eq!(last_ms(&session), Some(set), "a poll is not activity");
    let started = std::time::Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        let r = http.poll("/queue?fragment=1", &cookies);
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the polled session timed out");
    assert_eq!(refused.status, 401, "{refused:?}");
    let page = http.get("/queue", &cookies);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    assert_eq!(last_ms(&session), None);

    // A page view is activity: it restarts the idle clock, and polls after
    // it are answered past the old limit.
    let (session, _) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let set = nearly_idle(&session);
    assert_eq!(http.get("/queue", &cookies).status, 200);
    assert!(last_ms(&session).unwrap() > set + IDLE_MS / 2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(http.poll("/queue?fragment=1", &cookies).status, 200);

    // The page's script leaves for the sign-in page when a poll is refused.
    let script = http.get("/assets/console.js", &[]);
    assert!(script.body.contains("r.status===401"), "{}", script.body);
    assert!(
        script.body.contains("window.location.replace('/login')"),
        "{}",
        script.body
    );
}

/// Stores a small red JPEG as alert `alert`'s capture, sealed as ingest does.
fn store_capture(collector: &Collector, db: &rusqlite::Connection, alert: i64, event: &str) {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 30, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    console_db::store_capture(collector, db, alert, event, &jpeg, [9u8; 12]);
}

#[test]
fn technicians_never_see_false_positive_reasons_and_capture_previews_are_audited() {
    let (_scratch, collector, http) = started(
        "console-visibility",
        &[("dsl1", "dsl"), ("tech1", "technician")],
    );
    let db = open_db(&collector);
    let fp = insert_alert(&db, "ev-vis-1", "pupil.one", "violence/seed", 3, "new");
    let grave = insert_alert(&db, "ev-vis-2", "pupil.two", "violence/seed", 5, "new");
    store_capture(&collector, &db, grave, "ev-vis-2");

    let (dsl, csrf) = http.session("dsl1", "/queue");
    let dsl = [("tutela_session", dsl.as_str())];
    let reason = "quoting Of Mice and Men for English coursework";
    let r = http.post(
        &format!("/alerts/{fp}/state"),
        &dsl,
        &[
            ("csrf", &csrf),
            ("to", "false_positive"),
            ("reason", reason),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let page = http.get(&format!("/alerts/{fp}"), &dsl);
    assert!(page.body.contains(reason), "{}", page.body);

    // Technicians open no alert at all (console_privacy covers the rest).
    let (tech, _) = http.session("tech1", "/fleet");
    let tech = [("tutela_session", tech.as_str())];
    let page = http.get(&format!("/alerts/{fp}"), &tech);
    assert_eq!(page.status, 403, "{page:?}");
    assert!(!page.body.contains(reason), "{}", page.body);
    assert!(
        !page.body.contains("False-positive reason"),
        "{}",
        page.body
    );

    // The blurred preview decrypts the capture: a view, and audited as one.
    let preview = http.get(&format!("/alerts/{grave}/preview.jpg"), &dsl);
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(preview.header("content-type"), Some("image/jpeg"));
    let target = format!("alert:{grave}");
    let viewed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl1' AND action = 'view_capture_preview' AND target = ?1",
            [&target],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(viewed, 1);
    // Technicians get no preview either.
    assert_eq!(
        http.get(&format!("/alerts/{grave}/preview.jpg"), &tech)
            .status,
        403
    );
}

#[test]
fn rule_rates_count_only_the_alerts_in_the_viewers_scope() {
    let (scratch, collector, http) =
        started("console-rule-scope", &[("dsl1", "dsl"), ("head1", "head")]);
    let staff = scratch.path("staff.csv");
    std::fs::write(&staff, "username,type\nmr.jones,staff\n").unwrap();
    run_ok(
        collector
            .cmd()
            .args(["users", "import", staff.to_str().unwrap()]),
    )
    .unwrap();
    let db = open_db(&collector);
    let pupil = insert_alert(&db, "ev-sc-1", "pupil.one", "drugs/seed", 3, "new");
    insert_alert(
        &db,
        "ev-sc-2",
        "pupil.two",
        "drugs/seed",
        3,
        "false_positive",
    );
    insert_alert(&db, "ev-sc-3", "pupil.three", "drugs/seed", 3, "new");
    let teacher = insert_alert(
        &db,
        "ev-sc-4",
        "mr.jones",
        "drugs/seed",
        3,
        "false_positive",
    );
    insert_alert(
        &db,
        "ev-sc-5",
        "mr.jones",
        "drugs/seed",
        3,
        "false_positive",
    );

    // Each viewer sees the rule's false-positive rate over their own scope.
    for (user, alert, row, sentence) in [
        (
            "dsl1",
            pupil,
            "<td>drugs/seed</td><td>drugs</td><td>3</td><td>1</td><td>33%</td>",
            "1 of 3 alerts from this rule were false positives (33%)",
        ),
        (
            "head1",
            teacher,
            "<td>drugs/seed</td><td>drugs</td><td>2</td><td>2</td><td>100%</td>",
            "2 of 2 alerts from this rule were false positives (100%)",
        ),
    ] {
        let (session, _) = http.session(user, "/queue");
        let cookie = [("tutela_session", session.as_str())];
        let rules = http.get("/rules", &cookie);
        assert!(rules.body.contains(row), "{user}: {}", rules.body);
        let page = http.get(&format!("/alerts/{alert}"), &cookie);
        assert!(page.body.contains(sentence), "{user}: {}", page.body);
    }
}
