//! Rule updates across a fleet: signed bundles pushed live over the rules
//! stream, verified by agents, applied atomically and reported back.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::monitor::LiveRules;
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack, Scope};
use tutela_tests::{run_ok, wait_for, Collector, Scratch};

fn pack(version: u32, term: &str) -> String {
    format!(
        r#"[pack]
id = "fleet-test"
name = "Fleet test pack"
version = {version}
language = "en-GB"
description = "A small pack for fleet tests."

[[changelog]]
version = {version}
date = "2026-11-22"
notes = "Test release {version}."

[categories.weapons]
severity = 4
description = "Weapons."

[[terms]]
category = "weapons"
kind = "phrase"
terms = ["{term}"]
"#
    )
}

fn matcher(text: &str) -> Arc<Matcher> {
    let pack = Pack::parse(text, "test").unwrap();
    Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap())
}

struct Device {
    sync: RulesSync,
}

fn device(
    collector: &Collector,
    scratch: &Scratch,
    n: usize,
    rt: &tokio::runtime::Runtime,
) -> Device {
    let dir = scratch.path(&format!("agent-{n}"));
    let token = collector.token(&["--group", "lab-3"]).unwrap();
    let enrolment = rt
        .block_on(tutela_agent::enrol::enrol(
            &dir,
            &token,
            &format!("LAB3-PC{n:02}"),
            now_ms(),
        ))
        .unwrap();
    let identity = Arc::new(Identity::load_or_create(&dir).unwrap());
    let spool = Spool::open(
        &dir.join("spool.db"),
        &enrolment.agent_id,
        SpoolConfig::default(),
    )
    .unwrap();
    let live: LiveRules = Arc::new(RwLock::new(matcher(&pack(1, "pipe bomb"))));
    Device {
        sync: RulesSync {
            enrolment,
            identity,
            live,
            data_dir: dir,
            age: AgeBand::All,
            spool: Arc::new(Mutex::new(spool)),
            report_now: Arc::new(tokio::sync::Notify::new()),
            heartbeat_every: Duration::from_secs(600),
        },
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn version_of(live: &LiveRules) -> u32 {
    live.read().unwrap().version()
}

/// How many agents the collector records as running `version`.
fn reporting(collector: &Collector, version: u32) -> usize {
    let out = run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    out.lines()
        .filter(|l| l.ends_with(&format!("runs version {version}")))
        .count()
}

#[test]
fn a_publish_reaches_fifty_agents_and_an_offline_one_on_reconnect() {
    let scratch = Scratch::new("fleet");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let online: Vec<Device> = (0..50)
        .map(|n| device(&collector, &scratch, n, &rt))
        .collect();
    let offline = device(&collector, &scratch, 50, &rt);
    for d in &online {
        rt.spawn(d.sync.clone().run());
        rt.spawn(d.sync.clone().heartbeat());
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(online.iter().all(|d| version_of(&d.sync.live) == 1));

    let file = scratch.path("pack-v2.toml");
    std::fs::write(&file, pack(2, "zip gun")).unwrap();
    let started = Instant::now();
    let out = run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
    assert!(out.contains("published live version 2"), "{out}");
    assert!(
        out.contains("+ weapons/zip gun"),
        "the diff shows the added term: {out}"
    );
    wait_for(
        "all 50 agents to report version 2",
        Duration::from_secs(60),
        || reporting(&collector, 2) == 50,
    )
    .unwrap();
    eprintln!(
        "publish reached and was reported by 50 agents in {:?}",
        started.elapsed()
    );
    for d in &online {
        assert_eq!(version_of(&d.sync.live), 2);
        let m = d.sync.live.read().unwrap().clone();
        assert_eq!(
            m.find(Scope::Typed, "how to make a zip gun").len(),
            1,
            "new rules in force"
        );
        assert!(
            m.find(Scope::Typed, "pipe bomb").is_empty(),
            "old rules gone"
        );
    }
    // The device that was offline during the publish gets it when it connects.
    assert_eq!(version_of(&offline.sync.live), 1);
    rt.spawn(offline.sync.clone().run());
    rt.spawn(offline.sync.clone().heartbeat());
    wait_for(
        "the offline device to catch up",
        Duration::from_secs(30),
        || version_of(&offline.sync.live) == 2,
    )
    .unwrap();
    // A restart runs the bundle kept on disk, verified again.
    let saved = tutela_agent::rules_sync::load_saved(
        &offline.sync.data_dir,
        &offline.sync.enrolment,
        AgeBand::All,
    )
    .unwrap();
    assert_eq!(saved.version(), 2);
    // Pushing a version that is not newer is refused by the collector.
    let stale = scratch.path("pack-v2-again.toml");
    std::fs::write(&stale, pack(2, "ghost gun")).unwrap();
    let refused = tutela_tests::run_failing(collector.cmd().args(["rules", "push"]).arg(&stale));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not newer"));
}

#[test]
fn agents_reject_bad_signatures_and_older_bundles_and_say_why() {
    let scratch = Scratch::new("bundles");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = device(&collector, &scratch, 0, &rt);
    let collector_key = tutela_rules::bundle::load_pkcs8(
        &std::fs::read(collector.dir.join("signing.key")).unwrap(),
    )
    .unwrap();
    let good_v3 = tutela_rules::bundle::sign(&pack(3, "zip gun"), &collector_key).unwrap();
    rt.block_on(d.sync.apply(good_v3.clone())).unwrap();
    assert_eq!(version_of(&d.sync.live), 3);

    // Signed by a key that is not the collector's.
    let rogue =
        tutela_rules::bundle::load_pkcs8(&tutela_rules::bundle::generate_pkcs8().unwrap()).unwrap();
    let forged = tutela_rules::bundle::sign(&pack(9, "anything"), &rogue).unwrap();
    let err = rt.block_on(d.sync.apply(forged)).unwrap_err().to_string();
    assert!(err.contains("rejected"), "{err}");
    assert!(
        err.to_lowercase().contains("key"),
        "says the key is wrong: {err}"
    );

    // The collector's key, but the bytes altered after signing.
    let mut tampered = tutela_rules::bundle::sign(&pack(10, "zip gun"), &collector_key).unwrap();
    let at = tampered.windows(7).position(|w| w == b"zip gun").unwrap();
    tampered[at] = b'Z';
    let err = rt.block_on(d.sync.apply(tampered)).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("signature"), "{err}");

    // Older than the one running.
    let older = tutela_rules::bundle::sign(&pack(2, "zip gun"), &collector_key).unwrap();
    let err = rt.block_on(d.sync.apply(older)).unwrap_err().to_string();
    assert!(err.contains("newer") || err.contains("older"), "{err}");
    assert_eq!(version_of(&d.sync.live), 3, "still running version 3");
    let _ = Enrolment::load(&d.sync.data_dir).unwrap();
}
