//! `/metrics`: the collector's Prometheus endpoint scraped over real HTTP
//! while a real agent delivers signed events over gRPC, is revoked and
//! refused, and a rule pack is published from the command line.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tutela_agent::identity::Enrolment;
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::SignedEvent;
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{free_port, run_ok, wait_for, Agent, Collector, Scratch};

/// One scrape: the status line, the content type and the samples by their
/// name and labels, e.g. `tutela_review_queue_alerts{state="new",severity="3"}`.
struct Scrape {
    status: String,
    content_type: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:?}", self.samples.keys()))
    }

    /// The sum over every sample of `name` whatever its labels.
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

fn scrape(port: u16, path: &str) -> Scrape {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mut samples = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("a sample line");
        samples.insert(key.to_owned(), value.parse::<f64>().expect("a number"));
    }
    Scrape {
        status,
        content_type,
        samples,
    }
}

/// One event stream from the agent's enrolment carrying a body that is not
/// a `tutela.v1.EventBody`; returns the status that ended it.
async fn send_garbage(agent: &Agent) -> Result<(), tonic::Status> {
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let garbage = SignedEvent {
        body: vec![0xff; 40],
        signature: vec![0; 64],
        capture: Vec::new(),
    };
    let mut acks = IngestClient::new(channel)
        .stream(tokio_stream::iter(vec![garbage]))
        .await?
        .into_inner();
    while acks.message().await?.is_some() {}
    Ok(())
}

#[test]
fn metrics_follow_ingest_refusals_the_fleet_the_queue_and_publications() {
    let scratch = Scratch::new("metrics");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    let config = collector.dir.join("collector.toml");
    let toml = std::fs::read_to_string(&config).unwrap().replace(
        "[metrics]\n",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&config, toml).unwrap();
    collector.start().unwrap();

    let empty = scrape(port, "/metrics");
    assert!(empty.status.contains("200"), "{}", empty.status);
    assert!(
        empty
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        empty.content_type
    );
    assert_eq!(empty.get("tutela_events_acknowledged_total"), 0.0);
    assert_eq!(empty.get("tutela_agents_enrolled"), 0.0);
    assert_eq!(empty.sum("tutela_review_queue_alerts"), 0.0);
    assert_eq!(
        empty.get(&format!(
            "tutela_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(scrape(port, "/other").status.contains("404"));

    // Twenty signed events from a real agent.
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    agent.start(&["--simulate", "20"]).unwrap();
    wait_for("20 stored events", Duration::from_secs(60), || {
        collector.alert_count() == 20
    })
    .unwrap();
    let after = scrape(port, "/metrics");
    assert_eq!(after.get("tutela_events_acknowledged_total"), 20.0);
    assert_eq!(after.get("tutela_ingest_latency_seconds_count"), 20.0);
    assert!(after.get("tutela_ingest_latency_seconds_sum") > 0.0);
    assert_eq!(after.get("tutela_agents_enrolled"), 1.0);
    assert_eq!(after.get("tutela_agents_silent"), 0.0);
    assert_eq!(
        after.get("tutela_ingest_streams"),
        1.0,
        "the agent's stream is open"
    );
    // The simulated events' severities run 1..=5 in turn: four of each, all new.
    for severity in 1..=5 {
        assert_eq!(
            after.get(&format!(
                "tutela_review_queue_alerts{{state=\"new\",severity=\"{severity}\"}}"
            )),
            4.0
        );
    }
    assert_eq!(after.sum("tutela_events_refused_total"), 0.0);

    // A stream that sends a body that is not an event is refused, and
    // counted by its status; revoking the agent shows in the fleet gauges.
    let status = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(send_garbage(&agent))
        .expect_err("a garbage event is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let refused = scrape(port, "/metrics");
    assert_eq!(
        refused.get("tutela_events_refused_total{code=\"INVALID_ARGUMENT\"}"),
        1.0
    );
    assert_eq!(refused.sum("tutela_events_refused_total"), 1.0);
    assert_eq!(refused.get("tutela_events_acknowledged_total"), 20.0);
    run_ok(
        collector
            .cmd()
            .args(["agents", "revoke", &agent.agent_id()]),
    )
    .unwrap();
    let refused = scrape(port, "/metrics");
    assert_eq!(refused.get("tutela_agents_enrolled"), 0.0);
    assert_eq!(refused.get("tutela_agents_revoked"), 1.0);
    agent.kill9();

    // A publication made by another process (the command line) shows at the next scrape.
    let live = "tutela_rule_publications{mode=\"live\"}";
    let before = refused.get(live);
    let version = refused.get("tutela_rules_version{mode=\"live\"}") as u32 + 1;
    let about = About::new("metrics-test", "Metrics test pack", "A small pack.");
    let file = scratch.path("pack.toml");
    std::fs::write(&file, small_pack(&about, version, &[weapons(&["zip gun"])])).unwrap();
    run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
    let published = scrape(port, "/metrics");
    assert_eq!(published.get(live), before + 1.0);
    assert_eq!(
        published.get("tutela_rules_version{mode=\"live\"}"),
        f64::from(version)
    );
    // Nothing that names a pupil, station or term is exported.
    let text = format!("{:?}", published.samples.keys());
    for private in ["pupil.one", "LAB1-PC07", "zip gun", "simulated"] {
        assert!(!text.contains(private), "{private} in {text}");
    }
}
