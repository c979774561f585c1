//! Two real collectors (`tutela-collector serve`) on one PostgreSQL, with
//! simulated agents enrolling, streaming events and sending heartbeats
//! through both: every event is stored once with its chain intact, every
//! token use is counted once, and neither collector logs a store error.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tutela_tests::load::{agent, Fleet};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{Collector, Scratch};

/// A collector in `scratch/name` whose store is `url`, serving as an ingest node.
fn ingest_node(scratch: &Scratch, name: &str, url: &str) -> Collector {
    let mut collector = Collector::init(scratch.path(name)).unwrap();
    collector
        .set_section("storage", &format!("url = \"{url}\""))
        .unwrap();
    collector.set_section("console", "enabled = false").unwrap();
    collector.start().unwrap();
    collector
}

fn wait(collectors: &[&Collector], what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; logs:\n{}",
            collectors
                .iter()
                .map(|c| c.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_collectors_on_one_postgresql_store_every_event_once() {
    const AGENTS_EACH: usize = 40;
    const EVENTS_EACH: u64 = 30;
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("fleet-postgres");
    let a = ingest_node(&scratch, "a", &pg.url());
    let b = ingest_node(&scratch, "b", &pg.url());
    // A token made on each collector's command line, kept in PostgreSQL.
    let tokens = [&a, &b].map(|c| {
        c.token(&["--uses", &AGENTS_EACH.to_string(), "--group", "lab-1"])
            .unwrap()
    });
    let listed = tutela_tests::run_ok(a.cmd().args(["token", "list"])).unwrap();
    assert_eq!(
        listed.lines().count(),
        3,
        "both tokens, from either node: {listed}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleets: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (fleet, population) = Fleet::new(
                token,
                Duration::from_millis(10),
                EVENTS_EACH,
                Duration::from_millis(50),
                AGENTS_EACH,
            );
            population.send_replace(AGENTS_EACH);
            for n in 0..AGENTS_EACH {
                rt.spawn(agent(fleet.clone(), n));
            }
            (fleet, population)
        })
        .collect();
    let total = (2 * AGENTS_EACH) as u64 * EVENTS_EACH;
    wait(
        &[&a, &b],
        "every event acknowledged",
        Duration::from_secs(180),
        || {
            fleets
                .iter()
                .map(|(f, _)| f.stats.events_acked.load(Relaxed))
                .sum::<u64>()
                >= total
        },
    );
    wait(&[&a, &b], "heartbeats", Duration::from_secs(30), || {
        fleets
            .iter()
            .all(|(f, _)| f.stats.heartbeats.load(Relaxed) >= AGENTS_EACH as u64)
    });
    for (fleet, population) in &fleets {
        population.send_replace(0);
        let refusals = fleet.stats.take_refusals();
        assert!(refusals.is_empty(), "refused: {refusals:#?}");
        assert_eq!(fleet.stats.enrol_refusals.load(Relaxed), 0);
        assert_eq!(fleet.stats.commit_failures.load(Relaxed), 0);
    }
    for c in [&a, &b] {
        let log = c.log_text();
        assert!(
            !log.contains("store write failed") && !log.contains("failed to commit"),
            "{log}"
        );
    }
    let total = total as i64;
    assert_eq!(pg.count("SELECT COUNT(*) FROM alerts"), total);
    assert_eq!(
        pg.count("SELECT COUNT(DISTINCT (agent_id, seq)) FROM alerts"),
        total
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM alerts WHERE NOT chain_ok"),
        0
    );
    assert_eq!(pg.count("SELECT COUNT(*) FROM gaps"), 0);
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM agents WHERE last_seq = {EVENTS_EACH} AND last_heartbeat_ms > 0"
        )),
        2 * AGENTS_EACH as i64
    );
    assert_eq!(
        pg.query("SELECT uses FROM tokens ORDER BY uses").unwrap(),
        format!("{AGENTS_EACH}\n{AGENTS_EACH}")
    );
    // Nothing went to either collector's SQLite file.
    for c in [&a, &b] {
        let db = rusqlite::Connection::open(c.dir.join("tutela.db")).unwrap();
        let local: i64 = db
            .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(local, 0);
    }
    rt.shutdown_timeout(Duration::from_secs(5));
}
