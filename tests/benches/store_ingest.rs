//! Events through the collector's writer into each store backend, on this
//! machine: SQLite, PostgreSQL with one collector, two collectors sharing
//! the agents, and two collectors both given every agent's events (an agent
//! failing over and resending its spool). Prints events stored per second
//! and the ratio to SQLite.
//!
//! `cargo bench -p tutela-tests --bench store_ingest -- [AGENTS] [EVENTS_EACH]`
//! (default 50 agents x 400 events). Needs PostgreSQL installed (a
//! throwaway cluster is started on loopback).

use std::time::Instant;

use tutela_collector::store::Location;
use tutela_proto::v1::EventBody;
use tutela_tests::postgres::PgCluster;
use tutela_tests::store::{chain, enrol, keypair, location, node, runtime, stream, token, Node};

/// Stores `events_each` events of `agents` agents through `nodes`; each
/// agent's events go to one node (`every_node` false) or to all of them.
/// Returns the events stored per second.
fn measure(
    rt: &tokio::runtime::Runtime,
    nodes: &[Node],
    agents: usize,
    events_each: u64,
    every_node: bool,
) -> f64 {
    let chains: Vec<Vec<(EventBody, Vec<u8>)>> = rt.block_on(async {
        let secret = token(&nodes[0].store, agents as u32).await;
        let mut chains = Vec::new();
        for _ in 0..agents {
            let id = enrol(&nodes[0], &keypair(), &secret).await.unwrap();
            chains.push(chain(&id, events_each));
        }
        chains
    });
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (n, c) in chains.into_iter().enumerate() {
            let targets: Vec<_> = if every_node {
                nodes.iter().collect()
            } else {
                vec![&nodes[n % nodes.len()]]
            };
            for target in targets {
                let writer = target.writer.clone();
                let events = c.clone();
                tasks.push(tokio::spawn(async move {
                    let sent = stream(&writer, &events).await;
                    assert!(sent.iter().all(Result::is_ok), "refused: {sent:?}");
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    (agents as u64 * events_each) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let agents: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let events_each: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(400);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = {
        let nodes = [node(&rt, &Location::Sqlite(dir.path().to_owned()))];
        measure(&rt, &nodes, agents, events_each, false)
    };
    let pg = PgCluster::start().expect("a PostgreSQL cluster (install postgresql)");
    let mut rows = vec![("SQLite, one collector", sqlite)];
    for (name, db, collectors, every_node) in [
        ("PostgreSQL, one collector", "one_collector", 1, false),
        (
            "PostgreSQL, two collectors sharing the agents",
            "two_sharing",
            2,
            false,
        ),
        (
            "PostgreSQL, two collectors given every event",
            "two_every_event",
            2,
            true,
        ),
    ] {
        let url = pg.database(db).unwrap();
        let nodes: Vec<Node> = (0..collectors)
            .map(|_| node(&rt, &location(&url)))
            .collect();
        rows.push((name, measure(&rt, &nodes, agents, events_each, every_node)));
    }
    println!("{agents} agents x {events_each} events, writer batches of up to 1,000:");
    for (name, rate) in rows {
        println!(
            "  {name:<48} {rate:>9.0} events/s  {:.2}x SQLite",
            rate / sqlite
        );
    }
}
