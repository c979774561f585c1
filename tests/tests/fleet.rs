//! Rule updates across a fleet: signed bundles pushed live over the rules
//! stream, verified by agents, applied atomically and reported back.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::monitor::LiveRules;
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack, Scope};
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_ok, wait_for, Agent, Collector, Scratch};

/// The fleet test pack at `version`, with one weapons phrase.
fn pack(version: u32, term: &str) -> String {
    let about = About::new(
        "fleet-test",
        "Fleet test pack",
        "A small pack for fleet tests.",
    );
    small_pack(&about, version, &[weapons(&[term])])
}

/// A scratch directory named `name`, a collector started in it, and a
/// runtime for the agents' rule streams.
fn started(name: &str) -> (Scratch, Collector, tokio::runtime::Runtime) {
    let scratch = Scratch::new(name);
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    (scratch, collector, rt)
}

/// The line of `agents list` output for agent `id`; fails if it is not listed.
fn listed(list: &str, id: &str) -> String {
    list.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{list}"))
        .to_owned()
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
    let bundle_key = hex::decode(&enrolment.bundle_key).unwrap();
    let exemptions = tutela_agent::exemption::Exemptions::load(&dir, &enrolment.group, &bundle_key);
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
            shadow: tutela_agent::shadow::Shadow::default(),
            exemptions,
            follow_live: true,
            host: tutela_agent::identity::host_id(&format!("LAB3-PC{n:02}")),
            rekey: Arc::new(tokio::sync::Notify::new()),
            notices: None,
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
    let (scratch, collector, rt) = started("fleet");
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
    // How fast this happens is measured by `cargo bench --bench fleet_publish`
    // (target: all 50 within 2 s); here only that it happens.
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
    let (scratch, collector, rt) = started("bundles");
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

#[test]
fn two_stations_from_one_cloned_identity_end_distinct_and_flagged() {
    cloned_identity(None);
}

/// The same on PostgreSQL: `alerts list`, `alerts gaps`, `agents list`,
/// `agents clear-flag` and `agents revoke` read and change PostgreSQL.
#[test]
fn on_postgresql_two_stations_from_one_cloned_identity_end_distinct_and_flagged() {
    let pg = PgCluster::start().unwrap();
    cloned_identity(Some(&pg));
}

/// Two stations from one cloned identity, on SQLite or on `pg`.
fn cloned_identity(pg: Option<&PgCluster>) {
    let scratch = Scratch::new(if pg.is_some() { "clone-pg" } else { "clone" });
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    if let Some(pg) = pg {
        collector
            .set_section("storage", &format!("url = \"{}\"", pg.url()))
            .unwrap();
    }
    collector.start().unwrap();
    // A lab image: one station enrolled, its state directory copied to a second machine.
    let mut original = Agent::new(scratch.path("pc01"));
    original.env = vec![
        ("TUTELA_STATION".into(), "LAB2-PC01".into()),
        ("TUTELA_MACHINE_ID".into(), "machine-one".into()),
    ];
    original
        .enrol(&collector.token(&["--group", "lab-2"]).unwrap())
        .unwrap();
    let first_id = original.agent_id();
    let mut clone = Agent::new(scratch.path("pc02"));
    copy_dir(&original.dir, &clone.dir);
    clone.env = vec![
        ("TUTELA_STATION".into(), "LAB2-PC02".into()),
        ("TUTELA_MACHINE_ID".into(), "machine-two".into()),
    ];
    assert_eq!(
        clone.agent_id(),
        first_id,
        "the copy starts as the same identity"
    );

    // Both run and send events.
    original.start(&["--simulate", "3"]).unwrap();
    clone.start(&["--simulate", "3"]).unwrap();
    wait_for(
        "six events from two stations",
        Duration::from_secs(60),
        || collector.alert_count() == 6,
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\noriginal log:\n{}\nclone log:\n{}",
            original.log_text(),
            clone.log_text()
        )
    });
    let second_id = clone.agent_id();
    assert_ne!(second_id, first_id, "the clone made a new identity");
    assert_eq!(
        original.agent_id(),
        first_id,
        "the original kept its identity"
    );
    let alerts = collector.alerts().unwrap();
    for (id, station) in [(&first_id, "LAB2-PC01"), (&second_id, "LAB2-PC02")] {
        let theirs: Vec<_> = alerts.iter().filter(|a| a["agent_id"] == **id).collect();
        assert_eq!(theirs.len(), 3, "{id}: {alerts:?}");
        assert!(theirs
            .iter()
            .all(|a| a["station"] == station && a["chain_ok"] == true));
    }
    assert!(
        clone.log_text().contains("cloned image"),
        "{}",
        clone.log_text()
    );

    // The collector shows both identities, flagged for the technician, in the same group.
    let list = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    let line = |id: &str| listed(&list, id);
    assert!(
        line(&first_id).contains("identity cloned: re-keyed as"),
        "{list}"
    );
    assert!(
        line(&second_id).contains(&format!("re-keyed from {first_id}")),
        "{list}"
    );
    assert!(line(&second_id).contains("group=lab-2"), "{list}");
    assert_eq!(list.lines().count(), 2, "{list}");
    let gaps = run_ok(collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert_eq!(gaps, "", "no sequence gaps");
    // Once dealt with, the technician clears a flag.
    run_ok(collector.cmd().args(["agents", "clear-flag", &first_id])).unwrap();
    let list = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        !list
            .lines()
            .any(|l| l.starts_with(&first_id) && l.contains("flag=")),
        "{list}"
    );

    // Restarted, each keeps its own identity: the clone's new key is recorded as made here.
    original.kill9();
    clone.kill9();
    clone.start(&["--simulate", "4"]).unwrap();
    wait_for("the clone's fourth event", Duration::from_secs(30), || {
        collector.alert_count() == 7
    })
    .unwrap();
    assert_eq!(clone.agent_id(), second_id);

    // A copied key is revoked with everything re-keyed from it; the
    // technician must say so, since the descendants may be real stations.
    let refused = tutela_tests::run_failing(collector.cmd().args(["agents", "revoke", &first_id]));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--with-descendants") && said.contains(&second_id),
        "{said}"
    );
    run_ok(
        collector
            .cmd()
            .args(["agents", "revoke", &first_id, "--with-descendants"]),
    )
    .unwrap();
    let list = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains("revoked=true")).count(),
        2,
        "{list}"
    );
    // Revoking again, or an unknown agent, says what is wrong.
    let unknown = tutela_tests::run_failing(collector.cmd().args([
        "agents",
        "revoke",
        "ag-000000000000",
        "--only",
    ]));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no agent ag-000000000000"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    if let Some(pg) = pg {
        // Both revocations and the cleared flag were audited in PostgreSQL.
        assert_eq!(
            pg.count(&format!(
                "SELECT count(*) FROM console_audit WHERE action = 'agent-revoke' AND target IN ('{first_id}', '{second_id}')"
            )),
            2
        );
        assert_eq!(
            pg.count("SELECT count(*) FROM console_audit WHERE action = 'agent-clear-flag'"),
            1
        );
    }
    // Revoked, the original cannot mint a new identity by re-keying.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let again = rt.block_on(tutela_agent::enrol::rekey(
        &scratch.path("rekey-again"),
        &Enrolment::load(&original.dir).unwrap(),
        &Identity::load_or_create(&original.dir).unwrap(),
        tutela_agent::enrol::RekeyReason::HostChanged,
    ));
    assert!(
        again.unwrap_err().to_string().contains("re-key refused"),
        "a revoked identity is refused"
    );
}

#[test]
fn tokens_are_listed_and_a_revoked_token_is_refused() {
    let scratch = Scratch::new("tokens");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let keep = collector
        .token(&["--group", "year-7", "--label", "keep", "--uses", "2"])
        .unwrap();
    let revoked = collector
        .token(&["--group", "year-8", "--label", "to-revoke"])
        .unwrap();
    let list = run_ok(collector.cmd().args(["token", "list"])).unwrap();
    let id_of = |label: &str| {
        list.lines()
            .find(|l| l.ends_with(label))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{label} not listed:\n{list}"))
            .to_owned()
    };
    let revoke_id = id_of("to-revoke");
    assert!(
        list.contains("year-8") && list.contains("0/1") && list.contains("0/2"),
        "{list}"
    );
    assert!(
        !list.contains(keep.trim_start_matches("tutela1.")),
        "no secrets listed"
    );
    let out = run_ok(collector.cmd().args(["token", "revoke", &revoke_id[..6]])).unwrap();
    assert!(out.contains(&revoke_id), "{out}");
    let list = run_ok(collector.cmd().args(["token", "list"])).unwrap();
    let revoked_line = list.lines().find(|l| l.ends_with("to-revoke")).unwrap();
    assert!(revoked_line.contains("revoked"), "{list}");

    // The revoked token is refused with a clear message; the other still works.
    let refused = Agent::new(scratch.path("refused"));
    let out = tutela_tests::run_failing(refused.cmd().args(["enrol", &revoked]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("revoked") && err.contains("ask a technician"),
        "{err}"
    );
    let ok = Agent::new(scratch.path("ok"));
    let out = ok.enrol(&keep).unwrap();
    assert!(out.contains("group year-7"), "{out}");
    // Unknown and ambiguous ids are refused with a hint.
    let out = tutela_tests::run_failing(collector.cmd().args(["token", "revoke", "zz"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token list"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn one_identity_heard_from_two_hosts_is_told_to_rekey_and_both_are_flagged() {
    let (scratch, collector, rt) = started("two-hosts");
    let d = device(&collector, &scratch, 0, &rt);
    let old_id = d.sync.enrolment.agent_id.clone();
    // The same identity on another host, one that did not notice it was copied.
    let twin_dir = scratch.path("twin");
    copy_dir(&d.sync.data_dir, &twin_dir);
    let mut twin = d.sync.clone();
    twin.data_dir = twin_dir.clone();
    twin.host = tutela_agent::identity::host_id("LAB3-PC99");
    twin.rekey = Arc::new(tokio::sync::Notify::new());
    rt.spawn(d.sync.clone().heartbeat());
    std::thread::sleep(Duration::from_millis(500));
    rt.spawn(twin.clone().heartbeat());
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), twin.rekey.notified()).await
    })
    .expect("the collector tells the second host to re-key");
    let original_told = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(1), d.sync.rekey.notified()).await
    });
    assert!(original_told.is_err(), "the first host keeps its identity");

    let (new_enrolment, new_key) = rt
        .block_on(tutela_agent::enrol::rekey(
            &twin_dir,
            &twin.enrolment,
            &twin.identity,
            tutela_agent::enrol::RekeyReason::CollectorRequest,
        ))
        .unwrap();
    assert_ne!(new_enrolment.agent_id, old_id);
    assert_eq!(new_enrolment.group, "lab-3");
    assert_eq!(
        Enrolment::load(&twin_dir).unwrap().key_fingerprint,
        new_key.key_fingerprint()
    );
    assert_eq!(Enrolment::load(&d.sync.data_dir).unwrap().agent_id, old_id);
    // The old identity cannot be exchanged twice for fresh ones without its key.
    let forged = rt.block_on(tutela_agent::enrol::rekey(
        &scratch.path("forger"),
        &twin.enrolment,
        &Identity::generate(),
        tutela_agent::enrol::RekeyReason::CollectorRequest,
    ));
    let err = forged.unwrap_err().to_string();
    assert!(err.contains("re-key refused"), "{err}");

    let list = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    let line = |id: &str| listed(&list, id);
    assert!(
        line(&old_id).contains("identity seen from a second machine"),
        "{list}"
    );
    assert!(
        line(&old_id).contains("identity cloned: re-keyed as"),
        "{list}"
    );
    assert!(
        line(&new_enrolment.agent_id).contains("the collector saw it from two machines"),
        "{list}"
    );
}
