//! The signed event pipeline end to end: real binaries, real TLS gRPC on loopback.

use std::collections::HashSet;
use std::time::Duration;

use tutela_tests::{run_failing, wait_for, Agent, Collector, Scratch};

fn enrolled_pair(scratch: &Scratch) -> (Collector, Agent) {
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    let token = collector.token(&["--group", "year-9"]).unwrap();
    let out = agent.enrol(&token).unwrap();
    assert!(out.contains("enrolled as ag-"), "{out}");
    (collector, agent)
}

#[test]
fn thousand_events_are_listed_with_their_fields() {
    let scratch = Scratch::new("thousand");
    let (collector, mut agent) = enrolled_pair(&scratch);
    let agent_id = agent.agent_id();
    agent.start(&["--simulate", "1000"]).unwrap();
    wait_for("1,000 stored events", Duration::from_secs(90), || {
        collector.alert_count() >= 1000
    })
    .unwrap();
    let alerts = collector.alerts().unwrap();
    assert_eq!(alerts.len(), 1000);
    let mut seqs = HashSet::new();
    for a in &alerts {
        let seq = a["seq"].as_i64().unwrap();
        assert!(seqs.insert(seq), "duplicate seq {seq}");
        assert_eq!(a["agent_id"], agent_id.as_str());
        assert_eq!(a["user"], "pupil.one");
        assert_eq!(a["station"], "LAB1-PC07");
        assert_eq!(a["source"], "title");
        assert_eq!(a["context"], format!("simulated event {seq}"));
        assert_eq!(a["category"], "violence");
        assert_eq!(a["severity"].as_i64().unwrap(), 1 + seq % 5);
        assert_eq!(a["chain_ok"], true, "hash chain intact at {seq}");
        assert_eq!(a["clock_skew"], false);
        assert_eq!(a["state"], "new");
    }
    assert_eq!(seqs, (1..=1000).collect::<HashSet<i64>>());
    // The table form lists them too.
    let table =
        tutela_tests::run_ok(collector.cmd().args(["alerts", "list", "--limit", "5"])).unwrap();
    assert_eq!(table.lines().count(), 6, "{table}");
    let status = tutela_tests::run_ok(agent.cmd().arg("status")).unwrap();
    assert!(status.contains("spool backlog: 0 events"), "{status}");
}

#[test]
fn kill_nine_loses_nothing_and_duplicates_nothing() {
    let scratch = Scratch::new("kill9");
    let (mut collector, mut agent) = enrolled_pair(&scratch);
    // Fast retries so the test spends its time on the crashes, not waiting.
    std::fs::write(
        agent.dir.join("agent.toml"),
        "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n",
    )
    .unwrap();
    agent
        .start(&["--simulate", "5000", "--simulate-rate", "400"])
        .unwrap();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(2500));
        let before = collector.alert_count();
        assert!(before > 0 || round > 0, "events flowing before the crash");
        collector.kill9();
        if round == 1 {
            agent.kill9();
            std::thread::sleep(Duration::from_millis(500));
            agent
                .start(&["--simulate", "5000", "--simulate-rate", "400"])
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(700));
        collector.start().unwrap();
    }
    wait_for("all 5,000 events stored", Duration::from_secs(120), || {
        collector.alert_count() >= 5000
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: stored {}\nagent log:\n{}",
            collector.alert_count(),
            agent.log_text()
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let alerts = collector.alerts().unwrap();
    let seqs: HashSet<i64> = alerts.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    assert_eq!(alerts.len(), 5000, "exactly 5,000 stored");
    assert_eq!(seqs.len(), 5000, "no duplicates");
    assert_eq!(seqs, (1..=5000).collect::<HashSet<i64>>(), "none lost");
    assert!(
        alerts.iter().all(|a| a["chain_ok"] == true),
        "hash chain intact"
    );
    let gaps = tutela_tests::run_ok(collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert!(gaps.trim().is_empty(), "no gaps: {gaps}");
}

#[test]
fn enrolment_token_errors_are_clear() {
    let scratch = Scratch::new("tokens");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();

    let malformed = run_failing(
        Agent::new(scratch.path("a1"))
            .cmd()
            .args(["enrol", "tutela1.not-a-token"]),
    );
    let err = String::from_utf8_lossy(&malformed.stderr);
    assert!(err.contains("malformed"), "{err}");

    let once = collector.token(&["--uses", "1"]).unwrap();
    Agent::new(scratch.path("a2")).enrol(&once).unwrap();
    let used = run_failing(Agent::new(scratch.path("a3")).cmd().args(["enrol", &once]));
    let err = String::from_utf8_lossy(&used.stderr);
    assert!(err.contains("already been used"), "{err}");

    let short = collector.token(&["--expires", "1s"]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let expired = run_failing(Agent::new(scratch.path("a4")).cmd().args(["enrol", &short]));
    let err = String::from_utf8_lossy(&expired.stderr);
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn agent_refuses_a_collector_whose_certificate_does_not_match_the_pin() {
    let scratch = Scratch::new("pin");
    let (mut real, mut agent) = enrolled_pair(&scratch);
    let port = real.port;
    real.kill9();
    // An impostor on the same address, with its own certificate.
    let mut impostor = Collector::init(scratch.path("impostor")).unwrap();
    std::fs::write(
        impostor.dir.join("collector.toml"),
        format!("listen = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    impostor.port = port;
    impostor.start().unwrap();
    agent.start(&["--simulate", "20"]).unwrap();
    wait_for(
        "the agent to report the pin mismatch",
        Duration::from_secs(20),
        || {
            agent
                .log_text()
                .contains("does not match the pinned fingerprint")
        },
    )
    .unwrap();
    assert_eq!(impostor.alert_count(), 0, "nothing sent to the impostor");
    let status = tutela_tests::run_ok(agent.cmd().arg("status")).unwrap();
    assert!(
        status.contains("spool backlog: 20 events"),
        "events kept: {status}"
    );
}
