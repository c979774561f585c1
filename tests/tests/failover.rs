//! Several addresses for one collector service: tokens carry the
//! `advertise_also` addresses after the first, and the agent enrols and
//! streams through whichever answers, moving to another when the one it uses
//! goes away (the agent's one shared connection is replaced through the
//! addresses). Real collector and agent binaries, real TLS gRPC on loopback.

use std::time::Duration;

use tutela_proto::token::EnrolmentToken;
use tutela_tests::{free_port, run_failing, run_ok, wait_for, Agent, Collector, Scratch};

const WAIT: Duration = Duration::from_secs(60);

/// Replaces the top-level `key = ...` line of collector.toml.
fn set_top_level(collector: &Collector, key: &str, value: &str) {
    let path = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("init writes {key}"))
        .to_owned();
    std::fs::write(&path, text.replace(&line, &format!("{key} = {value}"))).unwrap();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn an_agent_fails_over_between_the_addresses_in_its_token() {
    let scratch = Scratch::new("failover");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    // The token's first address has nothing listening yet; the collector
    // answers on the second.
    let first = free_port();
    let second = collector.port;
    set_top_level(&collector, "advertise", &format!("\"127.0.0.1:{first}\""));

    // A malformed extra address is refused with what to write.
    set_top_level(&collector, "advertise_also", "[\"collector-b\"]");
    let refused = run_failing(collector.cmd().args(["token", "create"]));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && said.contains("advertise_also entry \"collector-b\" is not host:port"),
        "{said}"
    );

    set_top_level(
        &collector,
        "advertise_also",
        &format!("[\"127.0.0.1:{second}\"]"),
    );
    collector.start().unwrap();
    let token = collector.token(&[]).unwrap();
    let decoded = EnrolmentToken::decode(&token, now_ms()).unwrap();
    assert_eq!(decoded.collector, format!("127.0.0.1:{first}"));
    assert_eq!(decoded.fallbacks, [format!("127.0.0.1:{second}")]);

    // Enrolment goes through the second address.
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&token).unwrap();
    let status = run_ok(agent.cmd().arg("status")).unwrap();
    assert!(
        status.contains(&format!(
            "collector:     127.0.0.1:{first}, 127.0.0.1:{second}"
        )),
        "{status}"
    );
    std::fs::write(
        agent.dir.join("agent.toml"),
        "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n",
    )
    .unwrap();
    agent
        .start(&["--simulate", "100000", "--simulate-rate", "5"])
        .unwrap();
    wait_for("events through the second address", WAIT, || {
        collector.alert_count() >= 3
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert!(
        agent
            .log_text()
            .contains("connected to another of the collector's addresses"),
        "{}",
        agent.log_text()
    );

    // The node on the second address goes away; the service answers on the
    // first. The agent moves there and nothing is lost or stored twice.
    collector.kill9();
    set_top_level(&collector, "listen", &format!("\"127.0.0.1:{first}\""));
    collector.start().unwrap();
    let before = collector.alert_count();
    wait_for("events through the first address", WAIT, || {
        collector.alert_count() >= before + 5
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    // The agent's one connection was retired when the node went, not
    // reconnected to the dead address for ever.
    assert!(
        agent
            .log_text()
            .contains("connection to the collector lost; the next call opens a new one"),
        "{}",
        agent.log_text()
    );
    agent.kill9();
    let gaps = run_ok(collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert!(
        !gaps.contains(&agent.agent_id()),
        "no sequence gap for the agent: {gaps}"
    );
    let alerts = collector.alerts().unwrap();
    let mut seqs: Vec<i64> = alerts.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    let stored = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), stored, "an event stored twice");
    assert!(alerts.iter().all(|a| a["chain_ok"] == true), "{alerts:?}");
}
