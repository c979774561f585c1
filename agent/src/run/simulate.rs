//! `--simulate`: synthetic matched events, for load tests.

use std::time::Duration;

use anyhow::Result;
use tutela_agent::event::EventDraft;
use tutela_agent::identity::Identity;
use tutela_agent::session;
use tutela_agent::uplink::{self};
use tutela_proto::v1::{Observation, RuleMatch, Source};

/// Generates synthetic matched events until `total` have been spooled,
/// counting those spooled by earlier runs, so a restart continues the series.
pub(super) async fn simulate_events(
    identity: &Identity,
    spool: &uplink::SharedSpool,
    appended: &tokio::sync::Notify,
    total: u64,
    rate: u64,
) -> Result<()> {
    let user = session::login_name();
    let station = session::station_name();
    let pause = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    loop {
        let next = uplink::lock(spool).next_seq();
        if next > total {
            tracing::info!(total, "simulation complete");
            return Ok(());
        }
        let draft = EventDraft {
            time_ms: session::now_ms(),
            user: user.clone(),
            station: station.clone(),
            observation: Observation {
                source: Source::Title as i32,
                context: format!("simulated event {next}"),
                app: "tutela-simulator".into(),
                window_title: format!("simulated event {next}"),
                ..Default::default()
            },
            matches: vec![RuleMatch {
                rule_id: "simulation/simulated".into(),
                category: "violence".into(),
                severity: 1 + (next % 5) as u32,
                term: "simulated".into(),
                start: 0,
                end: 9,
            }],
            evidence: None,
            rules_version: 0,
            count: 1,
            event_id: None,
            repeat_of: String::new(),
        };
        uplink::lock(spool).append(identity, draft)?;
        appended.notify_one();
        match pause {
            Some(p) => tokio::time::sleep(p).await,
            None if next % 64 == 0 => tokio::task::yield_now().await,
            None => {}
        }
    }
}
