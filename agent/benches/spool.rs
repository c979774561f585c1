//! Agent spool throughput: sealing (encode + Ed25519 sign) and committing a
//! realistic event to the durable spool, one transaction per event, as the
//! agent does when a rule matches.
//!
//! Signing is the expected ceiling, so the result is printed beside the rate
//! at which this machine signs on one thread, measured in the same run.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tutela_agent::event::EventDraft;
use tutela_agent::identity::Identity;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_proto::v1::{Observation, RuleMatch, Source};

const CONTEXT_BYTES: usize = 300;
const GOAL_EVENTS_PER_SEC: f64 = 15_000.0;

fn draft() -> EventDraft {
    let context: String =
        "they said they would hurt themselves after school today and nobody would notice. "
            .chars()
            .cycle()
            .take(CONTEXT_BYTES)
            .collect();
    EventDraft {
        time_ms: 1_767_000_000_000,
        user: "pupil.0421".into(),
        station: "lab-1-pc-07".into(),
        observation: Observation {
            source: Source::Typed as i32,
            context,
            app: "chromium".into(),
            app_path: "/usr/lib/chromium/chromium".into(),
            window_title: "New Tab - Chromium".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "self-harm/hurt-myself".into(),
            category: "self-harm".into(),
            severity: 4,
            term: "hurt themselves".into(),
            start: 15,
            end: 30,
        }],
        evidence: None,
        rules_version: 7,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

/// CPU nanoseconds the calling thread has run (Linux; 0 elsewhere).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Ed25519 signatures per second on one thread over `message`.
fn ring_sign_rate(identity: &Identity, message: &[u8], duration: Duration) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            std::hint::black_box(identity.sign(std::hint::black_box(message)));
        }
        done += 64;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn spool(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let identity = Identity::generate();
    let mut spool = Spool::open(
        &tmp.path().join("spool.db"),
        "bench-agent-00001",
        SpoolConfig::default(),
    )
    .unwrap();
    let template = draft();
    let sign_rate = ring_sign_rate(&identity, &[0x5a; 300], Duration::from_secs(1));

    let mut group = c.benchmark_group("agent spool");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("append + sign (300B context, 1 match)", |b| {
        b.iter_batched(
            || template.clone(),
            |draft| spool.append(&identity, draft).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // The summary line: a plain timed run of the same loop, with the CPU
    // time it took, which other load on the machine does not inflate.
    let run = Duration::from_secs(2);
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let mut events = 0u64;
    while start.elapsed() < run {
        for _ in 0..100 {
            spool.append(&identity, template.clone()).unwrap();
        }
        events += 100;
    }
    let rate = events as f64 / start.elapsed().as_secs_f64();
    let cpu_us = (thread_cpu_ns() - cpu) as f64 / 1000.0 / events as f64;
    println!(
        "spool append + sign: {rate:.0} events/s; ring sign (1 thread): {sign_rate:.0}/s; ratio {:.2}",
        rate / sign_rate,
    );
    println!(
        "  goal {GOAL_EVENTS_PER_SEC:.0} events/s: {}; CPU per append {cpu_us:.1} us ({:.0} events/s on an idle core); one sign {:.1} us",
        if rate >= GOAL_EVENTS_PER_SEC { "met" } else { "NOT met" },
        1e6 / cpu_us,
        1e6 / sign_rate,
    );
}

criterion_group!(benches, spool);
criterion_main!(benches);
