//! Collectors on PostgreSQL for the console tests: a collector on a given
//! database with its console on, typed alerts streamed to it as an agent
//! sends them, and the alert ids a queue page lists.

use std::path::Path;

use tutela_agent::event::seal;
use tutela_agent::identity::{Enrolment, Identity};

use crate::load::now_ms;
use crate::typed::TypedMatch;
use crate::{free_port, Collector, Scratch};

/// A collector in `scratch/name` on the PostgreSQL at `url`, with its
/// console on; returns it and the console's address.
pub fn node(scratch: &Scratch, name: &str, url: &str) -> (Collector, String) {
    let collector = Collector::init(scratch.path(name)).unwrap();
    collector
        .set_section("storage", &format!("url = \"{url}\""))
        .unwrap();
    let console = collector.set_console_port(free_port()).unwrap();
    (collector, console)
}

/// An alert to send: (user, context, matched word, category, severity).
pub type Seed<'a> = (&'a str, &'a str, &'a str, &'a str, u32);

/// Typed alerts from the agent enrolled in `dir` (its first events, chained),
/// streamed to the collector that enrolled it and acknowledged as stored.
pub fn send(dir: &Path, seeds: &[Seed<'_>]) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut prev = [0; 32];
    let mut events = Vec::new();
    for (n, (user, context, word, category, severity)) in seeds.iter().enumerate() {
        let typed = TypedMatch {
            time_ms: now_ms() - 60_000 + n as i64,
            user,
            station: "LAB1-PC07",
            context,
            word,
            category,
            severity: *severity,
        };
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            n as u64 + 1,
            prev,
            0,
            typed.draft(None),
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    let last = events.len() as u64;
    crate::ingest::stream_stored(&enrolment, events, last);
}

/// The alert ids a queue page lists.
pub fn listed(body: &str) -> Vec<i64> {
    body.match_indices("<tr data-id=\"")
        .filter_map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// The port of a console address such as `http://127.0.0.1:PORT/`.
pub fn port_of(console: &str) -> u16 {
    console
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
