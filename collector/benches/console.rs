//! The review queue with 100,000 stored alerts: the page the DSL opens
//! (open alerts by severity then time, first page of 50 with counts per
//! state), a filtered and searched page, and a deep page (page 200, reached
//! by the keyset "Next" link) and the page before it. Target: at most 100 ms
//! of server time for every queue page.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use rusqlite::params;
use tutela_collector::config::Console;
use tutela_collector::console::auth::{self, Login, Role};
use tutela_collector::console::queue::{self, Cursor, QueueQuery};
use tutela_collector::console::{schema, App};
use tutela_collector::{secrets, store};

const ALERTS: i64 = 100_000;
const STATES: [&str; 6] = [
    "closed",
    "false_positive",
    "closed",
    "new",
    "in_review",
    "escalated",
];

fn seed(dir: &std::path::Path) {
    let mut conn = store::open(dir).unwrap();
    schema::create(&conn).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                    context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                    term, matches, rules_version, state, repeat_of, body, signature, body_hash)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'typed', ?7, 'chromium', '', 'Homework - Chromium', '', '',
                    ?8, ?9, ?10, 'term', '[]', 3, ?11, ?12, ?13, ?14, ?15)",
            )
            .unwrap();
        let start = 1_735_689_600_000_i64; // 2025-01-01
        for i in 0..ALERTS {
            let category = queue::CATEGORIES[(i % 12) as usize];
            let folded = i % 10 == 9;
            insert
                .execute(params![
                    format!("{i:032x}"),
                    format!("ag-{:012x}", i % 400),
                    i / 400 + 1,
                    start + i * 300_000,
                    format!("pupil.{}", i % 1200),
                    format!("LAB{}-PC{:02}", i % 20, i % 30),
                    format!("some context around a matched word number {i}"),
                    category,
                    1 + (i * 7 % 5),
                    format!("{category}/rule-{}", i % 40),
                    if folded {
                        "folded"
                    } else {
                        STATES[(i % 6) as usize]
                    },
                    if folded {
                        format!("{:032x}", i - 1)
                    } else {
                        String::new()
                    },
                    vec![0u8; 180],
                    vec![0u8; 64],
                    vec![0u8; 32],
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE").unwrap();
}

// Without the `postgres` feature the store has one backend.
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    secrets::create_missing(dir.path(), &[]).unwrap();
    let started = Instant::now();
    seed(dir.path());
    eprintln!("seeded {ALERTS} alerts in {:?}", started.elapsed());
    let app = App::open(dir.path(), &Console::default()).unwrap();
    let store::console::ConsoleStore::Sqlite(shared) = &app.store else {
        panic!("the bench opens SQLite")
    };
    let conn = shared.lock().unwrap();
    let db = store::console::Console::Sqlite(&conn);
    auth::add_user(&db, "dsl", Role::Dsl, "a long bench password").unwrap();
    let Login::Ok(token) =
        auth::login(&db, "dsl", "a long bench password", [127, 0, 0, 1].into()).unwrap()
    else {
        panic!("login")
    };
    let viewer = auth::viewer(&db, Some(&token)).unwrap();
    let open = QueueQuery {
        state: "open".into(),
        ..Default::default()
    };
    let filtered = QueueQuery {
        state: "all".into(),
        category: "violence".into(),
        severity: 3,
        search: "number 4".into(),
        from: "2025-02-01".into(),
        to: "2025-06-30".into(),
        ..Default::default()
    };
    // Page 200: after the last row of page 199, as its "Next" link says.
    let last_of_199 = queue::rows(&app, &db, &viewer, &open, 199 * queue::PAGE_SIZE - 1, 1)
        .unwrap()
        .pop()
        .expect("100,000 alerts fill 200 pages");
    let deep = QueueQuery {
        after: Some(Cursor {
            severity: last_of_199.severity,
            time_ms: last_of_199.time_ms,
            id: last_of_199.id,
        }),
        ..open.clone()
    };
    let deep_rows = queue::page_rows(&app, &db, &viewer, &deep).unwrap();
    assert_eq!(deep_rows.rows.len() as i64, queue::PAGE_SIZE);
    // Page 199 again, by page 200's "Previous" link.
    let back = QueueQuery {
        before: deep_rows.rows.first().map(|r| Cursor {
            severity: r.severity,
            time_ms: r.time_ms,
            id: r.id,
        }),
        ..open.clone()
    };
    let by_offset: Vec<i64> = queue::rows(
        &app,
        &db,
        &viewer,
        &open,
        199 * queue::PAGE_SIZE,
        queue::PAGE_SIZE,
    )
    .unwrap()
    .iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(
        deep_rows.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        by_offset,
        "the keyset page 200 is the 200th page of 50"
    );
    assert_eq!(
        queue::page_rows(&app, &db, &viewer, &back)
            .unwrap()
            .next
            .map(|c| c.id),
        Some(last_of_199.id),
        "page 199 (by Previous) ends where page 200 starts"
    );
    let mut group = c.benchmark_group("console_queue_100k");
    for (name, q) in [
        ("open_first_page", &open),
        ("filtered_search", &filtered),
        ("open_page_200", &deep),
        ("open_page_199_previous", &back),
    ] {
        let page = queue::render(&app, &db, &viewer, q, false).unwrap();
        assert_eq!(page.status(), 200);
        group.bench_function(name, |b| {
            b.iter(|| queue::render(&app, &db, &viewer, q, false).unwrap())
        });
    }
    group.finish();
    // The target, measured outside criterion's statistics as well.
    let runs = 20;
    for (name, q) in [
        ("first page", &open),
        ("filtered + search", &filtered),
        ("page 200", &deep),
        ("page 199 (previous)", &back),
    ] {
        let t = Instant::now();
        for _ in 0..runs {
            queue::render(&app, &db, &viewer, q, false).unwrap();
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0 / runs as f64;
        eprintln!(
            "queue {name}, 100,000 alerts: {ms:.1} ms server time per request (target <= 100 ms, {:.2} of target)",
            ms / 100.0
        );
    }
    // For comparison: the rows of page 200 fetched with OFFSET, as pages
    // were before keyset pagination.
    let t = Instant::now();
    for _ in 0..runs {
        queue::rows(
            &app,
            &db,
            &viewer,
            &open,
            199 * queue::PAGE_SIZE,
            queue::PAGE_SIZE + 1,
        )
        .unwrap();
    }
    eprintln!(
        "  (page 200 rows by OFFSET, the old way: {:.1} ms)",
        t.elapsed().as_secs_f64() * 1000.0 / runs as f64
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
