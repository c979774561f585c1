//! Many agents at once against one collector on its embedded store (issue
//! 16): enrolments, heartbeats and event batches together meet no store
//! error, and one publication reaches every subscriber from one reading.
//! The timing figures are in the `fleet_load` benchmark; these tests only
//! check what happened.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tutela_tests::load::{agent, Fleet};
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{run_ok, Collector, Scratch};

/// Waits for `done`, failing with `what` and the collector's log after `timeout`.
fn wait(collector: &Collector, what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; collector log:\n{}",
            collector.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `log` without its terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of the collector's log that tell of a store error.
fn store_errors(log: &str) -> Vec<String> {
    plain(log)
        .lines()
        .filter(|l| {
            l.contains("database is locked")
                || l.contains("failed to commit")
                || l.contains("store write failed")
                || (l.contains("ERROR")
                    && ["writer", "ingest", "enrolment", "subscription"]
                        .iter()
                        .any(|m| l.contains(&format!("tutela_collector::{m}"))))
        })
        .map(str::to_owned)
        .collect()
}

/// A collector in a fresh directory, its console on a free port, serving.
fn started(name: &str) -> (Scratch, Collector) {
    let scratch = Scratch::new(name);
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector
        .set_console_port(tutela_tests::free_port())
        .unwrap();
    collector.start().unwrap();
    (scratch, collector)
}

#[test]
fn enrolments_heartbeats_and_event_batches_at_once_meet_no_store_error() {
    const AGENTS: usize = 200;
    const EVENTS_EACH: u64 = 25;
    let (_scratch, collector) = started("fleet-scale-writes");
    let token = collector
        .token(&["--uses", &AGENTS.to_string(), "--group", "lab-1"])
        .unwrap();
    // Every agent connects and enrols at once, then streams events and
    // heartbeats at a high rate.
    let (fleet, population) = Fleet::new(
        &token,
        Duration::from_millis(10),
        EVENTS_EACH,
        Duration::from_millis(20),
        AGENTS,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    population.send_replace(AGENTS);
    for n in 0..AGENTS {
        rt.spawn(agent(fleet.clone(), n));
    }
    // Meanwhile a technician writes from another process (the CLI).
    for n in 0..5 {
        run_ok(
            collector
                .cmd()
                .args(["token", "create", "--label", &format!("during load {n}")]),
        )
        .unwrap();
    }
    let total = AGENTS as u64 * EVENTS_EACH;
    wait(
        &collector,
        "every event acknowledged",
        Duration::from_secs(180),
        || fleet.stats.events_acked.load(Relaxed) >= total,
    );
    // Let heartbeats keep coming for a moment after the events.
    let beats = fleet.stats.heartbeats.load(Relaxed);
    wait(
        &collector,
        "more heartbeats",
        Duration::from_secs(30),
        || fleet.stats.heartbeats.load(Relaxed) >= beats + AGENTS as u64,
    );
    population.send_replace(0);
    let s = &fleet.stats;
    let refusals = s.take_refusals();
    assert!(
        refusals.is_empty(),
        "the collector refused: {refusals:#?}\nlog:\n{}",
        collector.log_text()
    );
    assert_eq!(s.enrol_refusals.load(Relaxed), 0);
    assert_eq!(s.commit_failures.load(Relaxed), 0);
    assert_eq!(s.heartbeat_refusals.load(Relaxed), 0);
    let log = collector.log_text();
    assert!(store_errors(&log).is_empty(), "{log}");
    // Each agent's events are stored once, in order, and its heartbeats recorded.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let (stored, distinct): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT agent_id || ':' || seq) FROM alerts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((stored, distinct), (total as i64, total as i64));
    let (agents, complete, beating): (i64, i64, i64) = db
        .query_row(
            "SELECT COUNT(*), SUM(last_seq = ?1), SUM(last_heartbeat_ms > 0) FROM agents",
            [EVENTS_EACH as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (agents, complete, beating),
        (AGENTS as i64, AGENTS as i64, AGENTS as i64)
    );
    let broken: i64 = db
        .query_row("SELECT COUNT(*) FROM alerts WHERE chain_ok = 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(broken, 0, "hash chains intact");
    rt.shutdown_timeout(Duration::from_secs(5));
}

fn pack(version: u32) -> String {
    let about = About::new(
        "fleet-scale",
        "Fleet scale pack",
        "A pack for the fan-out test.",
    );
    let term = format!("zip gun {version}");
    small_pack(&about, version, &[weapons(&["pipe bomb", &term])])
}

#[test]
fn a_publication_reaches_every_subscriber_from_one_reading() {
    const AGENTS: usize = 300;
    let (scratch, collector) = started("fleet-scale-publish");
    let token = collector
        .token(&["--uses", &AGENTS.to_string(), "--group", "lab-1"])
        .unwrap();
    let (fleet, population) = Fleet::new(
        &token,
        Duration::from_secs(3600),
        0,
        Duration::from_secs(3600),
        64,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    population.send_replace(AGENTS);
    for n in 0..AGENTS {
        rt.spawn(agent(fleet.clone(), n));
    }
    wait(
        &collector,
        "every agent subscribed",
        Duration::from_secs(180),
        || fleet.stats.subscribed.load(Relaxed) == AGENTS,
    );
    for version in [2, 3] {
        fleet.stats.fanout_received.store(0, Relaxed);
        fleet.stats.fanout_version.store(version, Relaxed);
        let file = scratch.path(&format!("pack-{version}.toml"));
        std::fs::write(&file, pack(version)).unwrap();
        run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
        wait(
            &collector,
            &format!("every subscriber receiving version {version}"),
            Duration::from_secs(60),
            || fleet.stats.fanout_received.load(Relaxed) >= AGENTS,
        );
        assert_eq!(
            fleet.stats.fanout_received.load(Relaxed),
            AGENTS,
            "once each"
        );
    }
    population.send_replace(0);
    assert!(fleet.stats.take_refusals().is_empty());
    // The store was read, and each bundle's release signed, once per
    // publication for all 300 subscribers.
    let log = plain(&collector.log_text());
    for version in [2, 3] {
        let readings = log
            .lines()
            .filter(|l| {
                l.contains("publication read once") && l.contains(&format!("live={version} "))
            })
            .count();
        assert_eq!(readings, 1, "version {version}:\n{log}");
    }
    rt.shutdown_timeout(Duration::from_secs(5));
}
