//! The agent keeps alerts flowing when one event cannot be delivered: real
//! agent and collector binaries, real TLS gRPC on loopback.

use std::time::Duration;

use tutela_tests::{run_ok, wait_for, Agent, Collector, Scratch};

/// The agent's `status` line `name: N`.
fn status_number(agent: &Agent, name: &str) -> Option<u64> {
    let status = run_ok(agent.cmd().arg("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Sets the collector's largest accepted event body.
fn set_max_body_bytes(collector: &Collector, bytes: usize) {
    let path = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("max_body_bytes"))
        .expect("init writes max_body_bytes")
        .to_owned();
    let text = text.replace(&line, &format!("max_body_bytes = {bytes}"));
    std::fs::write(&path, text).unwrap();
}

#[test]
fn events_refused_for_their_size_are_set_aside_and_later_ones_flow() {
    let scratch = Scratch::new("refused-size");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    let token = collector.token(&[]).unwrap();
    agent.enrol(&token).unwrap();
    std::fs::write(
        agent.dir.join("agent.toml"),
        "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\n",
    )
    .unwrap();

    // A collector that refuses every event for its size, without naming it
    // (the refusal comes before the body is read).
    collector.kill9();
    set_max_body_bytes(&collector, 64);
    collector.start().unwrap();
    agent.start(&["--simulate", "2"]).unwrap();
    wait_for(
        "both refused events set aside",
        Duration::from_secs(60),
        || status_number(&agent, "quarantined") == Some(2),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nstatus:\n{}\nagent log:\n{}",
            run_ok(agent.cmd().arg("status")).unwrap_or_default(),
            agent.log_text()
        )
    });
    assert_eq!(agent.backlog().unwrap(), 0);
    assert_eq!(collector.alert_count(), 0);
    let log = agent.log_text();
    assert!(
        log.contains("refused the first unsent event repeatedly"),
        "{log}"
    );

    // The collector's limit is back to normal: new alerts are not held
    // behind the refused ones.
    agent.kill9();
    collector.kill9();
    set_max_body_bytes(&collector, tutela_proto::DEFAULT_MAX_BODY_BYTES);
    collector.start().unwrap();
    agent.start(&["--simulate", "5"]).unwrap();
    wait_for("the later events stored", Duration::from_secs(60), || {
        collector.alert_count() >= 3
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    let mut seqs: Vec<i64> = collector
        .alerts()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![3, 4, 5]);
    assert_eq!(status_number(&agent, "quarantined"), Some(2));
}
