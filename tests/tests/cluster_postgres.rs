//! Three real collectors (`tutela-collector serve`) on one PostgreSQL,
//! serving as one service (same certificate; each token names every node),
//! with 300 simulated agents sending 100,000 signed, chained events in all,
//! spread over the three. Mid-stream one collector is killed with SIGKILL:
//! its agents connect to the other nodes and resend what was not
//! acknowledged. At the end every event is stored exactly once, no gap is
//! recorded, every chain is intact, every agent moved off the dead node and
//! holds its subscription again, and no node logged a store error.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tutela_tests::cluster::Nodes;
use tutela_tests::load::{agent, Fleet, Options};
use tutela_tests::Scratch;

const NODES: usize = 3;
const AGENTS: usize = 300;
const EVENTS: u64 = 100_000;
/// Events per second the fleet offers (each agent one every 0.3 s).
const RATE: f64 = 1_000.0;
/// The share of events acknowledged before a node is killed.
const KILL_AFTER: f64 = 0.3;
/// The node killed.
const VICTIM: usize = 1;

fn wait(nodes: &Nodes, fleet: &Fleet, what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        let s = &fleet.stats;
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}: {} sent, {} acknowledged, {} agents done, {} subscribed; refusals {:#?}\nlogs:\n{}",
            s.events_sent.load(Relaxed),
            s.events_acked.load(Relaxed),
            s.agents_done.load(Relaxed),
            s.subscribed.load(Relaxed),
            s.take_refusals(),
            nodes.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_collector_killed_mid_stream_loses_and_doubles_nothing() {
    let scratch = Scratch::new("cluster-postgres");
    let mut nodes = Nodes::start(&scratch, NODES, true).unwrap();
    let token = nodes.collectors[0]
        .token(&["--uses", &AGENTS.to_string(), "--group", "lab-1"])
        .unwrap();
    let (fleet, population) = Fleet::with(
        &token,
        Options {
            event_every: Duration::from_secs_f64(AGENTS as f64 / RATE),
            events_each: EVENTS / AGENTS as u64,
            one_more_below: (EVENTS % AGENTS as u64) as usize,
            heartbeat_every: Duration::from_secs(5),
            connecting: 32,
            spread: true,
        },
    );
    assert_eq!(fleet.addrs.len(), NODES, "the token names every node");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    population.send_replace(AGENTS);
    for n in 0..AGENTS {
        rt.spawn(agent(fleet.clone(), n));
    }
    let s = &fleet.stats;
    let long = Duration::from_secs(600);
    wait(&nodes, &fleet, "every agent subscribed", long, || {
        s.subscribed.load(Relaxed) == AGENTS
    });
    for i in 0..NODES {
        assert_eq!(s.agents_on(i), AGENTS / NODES, "agents on node {i}");
    }
    wait(&nodes, &fleet, "events before the kill", long, || {
        s.events_acked.load(Relaxed) as f64 >= KILL_AFTER * EVENTS as f64
    });
    let on_victim = s.agents_at(VICTIM);
    nodes.collectors[VICTIM].kill9();
    let acked_at_kill = s.events_acked.load(Relaxed);
    assert!(
        acked_at_kill < EVENTS * 9 / 10,
        "killed mid-stream: {acked_at_kill} acknowledged"
    );
    wait(&nodes, &fleet, "every event acknowledged", long, || {
        s.agents_done.load(Relaxed) == AGENTS
    });
    wait(&nodes, &fleet, "every agent subscribed again", long, || {
        s.subscribed.load(Relaxed) == AGENTS
    });

    // Every agent of the dead node moved to a live one; the others stayed.
    assert_eq!(on_victim.len(), AGENTS / NODES);
    assert_eq!(s.agents_on(VICTIM), 0);
    let moved = s.moved.lock().unwrap().clone();
    assert_eq!(moved, on_victim, "exactly the dead node's agents moved");
    assert_eq!(s.events_sent.load(Relaxed), EVENTS);
    assert_eq!(s.events_acked.load(Relaxed), EVENTS);
    let refusals = s.take_refusals();
    assert!(refusals.is_empty(), "refused: {refusals:#?}");
    assert_eq!(s.enrol_refusals.load(Relaxed), 0);
    assert_eq!(s.commit_failures.load(Relaxed), 0);
    assert_eq!(s.heartbeat_refusals.load(Relaxed), 0);
    assert_eq!(nodes.store_errors(), 0, "{}", nodes.logs());

    // Counted in PostgreSQL: each event once, no gap, every chain intact.
    let count = |sql: &str| nodes.count(sql).unwrap();
    let events = EVENTS as i64;
    assert_eq!(count("SELECT COUNT(*) FROM alerts"), events);
    assert_eq!(
        count("SELECT COUNT(DISTINCT (agent_id, seq)) FROM alerts"),
        events
    );
    assert_eq!(count("SELECT COUNT(*) FROM alerts WHERE NOT chain_ok"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM gaps"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM agents"), AGENTS as i64);
    assert_eq!(count("SELECT SUM(last_seq)::BIGINT FROM agents"), events);
    // Each agent's numbers run 1..=last_seq without a hole.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM agents a WHERE last_seq = \
             (SELECT COUNT(*) FROM alerts e WHERE e.agent_id = a.agent_id) \
             AND last_seq = (SELECT MAX(seq) FROM alerts e WHERE e.agent_id = a.agent_id)"
        ),
        AGENTS as i64
    );
    println!(
        "{EVENTS} events from {AGENTS} agents on {NODES} collectors; node {VICTIM} killed after {acked_at_kill} acknowledgements; {} agents moved, {} events resent, {} acknowledgements said duplicate",
        moved.len(),
        s.events_resent.load(Relaxed),
        s.acks_duplicate.load(Relaxed)
    );
    population.send_replace(0);
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(nodes);
}
