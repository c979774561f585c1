//! Publication across collectors on one PostgreSQL: a rule pack pushed and
//! an exemption added through one collector's command line reach an agent
//! subscribed to another collector (a notice set there is shown there), found by the other's
//! `LISTEN` on the database; and when that listening connection is killed,
//! a publication still arrives (the catch-up read, then a new listener).
//! Real collectors (`tutela-collector serve`), real PostgreSQL on loopback,
//! the agent's own rules stream client over TLS. The times taken are
//! printed (figures for the README); nothing is timed as a pass mark.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tutela_agent::identity::Identity;
use tutela_agent::monitor::LiveRules;
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack};
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_ok, Collector, Scratch};

/// The longest any change may take to arrive before the test fails.
const WAIT: Duration = Duration::from_secs(30);

fn pack(version: u32, term: &str) -> String {
    let about = About::new(
        "publication-test",
        "Publication test pack",
        "A small pack for publication tests.",
    );
    small_pack(&about, version, &[weapons(&[term])])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Two collectors on one database, sharing the rule-signing key (agents
/// verify bundles and exemption sets with it, whichever node serves them),
/// each with the console off (it does not read PostgreSQL yet).
struct Cluster {
    pg: PgCluster,
    first: Collector,
    second: Collector,
    scratch: Scratch,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn start(name: &str) -> Self {
        let pg = PgCluster::start().unwrap();
        let scratch = Scratch::new(name);
        let mut first = Collector::init(scratch.path("first")).unwrap();
        let mut second = Collector::init(scratch.path("second")).unwrap();
        std::fs::copy(
            first.dir.join("signing.key"),
            second.dir.join("signing.key"),
        )
        .unwrap();
        for c in [&mut first, &mut second] {
            c.set_section("storage", &format!("url = \"{}\"", pg.url()))
                .unwrap();
            c.set_section("console", "enabled = false").unwrap();
            c.start().unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Self {
            pg,
            first,
            second,
            scratch,
            rt,
        }
    }

    /// An agent of group `lab-1` enrolled through, and subscribed to, the
    /// second collector, running pack version 1 from its own disk.
    fn agent_on_second(&self) -> RulesSync {
        subscribed_agent(&self.second, &self.scratch, &self.rt)
    }

    /// Pushes pack `version` through the first collector's command line.
    fn push(&self, version: u32, term: &str) {
        let file = self.scratch.path(&format!("pack-v{version}.toml"));
        std::fs::write(&file, pack(version, term)).unwrap();
        let out = run_ok(self.first.cmd().args(["rules", "push"]).arg(&file)).unwrap();
        assert!(
            out.contains(&format!("published live version {version}")),
            "{out}"
        );
    }

    /// Waits (at most `WAIT`) for `done`; returns how long it took.
    fn wait(&self, what: &str, done: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; first collector:\n{}\n----\nsecond collector:\n{}",
                self.first.log_text(),
                self.second.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }
}

/// An agent of group `lab-1` enrolled through, and subscribed to,
/// `collector`, running pack version 1 from its own disk.
fn subscribed_agent(
    collector: &Collector,
    scratch: &Scratch,
    rt: &tokio::runtime::Runtime,
) -> RulesSync {
    let dir = scratch.path("agent");
    let token = collector.token(&["--group", "lab-1"]).unwrap();
    let enrolment = rt
        .block_on(tutela_agent::enrol::enrol(
            &dir,
            &token,
            "LAB1-PC01",
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
    let pack = Pack::parse(&pack(1, "pipe bomb"), "local").unwrap();
    let live: LiveRules = Arc::new(RwLock::new(Arc::new(
        Matcher::compile(&pack, &CompileOptions::default()).unwrap(),
    )));
    let bundle_key = hex::decode(&enrolment.bundle_key).unwrap();
    let exemptions = tutela_agent::exemption::Exemptions::load(&dir, &enrolment.group, &bundle_key);
    let sync = RulesSync {
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
        host: tutela_agent::identity::host_id("LAB1-PC01"),
        rekey: Arc::new(tokio::sync::Notify::new()),
        notices: None,
    };
    rt.spawn(sync.clone().run());
    rt.spawn(sync.clone().heartbeat());
    // Time to subscribe (what it lacks is sent on connect anyway).
    std::thread::sleep(Duration::from_secs(1));
    sync
}

/// Adds a weapons exemption for group `lab-2` through `collector`'s command line.
fn exempt_lab_2(collector: &Collector) {
    let out = run_ok(collector.cmd().args([
        "exemption",
        "add",
        "--group",
        "lab-2",
        "--category",
        "weapons",
        "--until",
        "1h",
        "--reason",
        "Year 9 history: the world wars",
    ]))
    .unwrap();
    assert!(out.contains("in force until"), "{out}");
}

/// Moves `agent` to group `lab-2` through `collector`'s command line and
/// waits (at most `WAIT`) for it to hold lab-2's exemption; returns how long
/// that took.
fn move_to_lab_2(collector: &Collector, agent: &RulesSync) -> Duration {
    assert_eq!(agent.exemptions.group(), "lab-1");
    assert!(
        agent.exemptions.is_empty(),
        "lab-2's exemption is not lab-1's"
    );
    let start = Instant::now();
    let out = run_ok(collector.cmd().args([
        "agents",
        "move",
        &agent.enrolment.agent_id,
        "--group",
        "lab-2",
        "--by",
        "tech.test",
    ]))
    .unwrap();
    assert!(out.contains("moved to group lab-2"), "{out}");
    while !(agent.exemptions.group() == "lab-2" && agent.exemptions.len() == 1) {
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for the move; collector log:\n{}",
            collector.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    // Kept for the agent's next start.
    let saved = tutela_agent::identity::Enrolment::load(&agent.data_dir).unwrap();
    assert_eq!(saved.group, "lab-2");
    // An agent that is not enrolled cannot be moved.
    let refused = tutela_tests::run_failing(collector.cmd().args([
        "agents",
        "move",
        "ag-000000000000",
        "--group",
        "lab-2",
    ]));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no enrolled, unrevoked agent"), "{said}");
    took
}

fn version_of(sync: &RulesSync) -> u32 {
    sync.live.read().unwrap().version()
}

#[test]
fn a_pack_and_an_exemption_pushed_through_one_collector_reach_an_agent_on_another() {
    let cluster = Cluster::start("publication-postgres");
    let agent = cluster.agent_on_second();
    assert_eq!(version_of(&agent), 1);
    assert!(agent.exemptions.is_empty());

    let start = Instant::now();
    cluster.push(2, "zip gun");
    cluster.wait("pack version 2 on the agent", || version_of(&agent) == 2);
    let pack_took = start.elapsed();
    assert_eq!(
        agent
            .live
            .read()
            .unwrap()
            .find(tutela_rules::Scope::Typed, "how to make a zip gun")
            .len(),
        1,
        "the new rules are in force"
    );

    let start = Instant::now();
    let out = run_ok(cluster.first.cmd().args([
        "exemption",
        "add",
        "--group",
        "lab-1",
        "--category",
        "weapons",
        "--until",
        "1h",
        "--reason",
        "Year 9 history: the world wars",
        "--by",
        "dsl.test",
    ]))
    .unwrap();
    assert!(out.contains("exemption 1 in force until"), "{out}");
    cluster.wait("the exemption on the agent", || agent.exemptions.len() == 1);
    let exemption_took = start.elapsed();
    println!(
        "publication through the first collector reached the agent on the second: pack in {} ms, exemption in {} ms (each including the command line's start)",
        pack_took.as_millis(),
        exemption_took.as_millis()
    );

    // Either collector's command line sees the same store.
    let listed = run_ok(cluster.second.cmd().args(["exemption", "list"])).unwrap();
    assert!(
        listed.contains("1 active group=lab-1 category weapons"),
        "{listed}"
    );
    // The agent reports the version it runs; the first collector shows it.
    cluster.wait("the agent's report of version 2", || {
        run_ok(cluster.first.cmd().args(["rules", "status"]))
            .unwrap()
            .contains("LAB1-PC01 runs version 2")
    });
    // Revoked through the second collector: the agent drops it.
    run_ok(cluster.second.cmd().args(["exemption", "revoke", "1"])).unwrap();
    cluster.wait("the revocation on the agent", || {
        agent.exemptions.is_empty()
    });
    // A notice set through the first is shown, and its acceptance listed,
    // through the second.
    let text = cluster.scratch.path("notice.txt");
    std::fs::write(&text, "Use of this computer is monitored.").unwrap();
    let out = run_ok(
        cluster
            .first
            .cmd()
            .args(["notice", "set", "--group", "lab-1", "--file"])
            .arg(&text),
    )
    .unwrap();
    assert!(
        out.contains("notice version 1 set for group lab-1"),
        "{out}"
    );
    let shown = run_ok(cluster.second.cmd().args(["notice", "show"])).unwrap();
    assert!(
        shown.contains("group lab-1 version 1") && shown.contains("computer is monitored"),
        "{shown}"
    );
    let acks = run_ok(
        cluster
            .second
            .cmd()
            .args(["notice", "acks", "--group", "lab-1"]),
    )
    .unwrap();
    assert!(acks.contains("group lab-1 current version 1"), "{acks}");
    // The agent's enrolment token and the three changes are in the one
    // audit log, chained.
    assert_eq!(
        cluster
            .pg
            .query("SELECT action FROM console_audit ORDER BY id")
            .unwrap(),
        "token-create\nexemption-add\nexemption-revoke\nnotice-set"
    );
    assert_eq!(
        cluster.pg.count(
            "SELECT COUNT(*) FROM console_audit a JOIN console_audit b ON b.id = a.id + 1
             WHERE b.prev_hash = a.hash"
        ),
        3
    );
    // The second collector heard of them from the database, not by its
    // own polling of a file; nothing went to either SQLite file.
    assert!(
        cluster.second.log_text().contains("\"another collector\""),
        "{}",
        cluster.second.log_text()
    );
    for c in [&cluster.first, &cluster.second] {
        let db = rusqlite::Connection::open(c.dir.join("tutela.db")).unwrap();
        let local: i64 = db
            .query_row("SELECT COUNT(*) FROM rule_bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(local, 0);
    }
}

#[test]
fn a_publication_arrives_when_the_listening_connection_was_killed() {
    let cluster = Cluster::start("publication-relisten");
    let agent = cluster.agent_on_second();
    let listening = "SELECT COUNT(*) FROM pg_stat_activity
         WHERE application_name = 'tutela-collector publications'";
    cluster.wait("both collectors listening", || {
        cluster.pg.count(listening) == 2
    });
    // Both collectors' listening connections are cut, as a network fault or
    // an administrator would.
    let killed = cluster.pg.count(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'tutela-collector publications'",
    );
    assert_eq!(killed, 2, "one listening connection per collector");
    let start = Instant::now();
    cluster.push(2, "zip gun");
    cluster.wait("pack version 2 on the agent", || version_of(&agent) == 2);
    println!(
        "after the listening connections were killed, a pack pushed through the first collector reached the agent on the second in {} ms",
        start.elapsed().as_millis()
    );
    cluster.wait("the second collector to listen again", || {
        cluster
            .second
            .log_text()
            .contains("the connection listening for publications ended; listening again")
    });
    cluster.wait("both collectors listening again", || {
        cluster.pg.count(listening) == 2
    });
    // Listening again, the next publication is announced as before.
    cluster.push(3, "ghost gun");
    cluster.wait("pack version 3 on the agent", || version_of(&agent) == 3);
}

#[test]
fn shadow_counts_are_kept_on_postgresql_with_the_limits_of_the_embedded_store() {
    use tutela_collector::store::publication::{NewBundle, Published};
    use tutela_collector::store::{Location, Session, Store};
    use tutela_proto::v1::HeartbeatBody;

    let pg = PgCluster::start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let at = Location::new(std::path::Path::new("/nonexistent"), &pg.url()).unwrap();
    let store = rt.block_on(Store::open(&at)).unwrap();
    let ids = ["weapons/zip gun".to_owned(), "weapons/pipe".to_owned()];
    let candidate = |version: u32| NewBundle {
        pack_id: "p",
        version,
        shadow: true,
        bundle: b"signed",
        pack_toml: "",
        published_ms: 0,
        shadow_rule_ids: &ids,
    };
    assert_eq!(
        rt.block_on(store.publish_bundle(&candidate(2))).unwrap(),
        Published::Stored
    );
    // Another collector's push of the same version is refused under the lock.
    assert_eq!(
        rt.block_on(store.publish_bundle(&candidate(2))).unwrap(),
        Published::NotNewerThan(2)
    );
    let heartbeat = |version: u32, run: &str, counts: &[(&str, u64)]| HeartbeatBody {
        agent_id: "ag-1".into(),
        shadow_version: version,
        shadow_run: run.into(),
        shadow_counts: counts.iter().map(|(r, c)| ((*r).to_owned(), *c)).collect(),
        ..HeartbeatBody::default()
    };
    let record = |body: HeartbeatBody| {
        rt.block_on(async {
            let mut session = Session::open(&at).await.unwrap();
            let mut tx = session.begin().await.unwrap();
            tx.record_shadow_counts(&body).await.unwrap();
            tx.commit().await.unwrap();
        })
    };
    // Cumulative within a run (one heartbeat late), added up across runs;
    // a rule id the candidate lacks, and a version it is not, are ignored.
    record(heartbeat(2, "run-a", &[("weapons/zip gun", 3)]));
    record(heartbeat(
        2,
        "run-a",
        &[
            ("weapons/zip gun", 5),
            ("weapons/pipe", 1),
            ("weapons/made up", 7),
        ],
    ));
    record(heartbeat(2, "run-a", &[("weapons/zip gun", 4)]));
    record(heartbeat(2, "run-b", &[("weapons/zip gun", 2)]));
    record(heartbeat(3, "run-c", &[("weapons/zip gun", 9)]));
    record(heartbeat(2, &"x".repeat(65), &[("weapons/zip gun", 9)]));
    let (totals, agents) = rt.block_on(store.shadow_totals(2)).unwrap();
    assert_eq!(agents, 1);
    let totals: Vec<(String, i64)> = totals.into_iter().map(|t| (t.rule_id, t.count)).collect();
    assert_eq!(
        totals,
        [
            ("weapons/zip gun".to_owned(), 7),
            ("weapons/pipe".to_owned(), 1)
        ]
    );
    assert!(rt.block_on(store.shadow_totals(3)).unwrap().0.is_empty());
}

#[test]
fn an_agent_moved_to_another_group_through_one_collector_takes_its_exemptions_at_once() {
    let cluster = Cluster::start("publication-move");
    let agent = cluster.agent_on_second();
    exempt_lab_2(&cluster.first);
    let took = move_to_lab_2(&cluster.first, &agent);
    println!(
        "an agent on the second collector moved through the first took its new group's exemptions in {} ms, without a restart",
        took.as_millis()
    );
    assert_eq!(
        cluster
            .pg
            .query("SELECT action FROM console_audit ORDER BY id")
            .unwrap(),
        "token-create\nexemption-add\nagent-move"
    );
}

#[test]
fn on_sqlite_an_agent_moved_to_another_group_takes_its_exemptions_at_once() {
    let scratch = Scratch::new("publication-move-sqlite");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let agent = subscribed_agent(&collector, &scratch, &rt);
    exempt_lab_2(&collector);
    let took = move_to_lab_2(&collector, &agent);
    println!(
        "on SQLite, a moved agent took its new group's exemptions in {} ms, without a restart",
        took.as_millis()
    );
}
