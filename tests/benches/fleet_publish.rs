//! Publish fan-out (issue 6): a real collector on loopback and 50 agent
//! identities, each enrolled with its own token and running the agent's real
//! rules sync (the `Rules.Subscribe` stream) and heartbeat tasks. Each run
//! writes a pack one version newer and runs `tutela-collector rules push`;
//! the time measured is from just before the push starts to the moment the
//! collector's store records all 50 agents running the new version (so it
//! includes linting, signing, the fan-out, each agent verifying and compiling
//! the bundle, and the heartbeat that reports it). Target: at most 2 s.
//!
//! The 50 agents share this process (and this machine's cores), so each
//! publish costs 50 signature checks and compiles here at once; on a real
//! fleet every station does its own.
//!
//! By default the pack is a small one (the fan-out itself); `en-gb` pushes
//! the shipped en-GB pack instead (about 130 KB of TOML per bundle, and each
//! of the 50 in-process agents compiles it on this machine's cores).
//!
//! Run: `cargo build --release --bins -p tutela-collector` and then
//! `cargo bench -p tutela-tests --bench fleet_publish [-- RUNS] [en-gb]`
//! (default 10 runs).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tutela_agent::monitor::LiveRules;
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack};
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{run_ok, Collector, Scratch};

const AGENTS: usize = 50;
const TARGET: Duration = Duration::from_secs(2);
const DEFAULT_RUNS: u32 = 10;
/// A run that takes longer than this is reported as failed outright.
const GIVE_UP: Duration = Duration::from_secs(60);

/// The shipped en-GB pack as `version`, with a changelog entry for it.
fn en_gb(version: u32) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/packs/en-GB.toml"
    ))
    .expect("the shipped en-GB pack");
    if version == 1 {
        return text;
    }
    text.replacen("\nversion = 1\n", &format!("\nversion = {version}\n"), 1)
        .replacen(
            "[[changelog]]\nversion = 1\n",
            &format!("[[changelog]]\nversion = {version}\ndate = \"2026-11-22\"\nnotes = \"Bench release.\"\n\n[[changelog]]\nversion = 1\n"),
            1,
        )
}

fn small(version: u32) -> String {
    let about = About {
        notes: "Bench release",
        ..About::new(
            "fleet-bench",
            "Fleet bench pack",
            "A small pack for the publish fan-out benchmark.",
        )
    };
    let zip_gun = format!("zip gun {version}");
    small_pack(&about, version, &[weapons(&["pipe bomb", &zip_gun])])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Enrols one identity and builds the agent's rules sync for it.
fn device(
    collector: &Collector,
    dir: &Path,
    n: usize,
    rt: &tokio::runtime::Runtime,
    first: &Arc<Matcher>,
) -> RulesSync {
    let station = format!("BENCH-PC{n:02}");
    let token = collector.token(&["--group", "bench"]).unwrap();
    let enrolment = rt
        .block_on(tutela_agent::enrol::enrol(dir, &token, &station, now_ms()))
        .unwrap();
    let identity = Arc::new(tutela_agent::identity::Identity::load_or_create(dir).unwrap());
    let spool = Spool::open(
        &dir.join("spool.db"),
        &enrolment.agent_id,
        SpoolConfig::default(),
    )
    .unwrap();
    let live: LiveRules = Arc::new(RwLock::new(first.clone()));
    let bundle_key = hex::decode(&enrolment.bundle_key).unwrap();
    let exemptions = tutela_agent::exemption::Exemptions::load(dir, &enrolment.group, &bundle_key);
    RulesSync {
        enrolment,
        identity,
        live,
        data_dir: dir.to_owned(),
        age: AgeBand::All,
        spool: Arc::new(Mutex::new(spool)),
        report_now: Arc::new(tokio::sync::Notify::new()),
        heartbeat_every: Duration::from_secs(600),
        shadow: tutela_agent::shadow::Shadow::default(),
        exemptions,
        follow_live: true,
        host: tutela_agent::identity::host_id(&station),
        rekey: Arc::new(tokio::sync::Notify::new()),
        notices: None,
    }
}

/// How many agents the collector's store records as running `version`.
fn reporting(db: &rusqlite::Connection, version: u32) -> usize {
    db.query_row(
        "SELECT COUNT(*) FROM agents WHERE rules_version = ?1",
        [version],
        |r| r.get::<_, i64>(0),
    )
    .unwrap_or(0) as usize
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: u32 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_RUNS)
        .max(1);
    let full = args.iter().any(|a| a == "en-gb");
    let pack = if full { en_gb } else { small };
    let first = Pack::parse(&pack(1), "bench").unwrap();
    let first = Arc::new(Matcher::compile(&first, &CompileOptions::default()).unwrap());
    let scratch = Scratch::new("bench-fleet-publish");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("enrolling {AGENTS} agents…");
    let devices: Vec<RulesSync> = (0..AGENTS)
        .map(|n| {
            device(
                &collector,
                &scratch.path(&format!("agent-{n}")),
                n,
                &rt,
                &first,
            )
        })
        .collect();
    // What one station spends applying a bundle on its own, before the fan-out
    // starts: verify the signature (which also validates the pack), parse, compile.
    let one_agent = {
        let key = tutela_rules::bundle::load_pkcs8(
            &std::fs::read(collector.dir.join("signing.key")).unwrap(),
        )
        .unwrap();
        let bundle = tutela_rules::bundle::sign(&pack(2), &key).unwrap();
        let mut times: Vec<Duration> = (0..3)
            .map(|_| {
                let one = Instant::now();
                tutela_agent::rules_sync::verify_and_compile(
                    &devices[0].enrolment,
                    &bundle,
                    None,
                    AgeBand::All,
                )
                .unwrap();
                one.elapsed()
            })
            .collect();
        times.sort();
        times[1]
    };
    for d in &devices {
        rt.spawn(d.clone().run());
        rt.spawn(d.clone().heartbeat());
    }
    let db = rusqlite::Connection::open_with_flags(
        collector.dir.join("tutela.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    // Every agent connected and reported version 1 before the first publish.
    let ready = Instant::now();
    while reporting(&db, 1) < AGENTS {
        assert!(
            ready.elapsed() < GIVE_UP,
            "only {} of {AGENTS} agents reported version 1; collector log:\n{}",
            reporting(&db, 1),
            collector.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The subscriptions are open once the agents have said hello; give the
    // last ones a moment so the first run does not time their connecting.
    std::thread::sleep(Duration::from_secs(2));

    let mut took = Vec::new();
    let mut push_only = Vec::new();
    for version in 2..=runs + 1 {
        let file = scratch.path(&format!("pack-v{version}.toml"));
        std::fs::write(&file, pack(version)).unwrap();
        let started = Instant::now();
        let out = run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
        push_only.push(started.elapsed());
        assert!(
            out.contains(&format!("published live version {version}")),
            "{out}"
        );
        while reporting(&db, version) < AGENTS {
            assert!(
                started.elapsed() < GIVE_UP,
                "run for version {version}: only {} of {AGENTS} agents reported it within {GIVE_UP:?}",
                reporting(&db, version)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = started.elapsed();
        took.push(elapsed);
        // Functional check: every agent runs the new rules, not just reports them.
        for d in &devices {
            assert_eq!(d.live.read().unwrap().version(), version);
        }
        eprintln!(
            "version {version}: all {AGENTS} agents reported it {:.0} ms after the push started (push itself {:.0} ms)",
            ms(elapsed),
            ms(*push_only.last().unwrap())
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    took.sort();
    push_only.sort();
    let p50 = percentile(&took, 50.0);
    let max = *took.last().unwrap();
    let verdict = |d: Duration| if d <= TARGET { "met" } else { "NOT met" };
    println!(
        "fleet publish fan-out: {AGENTS} agents, {runs} publishes of the {} pack",
        if full { "en-GB" } else { "small" }
    );
    println!(
        "  push -> all {AGENTS} report the new version: p50 {:.0} ms, max {:.0} ms (min {:.0} ms)",
        ms(p50),
        ms(max),
        ms(took[0])
    );
    println!(
        "  `rules push` alone (lint, sign, store): p50 {:.0} ms",
        ms(percentile(&push_only, 50.0))
    );
    println!(
        "  one agent alone verifies and compiles a bundle of this pack in {:.0} ms (median of 3); here all {AGENTS} share {} cores",
        ms(one_agent),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  target: all {AGENTS} within {} ms: p50 {}, max {}",
        TARGET.as_millis(),
        verdict(p50),
        verdict(max)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
