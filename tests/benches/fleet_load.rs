//! Fleet load (issue 16): many simulated agents in this one process against
//! one real collector (`tutela-collector serve`, a separate process) on
//! loopback. Each simulated agent has its own key and its own pinned TLS
//! connection, enrols with a technician's token, holds a rules subscription
//! open, sends signed, chained events and heartbeats. As the agent does, it
//! opens its event stream when an event is due and closes it once every
//! event sent is acknowledged and nothing new has come for the idle time
//! (the agent's default, 20 s; `--idle-close 0` keeps streams open).
//!
//! The fleet grows in steps (the sizes given); at each size it holds for a
//! while, then a rule pack is published and its fan-out to every connected
//! agent is timed. At the end the fleet drops back to the first size, to see
//! whether the collector gives memory back. For each step it prints the
//! collector's RSS and threads, enrolment refusals, event commit failures
//! (streams ended with `UNAVAILABLE`), other stream and heartbeat refusals,
//! the store errors the collector logged, acknowledgement latency p50/p99
//! (an event that opens its stream counts from before the opening), event
//! streams open, opened and closed for idleness, the time to open one, and
//! the publication fan-out time.
//!
//! Run (`ulimit -n` must exceed the largest size; each side holds one
//! descriptor per agent):
//! `cargo build --release -p tutela-collector` and then
//! `cargo bench -p tutela-tests --bench fleet_load -- [SIZES] [--hold SECS]
//!  [--events-per-sec N] [--heartbeat-secs N] [--idle-close SECS] [--postgres]`,
//! e.g. `-- 2000 10000 19000`.
//! Defaults: 2000 agents, hold 30 s, 200 events/s across the fleet,
//! a heartbeat every 60 s per agent, the embedded SQLite store. `--postgres`
//! runs the collector on a throwaway PostgreSQL cluster on loopback (review
//! console off; build the collector with `--features tutela-collector/postgres`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tutela_tests::cluster::{
    memory as collector_memory, percentile_ms as percentile, store_errors, Nodes,
};
use tutela_tests::load::{agent, Fleet};
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{run_ok, Collector, Scratch};

/// Agents connecting (TLS, enrolment, subscription) at once.
const CONNECTING_AT_ONCE: usize = 64;
/// How long a publication may take to reach every agent before it is reported as not reached.
const FANOUT_GIVE_UP: Duration = Duration::from_secs(60);
/// How long a ramp may take before the step is measured anyway.
const RAMP_GIVE_UP: Duration = Duration::from_secs(600);
/// How long the fleet rests after dropping back before memory is read.
const SETTLE: Duration = Duration::from_secs(20);

struct Options {
    sizes: Vec<usize>,
    hold: Duration,
    events_per_sec: f64,
    heartbeat: Duration,
    /// `None`: event streams kept open.
    idle_close: Option<Duration>,
    postgres: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        sizes: Vec::new(),
        hold: Duration::from_secs(30),
        events_per_sec: 200.0,
        heartbeat: Duration::from_secs(60),
        idle_close: Some(tutela_agent::uplink::IDLE_CLOSE),
        postgres: false,
    };
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| -> f64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--hold" => o.hold = Duration::from_secs_f64(value(i)),
            "--events-per-sec" => o.events_per_sec = value(i),
            "--heartbeat-secs" => o.heartbeat = Duration::from_secs_f64(value(i)),
            "--idle-close" => {
                o.idle_close = Some(Duration::from_secs_f64(value(i))).filter(|d| !d.is_zero())
            }
            "--postgres" => {
                o.postgres = true;
                i += 1;
                continue;
            }
            // `cargo bench` passes `--bench`.
            a if a.starts_with("--") => {
                i += 1;
                continue;
            }
            a => o
                .sizes
                .push(a.parse().expect("a size is a number of agents")),
        }
        i += if args[i].starts_with("--") { 2 } else { 1 };
    }
    if o.sizes.is_empty() {
        o.sizes.push(2000);
    }
    o
}

fn pack(version: u32) -> String {
    let about = About {
        notes: "Load release",
        ..About::new(
            "fleet-load",
            "Fleet load pack",
            "A small pack for the fleet load benchmark.",
        )
    };
    let zip_gun = format!("zip gun {version}");
    small_pack(&about, version, &[weapons(&["pipe bomb", &zip_gun])])
}

/// Publishes `version` and waits for every subscribed agent to receive it;
/// returns the time from the start of the push and whether all received it.
fn publish(
    collector: &Collector,
    scratch: &Scratch,
    fleet: &Fleet,
    version: u32,
) -> (Duration, usize, usize) {
    let stats = &fleet.stats;
    stats.fanout_received.store(0, Relaxed);
    *stats.fanout_last.lock().unwrap() = None;
    stats.fanout_version.store(version, Relaxed);
    let file = scratch.path(&format!("pack-v{version}.toml"));
    std::fs::write(&file, pack(version)).unwrap();
    let expected = stats.subscribed.load(Relaxed);
    let started = Instant::now();
    run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
    while stats.fanout_received.load(Relaxed) < expected && started.elapsed() < FANOUT_GIVE_UP {
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = stats.fanout_last.lock().unwrap().unwrap_or(started);
    (
        last.saturating_duration_since(started),
        stats.fanout_received.load(Relaxed),
        expected,
    )
}

fn main() {
    let o = options();
    let largest = *o.sizes.iter().max().unwrap();
    let scratch = Scratch::new("bench-fleet-load");
    // On PostgreSQL: one node of a cluster (console off); else as installed.
    let nodes = o.postgres.then(|| Nodes::start(&scratch, 1, true).unwrap());
    let own = (!o.postgres).then(|| {
        let mut collector = Collector::init(scratch.path("collector")).unwrap();
        collector
            .set_console_port(tutela_tests::free_port())
            .unwrap();
        collector.start().unwrap();
        collector
    });
    let collector = own
        .as_ref()
        .or(nodes.as_ref().map(|n| &n.collectors[0]))
        .unwrap();
    let pid = collector.child.as_ref().unwrap().id();
    let token = collector
        .token(&["--uses", &(largest + 100).to_string(), "--group", "load"])
        .unwrap();
    let (fleet, population) = Fleet::new(
        &token,
        Duration::from_secs_f64(largest as f64 / o.events_per_sec.max(0.001)),
        u64::MAX,
        o.heartbeat,
        CONNECTING_AT_ONCE,
    );
    fleet.set_idle_close(o.idle_close);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (idle_rss, idle_threads) = collector_memory(pid);
    println!(
        "fleet load on {}: sizes {:?}, hold {} s, {} events/s at the largest size (one per agent every {:.1} s), a heartbeat per agent every {} s, event streams {}",
        if o.postgres { "PostgreSQL" } else { "SQLite" },
        o.sizes,
        o.hold.as_secs(),
        o.events_per_sec,
        fleet.event_every().as_secs_f64(),
        o.heartbeat.as_secs(),
        match o.idle_close {
            Some(idle) => format!("closed after {} s idle", idle.as_secs_f64()),
            None => "kept open".into(),
        }
    );
    println!("collector idle: RSS {idle_rss:.0} MiB, {idle_threads} threads");
    let mut started = 0usize;
    let mut version = 1u32;
    let mut steps: Vec<usize> = o.sizes.clone();
    steps.push(o.sizes[0]);
    for (i, &size) in steps.iter().enumerate() {
        let dropping = i == steps.len() - 1;
        let _ = fleet.stats.take_refusals();
        let log_errors_before = store_errors(&collector.log_text());
        let ramp = Instant::now();
        population.send_replace(size);
        while started < size {
            rt.spawn(agent(fleet.clone(), started));
            started += 1;
        }
        if dropping {
            started = size;
            std::thread::sleep(SETTLE);
        } else {
            while fleet.stats.subscribed.load(Relaxed) < size && ramp.elapsed() < RAMP_GIVE_UP {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ramp_took = ramp.elapsed();
        fleet.stats.ack_latency_us.lock().unwrap().clear();
        fleet.stats.stream_open_us.lock().unwrap().clear();
        let acked_before = fleet.stats.events_acked.load(Relaxed);
        let opens_before = fleet.stats.stream_opens.load(Relaxed);
        let closes_before = fleet.stats.idle_closes.load(Relaxed);
        std::thread::sleep(o.hold);
        let mut latencies = std::mem::take(&mut *fleet.stats.ack_latency_us.lock().unwrap());
        latencies.sort_unstable();
        let mut opening = std::mem::take(&mut *fleet.stats.stream_open_us.lock().unwrap());
        opening.sort_unstable();
        let acked = fleet.stats.events_acked.load(Relaxed) - acked_before;
        let opens = fleet.stats.stream_opens.load(Relaxed) - opens_before;
        let closes = fleet.stats.idle_closes.load(Relaxed) - closes_before;
        let streams_open = fleet.stats.streams_open.load(Relaxed);
        let (rss, threads) = collector_memory(pid);
        version += 1;
        let (fanout, reached, expected) = publish(collector, &scratch, &fleet, version);
        let (_, threads_after_push) = collector_memory(pid);
        let log_errors = store_errors(&collector.log_text()) - log_errors_before;
        let s = &fleet.stats;
        println!(
            "\n{} {size} agents ({} subscribed; ramp {:.0} s)",
            if dropping { "dropped back to" } else { "step" },
            s.subscribed.load(Relaxed),
            ramp_took.as_secs_f64()
        );
        println!(
            "  collector RSS {rss:.0} MiB ({:.1} KiB per agent over idle), threads {threads} (after the push {threads_after_push})",
            (rss - idle_rss) * 1024.0 / size.max(1) as f64
        );
        println!(
            "  events acknowledged while holding: {acked} ({:.0}/s), ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            acked as f64 / o.hold.as_secs_f64(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies.last().map_or(f64::NAN, |l| *l as f64 / 1000.0)
        );
        println!(
            "  event streams: {streams_open} open when memory was read; while holding {opens} opened, {closes} closed for idleness; opening p50 {:.1} ms, p99 {:.1} ms",
            percentile(&opening, 50.0),
            percentile(&opening, 99.0)
        );
        println!(
            "  publication v{version}: reached {reached} of {expected} agents in {:.0} ms",
            fanout.as_secs_f64() * 1000.0
        );
        println!(
            "  so far: enrolment refusals {}, event commit failures {}, heartbeat refusals {}, connect failures {}, heartbeats {}; store errors logged this step {log_errors}",
            s.enrol_refusals.load(Relaxed),
            s.commit_failures.load(Relaxed),
            s.heartbeat_refusals.load(Relaxed),
            s.connect_failures.load(Relaxed),
            s.heartbeats.load(Relaxed)
        );
        for (what, count) in s.take_refusals() {
            println!("    {count} x {what}");
        }
    }
    population.send_replace(0);
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Some(nodes) = &nodes {
        let stored = nodes.count("SELECT COUNT(*) FROM alerts").unwrap();
        let acked = fleet.stats.events_acked.load(Relaxed);
        println!(
            "\nevents acknowledged {acked}, stored in PostgreSQL {stored} (at least as many: some were in flight at the end)"
        );
    }
}
