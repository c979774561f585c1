//! Events with captures through a serving collector (gRPC, TLS, signature
//! checks, sealing), with captures in the database and in S3-compatible
//! object storage (moto's server on loopback). Prints events stored per
//! second and capture megabytes per second for each.
//!
//! `cargo bench -p tutela-tests --bench captures_s3 -- [EVENTS] [CAPTURE_KIB]`
//! (default 400 events of 64 KiB). Needs moto (tests/setup-debian.sh).

use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};
use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{AckStatus, Observation, RuleMatch, SignedEvent};
use tutela_tests::s3::{Moto, BUCKET};
use tutela_tests::{free_port, Agent, Collector, Scratch};

/// Events sent on one stream before the next.
const PER_STREAM: usize = 50;

fn events(dir: &std::path::Path, n: u64, capture_bytes: usize) -> (Enrolment, Vec<SignedEvent>) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut prev = [0; 32];
    let mut out = Vec::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for seq in 1..=n {
        let mut jpeg = vec![0u8; capture_bytes];
        SystemRandom::new().fill(&mut jpeg).unwrap();
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            seq,
            prev,
            0,
            EventDraft {
                time_ms: now_ms,
                user: "pupil.one".into(),
                station: "LAB1-PC01".into(),
                observation: Observation {
                    context: "a benchmark event with a capture".into(),
                    ..Default::default()
                },
                matches: vec![RuleMatch {
                    rule_id: "self-harm/bench".into(),
                    category: "self-harm".into(),
                    severity: 4,
                    term: "bench".into(),
                    start: 0,
                    end: 2,
                }],
                evidence: Some(Evidence {
                    jpeg,
                    width: 640,
                    height: 360,
                }),
                rules_version: 1,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        prev = sealed.body_hash();
        out.push(sealed.to_wire());
    }
    (enrolment, out)
}

/// Sends every event (`PER_STREAM` to a stream) and waits for each ack;
/// returns the seconds taken.
fn send_all(enrolment: &Enrolment, events: Vec<SignedEvent>) -> Result<f64, String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
            .await
            .unwrap();
        let mut client = IngestClient::new(channel);
        let start = Instant::now();
        let mut events = events.into_iter().peekable();
        let mut sent = 0;
        while events.peek().is_some() {
            let batch: Vec<SignedEvent> = events.by_ref().take(PER_STREAM).collect();
            sent += batch.len() as u64;
            let mut acks = client
                .stream(tokio_stream::iter(batch))
                .await
                .unwrap()
                .into_inner();
            // An ack covers every event up to its number.
            let mut acked = 0;
            while let Some(ack) = acks
                .message()
                .await
                .map_err(|e| format!("the stream ended: {e}"))?
            {
                assert_eq!(ack.status, AckStatus::Stored as i32);
                acked = acked.max(ack.seq);
            }
            if acked != sent {
                return Err(format!("{acked} of {sent} events acknowledged"));
            }
        }
        Ok(start.elapsed().as_secs_f64())
    })
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(400);
    let kib = args.get(1).copied().unwrap_or(64) as usize;
    let scratch = Scratch::new("bench-captures-s3");
    let moto = Moto::start(free_port(), scratch.path("moto.log"));
    moto.create_bucket();
    std::env::set_var("TUTELA_BENCH_S3_KEY_ID", "moto-key-id");
    std::env::set_var("TUTELA_BENCH_S3_SECRET", "moto-secret");
    println!("{n} events, each with a {kib} KiB capture, {PER_STREAM} to a stream, one agent");
    println!("| captures in | events/s | capture MiB/s |");
    println!("|---|---|---|");
    for object_storage in [false, true] {
        let name = if object_storage { "bucket" } else { "db" };
        let mut collector = Collector::init(scratch.path(&format!("collector-{name}"))).unwrap();
        collector.set_console_port(free_port()).unwrap();
        if object_storage {
            collector
                .set_section(
                    "storage.captures",
                    &format!(
                        "url = \"s3://{BUCKET}/bench\"\nendpoint = \"{}\"\naccess_key_id_env = \"TUTELA_BENCH_S3_KEY_ID\"\nsecret_access_key_env = \"TUTELA_BENCH_S3_SECRET\"\nallow_http = true",
                        moto.endpoint()
                    ),
                )
                .unwrap();
        }
        collector.start().unwrap();
        let agent = Agent::new(scratch.path(&format!("agent-{name}")));
        agent.enrol(&collector.token(&[]).unwrap()).unwrap();
        let (enrolment, events) = events(&agent.dir, n, kib * 1024);
        let secs = send_all(&enrolment, events)
            .unwrap_or_else(|e| panic!("{e}; collector log:\n{}", tail(&collector.log_text())));
        println!(
            "| {} | {:.0} | {:.1} |",
            if object_storage {
                "S3-compatible object storage (moto, loopback)"
            } else {
                "the database (SQLite)"
            },
            n as f64 / secs,
            n as f64 * kib as f64 / 1024.0 / secs
        );
        collector.kill9();
    }
}
