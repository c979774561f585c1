//! Event throughput end to end (issue 16): one or more real collectors
//! (`tutela-collector serve`, separate processes) on SQLite or on one
//! PostgreSQL, and many simulated agents in this process (each with its own
//! key and pinned TLS connection, a rules subscription, an event stream and
//! heartbeats; `tests/src/load.rs`). Every agent is given every node's
//! address and starts on node `n % nodes`; an agent whose node goes away
//! moves to another and resends what was not acknowledged.
//!
//! Phases: the fleet connects; then it sends at the sustained rate for a
//! while; then, if asked, at the burst rate for a while; then it stops
//! sending and waits until everything sent is acknowledged, and counts what
//! the store holds. For each phase it prints events sent and acknowledged
//! per second, acknowledgement latency p50/p99/max and the share within
//! 1 s, each node's RSS and CPU (and PostgreSQL's CPU, and this process's),
//! and store errors in the nodes' logs. At the end: events sent,
//! acknowledged, stored (counted in the database), stored twice, gaps and
//! broken chains, resends and duplicate acknowledgements.
//!
//! Run (release binaries; `ulimit -n` above the agents):
//! `cargo build --release --bins -p tutela-agent -p tutela-collector --features tutela-collector/postgres`
//! then `cargo bench -p tutela-tests --bench cluster_load -- [--postgres]
//! [--collectors N] [--agents N] [--events-per-sec N] [--secs S]
//! [--burst RATE SECS] [--burst-batch N] [--kill-at SECS] [--heartbeat-secs S]`, e.g.
//! `-- --postgres --collectors 2 --agents 2000 --events-per-sec 2000 --secs 60 --burst 10000 120`.
//!
//! Before each phase every agent seals (signs and chains) the events it
//! will send in it, so the timed phases spend the generator's share of the
//! cores on connections, not on signatures. In the burst each agent sends
//! `--burst-batch` events together (default 10), as an agent sends its
//! spool after an outage: at 10,000 events/s over 2,000 agents, ten events
//! from each agent every 2 s.
//! `--kill-at SECS` kills the last node with SIGKILL that many seconds into
//! the sustained phase. Defaults: SQLite, 1 collector, 2,000 agents,
//! 2,000 events/s for 60 s, no burst, a heartbeat per agent every 60 s.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tutela_tests::cluster::{cpu_seconds, memory, percentile_ms, share_within, Nodes};
use tutela_tests::load::{agent, Fleet, Options};
use tutela_tests::Scratch;

/// How long connecting may take before the phases start anyway.
const RAMP_GIVE_UP: Duration = Duration::from_secs(600);
/// How long the fleet may take to have everything acknowledged at the end.
const DRAIN_GIVE_UP: Duration = Duration::from_secs(300);

struct Args {
    postgres: bool,
    collectors: usize,
    agents: usize,
    rate: f64,
    secs: f64,
    burst: Option<(f64, f64)>,
    burst_batch: usize,
    kill_at: Option<f64>,
    heartbeat: f64,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        postgres: false,
        collectors: 1,
        agents: 2000,
        rate: 2000.0,
        secs: 60.0,
        burst: None,
        burst_batch: 10,
        kill_at: None,
        heartbeat: 60.0,
    };
    let mut i = 0;
    let number = |i: usize| -> f64 {
        argv.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", argv[i - 1]))
    };
    while i < argv.len() {
        match argv[i].as_str() {
            "--postgres" => a.postgres = true,
            "--collectors" => {
                a.collectors = number(i + 1) as usize;
                i += 1;
            }
            "--agents" => {
                a.agents = number(i + 1) as usize;
                i += 1;
            }
            "--events-per-sec" => {
                a.rate = number(i + 1);
                i += 1;
            }
            "--secs" => {
                a.secs = number(i + 1);
                i += 1;
            }
            "--burst" => {
                a.burst = Some((number(i + 1), number(i + 2)));
                i += 2;
            }
            "--burst-batch" => {
                a.burst_batch = number(i + 1) as usize;
                i += 1;
            }
            "--kill-at" => {
                a.kill_at = Some(number(i + 1));
                i += 1;
            }
            "--heartbeat-secs" => {
                a.heartbeat = number(i + 1);
                i += 1;
            }
            // `cargo bench` passes `--bench`.
            _ => {}
        }
        i += 1;
    }
    a
}

/// CPU seconds of each node, PostgreSQL and this process so far.
struct Cpu {
    nodes: Vec<f64>,
    postgres: f64,
    generator: f64,
}

fn cpu(nodes: &Nodes) -> Cpu {
    Cpu {
        nodes: nodes
            .pids()
            .iter()
            .map(|p| p.map_or(0.0, |p| cpu_seconds(p, false)))
            .collect(),
        postgres: nodes
            .pg
            .as_ref()
            .and_then(|pg| pg.server_pid())
            .map_or(0.0, |p| cpu_seconds(p, true)),
        generator: cpu_seconds(std::process::id(), false),
    }
}

/// Has every agent seal the events it will send at `rate` for `secs`
/// seconds (and a few more), and waits until all have.
fn prepare(fleet: &Fleet, agents: usize, rate: f64, secs: f64) {
    let s = &fleet.stats;
    let each = (rate * secs / agents.max(1) as f64).ceil() as u64 + 16;
    s.agents_prepared.store(0, Relaxed);
    let started = Instant::now();
    fleet.prepare(each);
    while s.agents_prepared.load(Relaxed) < agents && started.elapsed() < RAMP_GIVE_UP {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rss, _) = memory(std::process::id());
    println!(
        "prepared: {} agents sealed {each} events each in {:.0} s (generator RSS {rss:.0} MiB)",
        s.agents_prepared.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// Runs one phase of `secs` seconds and prints what it saw.
fn phase(name: &str, secs: f64, nodes: &mut Nodes, fleet: &Fleet, kill_at: Option<f64>) {
    let s = &fleet.stats;
    s.ack_latency_us.lock().unwrap().clear();
    let sent_before = s.events_sent.load(Relaxed);
    let acked_before = s.events_acked.load(Relaxed);
    let errors_before = nodes.store_errors();
    let cpu_before = cpu(nodes);
    let start = Instant::now();
    let mut killed = None;
    while start.elapsed().as_secs_f64() < secs {
        if let Some(at) = kill_at {
            if killed.is_none() && start.elapsed().as_secs_f64() >= at {
                let victim = nodes.collectors.len() - 1;
                let on_it = s.agents_on(victim);
                nodes.collectors[victim].kill9();
                killed = Some((victim, on_it));
                println!("  node {victim} killed (SIGKILL) at {at:.0} s with {on_it} agents on it");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = cpu(nodes);
    let mut latencies = std::mem::take(&mut *s.ack_latency_us.lock().unwrap());
    latencies.sort_unstable();
    let sent = s.events_sent.load(Relaxed) - sent_before;
    let acked = s.events_acked.load(Relaxed) - acked_before;
    println!("\n{name} ({wall:.0} s)");
    println!(
        "  sent {sent} ({:.0}/s), acknowledged {acked} ({:.0}/s); ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; within 1 s: {:.2}%",
        sent as f64 / wall,
        acked as f64 / wall,
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        latencies.last().map_or(f64::NAN, |l| *l as f64 / 1000.0),
        100.0 * share_within(&latencies, 1000)
    );
    let mut line = String::from("  ");
    for (i, pid) in nodes.pids().iter().enumerate() {
        let used = cpu_after.nodes[i] - cpu_before.nodes[i];
        match pid {
            Some(pid) => {
                let (rss, threads) = memory(*pid);
                line.push_str(&format!(
                    "node {i}: RSS {rss:.0} MiB, {threads} threads, CPU {:.0}% of a core, {} agents; ",
                    100.0 * used / wall,
                    s.agents_on(i)
                ));
            }
            None => line.push_str(&format!("node {i}: stopped; ")),
        }
    }
    if nodes.pg.is_some() {
        line.push_str(&format!(
            "PostgreSQL CPU {:.0}% of a core; ",
            100.0 * (cpu_after.postgres - cpu_before.postgres) / wall
        ));
    }
    line.push_str(&format!(
        "generator CPU {:.0}% of a core",
        100.0 * (cpu_after.generator - cpu_before.generator) / wall
    ));
    println!("{line}");
    println!(
        "  store errors logged {}; commit failures so far {}, lost connections {}, agents moved {}, refusals:",
        nodes.store_errors() - errors_before,
        s.commit_failures.load(Relaxed),
        s.connections_lost.load(Relaxed),
        s.moved.lock().unwrap().len()
    );
    for (what, count) in s.take_refusals() {
        println!("    {count} x {what}");
    }
    if let Some((victim, on_it)) = killed {
        println!(
            "  of the {on_it} agents on node {victim}, {} are now on live nodes",
            s.moved.lock().unwrap().len()
        );
    }
}

fn main() {
    let a = args();
    let scratch = Scratch::new("bench-cluster-load");
    let mut nodes = Nodes::start(&scratch, a.collectors, a.postgres).unwrap();
    let token = nodes.collectors[0]
        .token(&["--uses", &a.agents.to_string(), "--group", "load"])
        .unwrap();
    let every = |rate: f64| Duration::from_secs_f64(a.agents as f64 / rate.max(0.001));
    let (fleet, population) = Fleet::with(
        &token,
        Options {
            event_every: every(a.rate),
            events_each: u64::MAX,
            one_more_below: 0,
            heartbeat_every: Duration::from_secs_f64(a.heartbeat),
            connecting: 64,
            spread: true,
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "cluster load: {} collector(s) on {}, {} agents, {} events/s for {} s{}, a heartbeat per agent every {} s; this process simulates every agent on the same cores",
        a.collectors,
        if a.postgres { "PostgreSQL" } else { "SQLite" },
        a.agents,
        a.rate,
        a.secs,
        a.burst
            .map(|(r, s)| format!(", then {r} events/s for {s} s"))
            .unwrap_or_default(),
        a.heartbeat
    );
    // Connecting: nobody sends until every agent is subscribed.
    fleet.set_event_every(Duration::from_secs(3600));
    population.send_replace(a.agents);
    let ramp = Instant::now();
    for n in 0..a.agents {
        rt.spawn(agent(fleet.clone(), n));
    }
    let s = &fleet.stats;
    while s.subscribed.load(Relaxed) < a.agents && ramp.elapsed() < RAMP_GIVE_UP {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "connected: {} agents subscribed in {:.0} s",
        s.subscribed.load(Relaxed),
        ramp.elapsed().as_secs_f64()
    );
    prepare(&fleet, a.agents, a.rate, a.secs);
    // Agents pick the new rate up after the event they were waiting for.
    fleet.set_event_every(every(a.rate));
    std::thread::sleep(Duration::from_secs(5));
    phase(
        &format!("sustained {} events/s", a.rate),
        a.secs,
        &mut nodes,
        &fleet,
        a.kill_at,
    );
    if let Some((rate, secs)) = a.burst {
        // Paused while the burst's events are sealed.
        fleet.set_event_every(Duration::from_secs(3600));
        prepare(&fleet, a.agents, rate, secs);
        fleet.set_batch(a.burst_batch);
        fleet.set_event_every(every(rate));
        phase(
            &format!(
                "burst {rate} events/s, {} events per agent at once",
                a.burst_batch
            ),
            secs,
            &mut nodes,
            &fleet,
            None,
        );
    }
    // Stop sending (each agent sends the event it was waiting for), then
    // wait for everything sent to be acknowledged.
    fleet.set_event_every(Duration::from_secs(3600));
    let drain = Instant::now();
    let mut last_sent = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let sent = s.events_sent.load(Relaxed);
        if (sent == last_sent && s.events_acked.load(Relaxed) >= sent)
            || drain.elapsed() > DRAIN_GIVE_UP
        {
            break;
        }
        last_sent = sent;
    }
    let sent = s.events_sent.load(Relaxed);
    let acked = s.events_acked.load(Relaxed);
    let count = |sql: &str| nodes.count(sql).unwrap();
    let stored = count("SELECT COUNT(*) FROM alerts");
    let distinct = count("SELECT COUNT(*) FROM (SELECT DISTINCT agent_id, seq FROM alerts) AS d");
    let gaps = count("SELECT COUNT(*) FROM gaps");
    let broken = count("SELECT COUNT(*) FROM alerts WHERE NOT chain_ok");
    println!(
        "\nat the end ({:.0} s to have everything acknowledged): sent {sent}, acknowledged {acked}, stored {stored} ({} stored twice), lost {}; gaps {gaps}, broken chains {broken}; resent after a lost connection {}, acknowledgements saying duplicate {}; store errors logged in all {}",
        drain.elapsed().as_secs_f64(),
        stored - distinct,
        sent as i64 - distinct,
        s.events_resent.load(Relaxed),
        s.acks_duplicate.load(Relaxed),
        nodes.store_errors()
    );
    population.send_replace(0);
    rt.shutdown_timeout(Duration::from_secs(5));
}
