//! The agent's event stream is open only while there is something to send:
//! the agent's own uplink (in this process, on a real spool) against a real
//! collector on loopback, watched through the collector's `/metrics`.
//! Once every event sent is acknowledged and the idle time has passed, the
//! agent ends the stream cleanly and the collector holds no stream for it;
//! an event written after that opens a new one and is stored exactly once,
//! with nothing resent and the chain intact. The agent binary holds one
//! connection to the collector throughout: the event stream comes and goes
//! on it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tutela_agent::event::EventDraft;
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_agent::uplink::{self, SharedSpool, UplinkConfig};
use tutela_proto::v1::{Observation, RuleMatch, Source};
use tutela_tests::{free_port, wait_for, Agent, Collector, Scratch};

const IDLE: Duration = Duration::from_secs(1);
/// The tests here run one at a time: each picks free ports for its
/// collector, which a test running beside it could pick too.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const PATIENCE: Duration = Duration::from_secs(60);

/// A sample of the collector's `/metrics`, e.g. `tutela_ingest_streams`.
fn metric(port: u16, name: &str) -> f64 {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

fn draft(n: u64) -> EventDraft {
    EventDraft {
        time_ms: tutela_tests::load::now_ms(),
        user: "pupil.one".into(),
        station: "LAB1-PC07".into(),
        observation: Observation {
            source: Source::Title as i32,
            context: format!("idle stream event {n}"),
            app: "chromium".into(),
            window_title: format!("idle stream event {n}"),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "weapons/knife".into(),
            category: "weapons".into(),
            severity: 3,
            term: "idle".into(),
            start: 0,
            end: 4,
        }],
        evidence: None,
        rules_version: 0,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

fn append(spool: &SharedSpool, identity: &Identity, appended: &Notify, n: u64) {
    for i in 0..n {
        uplink::lock(spool).append(identity, draft(i)).unwrap();
    }
    appended.notify_one();
}

fn pending(spool: &SharedSpool) -> Option<u64> {
    uplink::lock(spool).first_pending().unwrap()
}

#[test]
fn an_idle_event_stream_is_closed_and_events_after_it_reach_the_collector_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = Scratch::new("uplink-idle");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    let port = free_port();
    collector
        .set_section("metrics", &format!("listen = \"127.0.0.1:{port}\"\n"))
        .unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let spool: SharedSpool = Arc::new(Mutex::new(
        Spool::open(
            &agent.dir.join("spool.db"),
            &enrolment.agent_id,
            SpoolConfig::default(),
        )
        .unwrap(),
    ));
    let appended = Arc::new(Notify::new());
    let config = UplinkConfig {
        collectors: enrolment.addresses(),
        fingerprint: enrolment.fingerprint.clone(),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        max_message_bytes: 3 * 1024 * 1024,
        idle_close: Some(IDLE),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let uplink = rt.spawn(uplink::run(config, spool.clone(), appended.clone()));

    // Nothing to send: no stream is opened.
    std::thread::sleep(IDLE * 2);
    assert_eq!(metric(port, "tutela_ingest_streams"), 0.0, "no stream yet");

    let mut sent = 0;
    for (round, events) in [3u64, 2, 4].into_iter().enumerate() {
        append(&spool, &identity, &appended, events);
        sent += events;
        wait_for(&format!("round {round}: events stored"), PATIENCE, || {
            collector.alert_count() == sent as usize
        })
        .unwrap();
        wait_for(
            &format!("round {round}: the spool emptied"),
            PATIENCE,
            || pending(&spool).is_none(),
        )
        .unwrap();
        // Every event acknowledged, then idle: the agent ends the stream and
        // the collector lets it go, while the uplink runs on.
        wait_for(
            &format!("round {round}: the stream closed"),
            PATIENCE,
            || metric(port, "tutela_ingest_streams") == 0.0,
        )
        .unwrap();
        assert!(!uplink.is_finished(), "the uplink keeps running");
    }

    // Each event stored once, in order, chained; none sent twice (a resend
    // would be acknowledged again as a duplicate).
    let alerts = collector.alerts().unwrap();
    let mut seqs: Vec<i64> = alerts.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=sent as i64).collect::<Vec<_>>());
    for a in &alerts {
        assert_eq!(a["chain_ok"], true, "hash chain intact: {a}");
    }
    assert_eq!(
        metric(port, "tutela_events_acknowledged_total"),
        sent as f64,
        "nothing resent"
    );
    // A stream the agent ended is not a refusal or a fault.
    let log = collector.log_text();
    for line in log.lines() {
        assert!(
            !line.contains("WARN") && !line.contains("ERROR"),
            "the collector warned: {line}\n{log}"
        );
    }
    uplink.abort();
}

/// Established TCP connections of process `pid` to `port` on loopback (Linux).
fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let remote = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&remote) && f[3] == "01" && inodes.contains(f[9])
        })
        .count()
}

#[test]
fn the_agent_holds_one_connection_to_the_collector_sending_or_idle() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = Scratch::new("uplink-idle-agent");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    let metrics = free_port();
    collector
        .set_section("metrics", &format!("listen = \"127.0.0.1:{metrics}\"\n"))
        .unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    std::fs::write(
        agent.dir.join("agent.toml"),
        "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\nidle_close_secs = 1\n",
    )
    .unwrap();
    // The count sees a connection when there is one: this process's own.
    let own = TcpStream::connect(("127.0.0.1", collector.port)).unwrap();
    assert_eq!(connections_to(std::process::id(), collector.port), 1);
    drop(own);
    // Simulated events only (no rule subscription): the event stream is the
    // only part using the connection, and it comes and goes.
    const EVENTS: usize = 20;
    agent
        .start(&["--simulate", &EVENTS.to_string(), "--simulate-rate", "5"])
        .unwrap();
    let pid = agent.child.as_ref().unwrap().id();
    // While events flow: never more than one connection.
    let mut most = 0;
    wait_for("every event stored", PATIENCE, || {
        most = most.max(connections_to(pid, collector.port));
        assert!(most <= 1, "the agent held {most} connections while sending");
        collector.alert_count() == EVENTS
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(most, 1, "the events came over one connection");
    // Idle: the event stream is closed, the connection stays for the
    // agent's other parts, and no second one appears.
    wait_for("the event stream closed", PATIENCE, || {
        metric(metrics, "tutela_ingest_streams") == 0.0
    })
    .unwrap();
    for _ in 0..10 {
        assert_eq!(
            connections_to(pid, collector.port),
            1,
            "one connection while idle: {}",
            agent.log_text()
        );
        std::thread::sleep(IDLE / 4);
    }
    let running = agent.child.as_mut().unwrap().try_wait().unwrap();
    assert!(running.is_none(), "the agent runs on: {}", agent.log_text());
    assert_eq!(collector.alert_count(), EVENTS);
}
