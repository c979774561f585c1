//! Collector ingest throughput: signed events streamed over the real gRPC
//! endpoint (TLS, pinned certificate) on loopback by several agents at once,
//! each verified and committed before it is acknowledged.
//!
//! Events are sealed before the clock starts, so the figure is the
//! collector's (plus a light client on the same machine). Ed25519
//! verification is the ceiling, so each result is printed beside the rate at
//! which ring verifies one signature at a time with two threads, measured in
//! the same run: the ratio is the figure to watch. The collector checks a
//! burst's signatures as a batch, which costs less per event than one ring
//! verification; the rate of that verifier is printed too, with ingest's
//! share of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ring::signature::{UnparsedPublicKey, ED25519};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::Identity;
use tutela_agent::pinning;
use tutela_collector::config::{CollectorConfig, Console};
use tutela_collector::{secrets, serve, store};
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{AckStatus, Observation, RuleMatch, SignedEvent, Source};

/// Concurrent agent streams.
const STREAMS: usize = 4;
/// Target size of a signed event body.
const BODY_BYTES: usize = 300;
/// Size of a capture in the capture benchmark (a downscaled JPEG screenshot).
const CAPTURE_BYTES: usize = 40 * 1024;
/// Threads verifying in the baseline: one per core of the reference machine.
const VERIFY_THREADS: usize = 2;
/// How long the verify baseline runs before each round.
const VERIFY_BASELINE: Duration = Duration::from_millis(300);
/// Thread names, for CPU accounting.
const SERVER_THREADS: &str = "collector-rt";
const CLIENT_THREADS: &str = "bench-client";
const WRITER_THREAD: &str = "tutela-writer";

/// One scenario: events per stream per round, and the capture each carries.
struct Scenario {
    name: &'static str,
    per_stream: usize,
    capture_bytes: usize,
    goal_events_per_sec: f64,
    /// Goal for ingest over verify-only throughput, where one is set.
    ratio_goal: Option<f64>,
}

/// A collector serving from a fresh data directory, and a client with one
/// pinned TLS connection per stream.
struct Harness {
    shutdown: Option<oneshot::Sender<()>>,
    channels: Vec<Channel>,
    enrol: rusqlite::Connection,
    next_agent: usize,
    client: Runtime,
    // The collector runs on its own runtime, sized like the binary's.
    _server: Runtime,
    // Fields drop in order: the directory goes after the collector.
    _tmp: tempfile::TempDir,
}

impl Harness {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("collector");
        std::fs::create_dir_all(&dir).unwrap();
        secrets::create_missing(&dir, &[]).unwrap();
        let enrol = store::open(&dir).unwrap();
        // Every index a serving collector keeps on `alerts` (the review
        // console's and the summary's too): the writer pays for each.
        tutela_collector::console::schema::create(&enrol).unwrap();
        tutela_collector::summary::ensure_schema(&enrol).unwrap();
        let config_path = dir.join("collector.toml");
        let config = CollectorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Ingest only: the review console is measured on its own.
            console: Console {
                enabled: false,
                ..Console::default()
            },
            ..CollectorConfig::default()
        };
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let config = CollectorConfig::load(&config_path).unwrap();
        let fingerprint = secrets::load_tls(&dir).unwrap().fingerprint;

        let server = tokio::runtime::Builder::new_multi_thread()
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let addr = server.block_on(async {
            let (addr, serving) = serve::bind(&dir, &config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    eprintln!("collector stopped: {e:#}");
                }
            });
            addr
        });

        // The client is kept light: one worker, events sealed in advance.
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(CLIENT_THREADS)
            .enable_all()
            .build()
            .unwrap();
        let channels = client.block_on(async {
            let mut channels = Vec::with_capacity(STREAMS);
            for _ in 0..STREAMS {
                channels.push(
                    pinning::connect(&addr.to_string(), &fingerprint)
                        .await
                        .unwrap(),
                );
            }
            channels
        });
        Self {
            shutdown: Some(stop),
            channels,
            enrol,
            next_agent: 0,
            client,
            _server: server,
            _tmp: tmp,
        }
    }

    /// Enrols `STREAMS` new agents and seals `per_stream` chained events for
    /// each (not timed).
    fn prepare(&mut self, per_stream: usize, capture_bytes: usize) -> Vec<Vec<SignedEvent>> {
        let agents: Vec<(String, Identity)> = (0..STREAMS)
            .map(|_| {
                self.next_agent += 1;
                let agent_id = format!("bench-agent-{:05}", self.next_agent);
                let identity = Identity::generate();
                self.enrol
                    .execute(
                        "INSERT INTO agents (agent_id, public_key, station, enrolled_ms) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![agent_id, identity.public_key(), "lab-1-pc-07", store::now_ms()],
                    )
                    .unwrap();
                (agent_id, identity)
            })
            .collect();
        std::thread::scope(|scope| {
            let sealing: Vec<_> = agents
                .iter()
                .map(|(agent_id, identity)| {
                    scope.spawn(move || chain(identity, agent_id, per_stream, capture_bytes))
                })
                .collect();
            sealing.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Streams every event over its own stream and waits for every
    /// acknowledgement; returns the time taken (timed).
    fn stream(&self, streams: Vec<Vec<SignedEvent>>) -> Duration {
        let channels = self.channels.clone();
        self.client.block_on(async move {
            let start = Instant::now();
            let tasks: Vec<_> = streams
                .into_iter()
                .zip(channels)
                .map(|(events, channel)| tokio::spawn(send_all(channel, events)))
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            start.elapsed()
        })
    }

    fn stored_events(&self) -> i64 {
        self.enrol
            .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        self.channels.clear();
    }
}

async fn send_all(channel: Channel, events: Vec<SignedEvent>) {
    let sent = events.len();
    let last_seq = events
        .last()
        .map(|e| {
            use prost::Message;
            tutela_proto::v1::EventBody::decode(e.body.as_slice())
                .unwrap()
                .seq
        })
        .unwrap_or(0);
    let mut client = IngestClient::new(channel)
        .max_encoding_message_size(4 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024);
    let mut acks = client
        .stream(tokio_stream::iter(events))
        .await
        .expect("the collector accepts the stream")
        .into_inner();
    // An acknowledgement covers its event and every earlier one on the stream.
    let mut acked = 0;
    while let Some(ack) = acks.message().await.expect("no event is refused") {
        assert_eq!(ack.status, AckStatus::Stored as i32, "{ack:?}");
        assert!(ack.seq > acked, "acknowledgements advance: {ack:?}");
        acked = ack.seq;
    }
    assert_eq!(acked, last_seq, "all {sent} events are acknowledged");
}

fn draft(context_len: usize, capture_bytes: usize, n: usize) -> EventDraft {
    let context: String =
        "they said they would hurt themselves after school today and nobody would notice. "
            .chars()
            .cycle()
            .take(context_len)
            .collect();
    let evidence = (capture_bytes > 0).then(|| Evidence {
        // Incompressible, like JPEG data.
        jpeg: (0..capture_bytes)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ n as u8)
            .collect(),
        width: 1280,
        height: 720,
    });
    EventDraft {
        time_ms: store::now_ms(),
        user: "pupil.0421".into(),
        station: "lab-1-pc-07".into(),
        observation: Observation {
            source: Source::Typed as i32,
            context,
            app: "chromium".into(),
            window_title: "New Tab - Chromium".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "self-harm/hurt-myself".into(),
            category: "self-harm".into(),
            severity: 4,
            term: "hurt themselves".into(),
            start: 30,
            end: 45,
        }],
        evidence,
        rules_version: 7,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

/// The context length that makes a sealed body `BODY_BYTES` long.
fn context_len_for_body(identity: &Identity, agent_id: &str) -> usize {
    let probe = |len| {
        seal(identity, agent_id, 1, [0; 32], 0, draft(len, 0, 0))
            .body
            .len()
    };
    let base = probe(100);
    (100 + BODY_BYTES).saturating_sub(base).max(1)
}

fn chain(identity: &Identity, agent_id: &str, n: usize, capture_bytes: usize) -> Vec<SignedEvent> {
    let context_len = context_len_for_body(identity, agent_id);
    let mut prev_hash = [0u8; 32];
    (1..=n)
        .map(|seq| {
            let sealed = seal(
                identity,
                agent_id,
                seq as u64,
                prev_hash,
                0,
                draft(context_len, capture_bytes, seq),
            );
            prev_hash = sealed.body_hash();
            SignedEvent {
                body: sealed.body,
                signature: sealed.signature,
                capture: sealed.capture,
            }
        })
        .collect()
}

/// CPU nanoseconds the calling thread has run (Linux; 0 elsewhere).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The verify baseline: verifications per second with `threads` threads,
/// and CPU nanoseconds per verification.
struct VerifyRate {
    per_sec: f64,
    cpu_ns: f64,
}

/// Ed25519 verifications by `threads` threads for `duration`, over a sealed
/// event body like the ones the collector receives.
fn ring_verify_rate(threads: usize, duration: Duration) -> VerifyRate {
    let identity = Identity::generate();
    let event = chain(&identity, "bench-verify", 1, 0).pop().unwrap();
    let public_key = identity.public_key().to_vec();
    let message = tutela_proto::event_message(&event.body);
    let start = Instant::now();
    let (done, cpu_ns) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let cpu = thread_cpu_ns();
                    let mut done = 0u64;
                    while start.elapsed() < duration {
                        for _ in 0..64 {
                            UnparsedPublicKey::new(&ED25519, &public_key)
                                .verify(
                                    std::hint::black_box(&message),
                                    std::hint::black_box(&event.signature),
                                )
                                .unwrap();
                        }
                        done += 64;
                    }
                    (done, thread_cpu_ns() - cpu)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |(n, ns), (dn, dns)| (n + dn, ns + dns))
    });
    VerifyRate {
        per_sec: done as f64 / start.elapsed().as_secs_f64(),
        cpu_ns: cpu_ns as f64 / done as f64,
    }
}

/// Signatures per second checked by the collector's own verifier
/// (`tutela_collector::signature`, ZIP-215) with `threads` threads, in
/// batches of `batch` events from one agent, the shape a burst on one
/// stream has at ingest.
fn collector_verify_rate(threads: usize, batch: usize, duration: Duration) -> f64 {
    use tutela_collector::signature::{verify_all, PublicKey};
    let identity = Identity::generate();
    let events = chain(&identity, "bench-verify", batch, 0);
    let key = PublicKey::parse(identity.public_key()).unwrap();
    let messages: Vec<Vec<u8>> = events
        .iter()
        .map(|e| tutela_proto::event_message(&e.body))
        .collect();
    let items: Vec<_> = events
        .iter()
        .zip(&messages)
        .map(|(e, m)| (&key, m.as_slice(), e.signature.as_slice()))
        .collect();
    let start = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0;
                    while start.elapsed() < duration {
                        verify_all(std::hint::black_box(&items)).unwrap();
                        done += items.len();
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

/// CPU time consumed so far by this process's threads, in nanoseconds,
/// summed by thread name (Linux; empty elsewhere).
fn cpu_by_thread() -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_owned()).or_insert(0) += ns;
    }
    out
}

/// One timed round and what surrounded it.
struct Round {
    took: Duration,
    /// Two-thread verify baseline measured just before the round.
    verify: VerifyRate,
    /// CPU nanoseconds spent during the round, by thread name.
    cpu: HashMap<String, u64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn run_scenario(c: &mut Criterion, scenario: &Scenario) {
    let mut harness = Harness::start();
    let events_per_round = (scenario.per_stream * STREAMS) as u64;
    let rounds: Mutex<Vec<Round>> = Mutex::new(Vec::new());

    let sample_size = 10;
    let mut group = c.benchmark_group("collector ingest");
    group
        .sample_size(sample_size)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(events_per_round));
    group.bench_function(scenario.name, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let streams = harness.prepare(scenario.per_stream, scenario.capture_bytes);
                // The baseline is taken just before each round, so that load
                // from elsewhere on the machine affects both alike.
                let verify = ring_verify_rate(VERIFY_THREADS, VERIFY_BASELINE);
                let before = cpu_by_thread();
                let took = harness.stream(streams);
                let mut cpu = cpu_by_thread();
                for (name, ns) in cpu.iter_mut() {
                    *ns = ns.saturating_sub(before.get(name).copied().unwrap_or(0));
                }
                rounds.lock().unwrap().push(Round { took, verify, cpu });
                timed += took;
            }
            timed
        })
    });
    group.finish();

    let rounds = rounds.into_inner().unwrap();
    if rounds.is_empty() {
        // Filtered out on the command line.
        return;
    }
    let stored = harness.stored_events();
    assert_eq!(
        stored as usize,
        rounds.len() * scenario.per_stream * STREAMS,
        "every acknowledged event is stored"
    );
    // Criterion's samples are the last rounds; earlier ones were warm-up.
    let measured = &rounds[rounds.len().saturating_sub(sample_size)..];
    let events = events_per_round as f64 * measured.len() as f64;
    let rate = events
        / measured
            .iter()
            .map(|r| r.took)
            .sum::<Duration>()
            .as_secs_f64();
    let per_round: Vec<f64> = measured
        .iter()
        .map(|r| events_per_round as f64 / r.took.as_secs_f64())
        .collect();
    let verify_rate = median(measured.iter().map(|r| r.verify.per_sec).collect());
    let verify_cpu_us = median(measured.iter().map(|r| r.verify.cpu_ns).collect()) / 1000.0;
    let ratio = median(
        measured
            .iter()
            .zip(&per_round)
            .map(|(r, rate)| rate / r.verify.per_sec)
            .collect(),
    );
    // The collector verifies bursts in batches (see `signature`): its own
    // verifier's ceiling, beside ring's, shows what the rest of ingest costs.
    let own_verify = collector_verify_rate(VERIFY_THREADS, 64, VERIFY_BASELINE * 3);
    let cpu_us = |prefix: &str| -> f64 {
        let ns: u64 = measured
            .iter()
            .flat_map(|r| r.cpu.iter())
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, ns)| ns)
            .sum();
        ns as f64 / 1000.0 / events
    };
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "{}: {rate:.0} events/s; ring verify ({VERIFY_THREADS} threads): {verify_rate:.0}/s; ratio {ratio:.2}",
        scenario.name
    );
    let ratio_verdict = scenario
        .ratio_goal
        .map(|goal| format!("; ratio goal {goal:.2}: {}", verdict(ratio >= goal)))
        .unwrap_or_default();
    println!(
        "  goal {:.0} events/s: {}{ratio_verdict}",
        scenario.goal_events_per_sec,
        verdict(rate >= scenario.goal_events_per_sec),
    );
    println!(
        "  {} rounds of {STREAMS} streams x {} events (body {} B, capture {} B): {:.0}..{:.0} events/s; medians of per-round rate {:.0}, verify {verify_rate:.0}",
        measured.len(),
        scenario.per_stream,
        BODY_BYTES,
        scenario.capture_bytes,
        per_round.iter().copied().fold(f64::MAX, f64::min),
        per_round.iter().copied().fold(0.0, f64::max),
        median(per_round.clone()),
    );
    println!(
        "  collector's verifier (ZIP-215, batches of 64 from one agent, {VERIFY_THREADS} threads): {own_verify:.0}/s; ingest is {:.2} of it",
        rate / own_verify
    );
    let (server_us, writer_us, client_us) = (
        cpu_us(SERVER_THREADS),
        cpu_us(WRITER_THREAD),
        cpu_us(CLIENT_THREADS),
    );
    // The runtime's share includes checking the signatures.
    println!(
        "  CPU per event: collector runtime {server_us:.1} us (signature checks included) + writer {writer_us:.1} us + client {client_us:.1} us = {:.1} us; one ring verify {verify_cpu_us:.1} us",
        server_us + writer_us + client_us,
    );
}

fn ingest(c: &mut Criterion) {
    run_scenario(
        c,
        &Scenario {
            name: "ingest 300B",
            per_stream: 2_500,
            capture_bytes: 0,
            goal_events_per_sec: 20_000.0,
            ratio_goal: Some(0.8),
        },
    );
    run_scenario(
        c,
        &Scenario {
            name: "ingest 300B + 40KB capture",
            per_stream: 250,
            capture_bytes: CAPTURE_BYTES,
            goal_events_per_sec: 1_000.0,
            ratio_goal: None,
        },
    );
}

criterion_group!(benches, ingest);
criterion_main!(benches);
