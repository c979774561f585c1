//! `tutela-agent run`: the agent itself: enrolment checked, spool, uplink,
//! rules, sensors and monitor started, and a cloned identity replaced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tutela_agent::config::AgentConfig;
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::monitor::{EventSink, Monitor, MonitorSettings};
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::sensor::{self, SensorConfig};
use tutela_agent::session;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_agent::uplink::{self, UplinkConfig};

mod clone;
mod rules;
mod simulate;
#[cfg(test)]
mod tests;

use crate::spool_path;
use clone::{carry_over, replace_identity};
use rules::{age_band, load_rules};
use simulate::simulate_events;

pub(super) async fn run(
    data_dir: &std::path::Path,
    simulate: Option<u64>,
    rate: u64,
) -> Result<()> {
    let config = AgentConfig::load(&data_dir.join("agent.toml"))?;
    let identity = Identity::load_or_create(data_dir)?;
    let enrolment = Enrolment::load(data_dir)?;
    if enrolment.key_fingerprint != identity.key_fingerprint() {
        anyhow::bail!(
            "the agent key in {} does not belong to this enrolment; enrol the device again",
            data_dir.display()
        );
    }
    let host = tutela_agent::identity::host_id(&session::station_name());
    let (enrolment, identity) = match tutela_agent::identity::check_host(data_dir, &host)? {
        tutela_agent::identity::HostCheck::Moved => {
            tracing::warn!(agent_id = %enrolment.agent_id, "this agent's key was made on another machine (a cloned image); making a new identity");
            replace_identity(
                data_dir,
                &enrolment,
                &identity,
                tutela_agent::enrol::RekeyReason::HostChanged,
            )
            .await
        }
        _ => (enrolment, identity),
    };
    let identity = Arc::new(identity);
    let rekey = Arc::new(tokio::sync::Notify::new());
    let spool = Spool::open(
        &spool_path(data_dir),
        &enrolment.agent_id,
        SpoolConfig {
            max_bytes: config.spool.max_bytes,
        },
    )
    .context("opening the spool")?;
    let spool = Arc::new(Mutex::new(spool));
    let appended = Arc::new(tokio::sync::Notify::new());
    let uplink_config = UplinkConfig {
        collectors: enrolment.addresses(),
        fingerprint: enrolment.fingerprint.clone(),
        backoff_initial: Duration::from_millis(config.uplink.backoff_initial_ms),
        backoff_max: Duration::from_millis(config.uplink.backoff_max_ms),
        max_message_bytes: config.uplink.max_message_bytes,
        idle_close: config.uplink.idle_close(),
    };
    tracing::info!(agent_id = %enrolment.agent_id, collector = %enrolment.collector, "agent running");
    // Events from here on are this machine's own, whatever the spool held.
    let run_start_seq = uplink::lock(&spool).next_seq();
    let mut uplink = tokio::spawn(uplink::run(uplink_config, spool.clone(), appended.clone()));
    // Tasks that hold the spool, stopped before a re-key deletes it.
    let mut spool_tasks = Vec::new();
    let mut monitor_task = None;
    // Dropping the handle stops the sensors: keep it for the whole run.
    let mut _sensors = None;
    let mut _pack_watch = None;
    if let Some(total) = simulate {
        simulate_events(&identity, &spool, &appended, total, rate).await?;
    } else {
        let age = age_band(&config)?;
        let rules = load_rules(&config, data_dir, &enrolment, age)?;
        let shadow = tutela_agent::shadow::Shadow::default();
        let live_version = rules.read().unwrap_or_else(|p| p.into_inner()).version();
        if let Some(m) =
            tutela_agent::rules_sync::load_saved_shadow(data_dir, &enrolment, age, live_version)
        {
            tracing::info!(
                version = m.version(),
                "shadow rules loaded from the last bundle"
            );
            shadow.set(m);
        }
        let bundle_key = hex::decode(&enrolment.bundle_key).unwrap_or_default();
        let exemptions =
            tutela_agent::exemption::Exemptions::load(data_dir, &enrolment.group, &bundle_key);
        let notices = tutela_agent::notice::Notices::load(data_dir, &enrolment.group, &bundle_key)
            .publish_concern_link(config.notice.concern_link_file.clone());
        let sync = RulesSync {
            enrolment: enrolment.clone(),
            identity: identity.clone(),
            live: rules.clone(),
            data_dir: data_dir.to_owned(),
            age,
            spool: spool.clone(),
            report_now: Arc::new(tokio::sync::Notify::new()),
            heartbeat_every: Duration::from_secs(config.uplink.heartbeat_secs.max(1)),
            shadow: shadow.clone(),
            exemptions: exemptions.clone(),
            follow_live: config.rules.pack_file.is_none(),
            host: host.clone(),
            rekey: rekey.clone(),
            notices: Some(notices.clone()),
        };
        if let Some(path) = &config.rules.pack_file {
            _pack_watch = tutela_agent::rules_sync::watch_local_pack(
                path.clone(),
                rules.clone(),
                age,
                sync.report_now.clone(),
            );
        }
        spool_tasks.push(tokio::spawn(sync.clone().run()));
        let settings = MonitorSettings {
            user: session::login_name(),
            station: session::station_name(),
            cooldown: Duration::from_secs(config.evidence.cooldown_secs),
            burst_shots: config.evidence.burst_shots,
            burst_interval: Duration::from_millis(config.evidence.burst_interval_ms),
            capture: config.evidence.screenshots,
            hold: config.typed.hold().map_err(anyhow::Error::msg)?,
        };
        let sink = EventSink {
            identity: identity.clone(),
            spool: spool.clone(),
            appended: appended.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let sensors = start_sensors(tx)
            .await
            .context("no sensor could start; the agent needs a desktop session to watch")?;
        _sensors = Some(sensors);
        // Only a station that is watching reports itself healthy: until the
        // sensors run, the coverage page shows it silent.
        spool_tasks.push(tokio::spawn(sync.heartbeat()));
        // The monitoring notice: shown once the desktop is watched, and
        // acknowledgements sent (including any left from an earlier session).
        spool_tasks.push(tokio::spawn(notices.clone().send(enrolment.clone())));
        spool_tasks.push(tokio::spawn(notices.show(
            tutela_agent::notice::Acknowledger {
                identity: identity.clone(),
                agent_id: enrolment.agent_id.clone(),
                user: session::login_name(),
                station: session::station_name(),
            },
        )));
        let mut monitor = Monitor::new(rules, settings, sink);
        monitor.exempt = exemptions.hook();
        monitor.shadow = shadow;
        monitor_task = Some(tokio::spawn(monitor.run(rx)));
    }
    tokio::select! {
        _ = &mut uplink => anyhow::bail!("the uplink stopped unexpectedly"),
        _ = rekey.notified() => {
            // Nothing more is written to the spool about to be deleted.
            drop(_sensors.take());
            if let Some(mut task) = monitor_task.take() {
                if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                    tracing::warn!("the monitor did not stop within 5 s; stopping it");
                    task.abort();
                    let _ = task.await;
                }
            }
            // What is already on its way is let through (the collector still
            // takes this identity's events), so that nothing it has stored
            // is sealed again below as a second alert; then nothing more is
            // sent under the cloned identity.
            let drained = tokio::time::timeout(Duration::from_secs(5), async {
                while uplink::lock(&spool)
                    .first_pending()
                    .ok()
                    .flatten()
                    .is_some()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!("unsent events remain after 5 s; they go with the new identity");
            }
            for task in spool_tasks.iter().chain([&uplink]) {
                task.abort();
            }
            for task in spool_tasks {
                let _ = task.await;
            }
            let _ = (&mut uplink).await;
            // This machine's own events from this run go with it, sealed
            // again under the new identity; the rest came with the image.
            let own = uplink::lock(&spool)
                .drafts_from(run_start_seq)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read this run's events; they are lost with the cloned spool");
                    Vec::new()
                });
            // Close the old spool before its files go: a connection left
            // open would, on closing later, remove the new spool's WAL file.
            let closed = match Arc::try_unwrap(spool) {
                Ok(only) => {
                    drop(only);
                    true
                }
                Err(_) => false,
            };
            let (new_enrolment, new_identity) = replace_identity(
                data_dir,
                &enrolment,
                &identity,
                tutela_agent::enrol::RekeyReason::CollectorRequest,
            )
            .await;
            if closed {
                carry_over(data_dir, &new_enrolment, &new_identity, own, &config)?;
            } else if !own.is_empty() {
                tracing::error!(events = own.len(), "the old spool is still open; this run's events cannot be carried over safely and are lost");
            }
            anyhow::bail!("this station's identity was replaced (the collector saw it on two machines); start the agent again to run with the new one")
        }
        _ = tokio::signal::ctrl_c() => {
            // The sensors stop first, so the monitor decides the typed matches it
            // still holds (on the text typed so far) and spools what still alerts.
            drop(_sensors.take());
            if let Some(mut task) = monitor_task.take() {
                if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                    tracing::warn!("the monitor did not stop within 5 s; stopping it");
                    task.abort();
                }
            }
            tracing::info!("stopping; unsent events stay in the spool");
            Ok(())
        }
    }
}

/// How long the sensors may take to start before the agent gives up.
pub(super) const SENSOR_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the sensors on their own thread, bounded by [`SENSOR_START_TIMEOUT`]:
/// a start that blocks (an X server that never answers) ends the agent with an
/// error, so the service restarts it, instead of leaving it up but blind.
pub(super) async fn start_sensors(
    tx: tokio::sync::mpsc::Sender<sensor::SensorEvent>,
) -> Result<sensor::SensorHandle> {
    let (done, started) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sensor-start".into())
        .spawn(move || {
            let _ = done.send(sensor::start(&SensorConfig::default(), tx));
        })
        .context("starting the sensor thread")?;
    match tokio::time::timeout(SENSOR_START_TIMEOUT, started).await {
        Ok(Ok(result)) => {
            let sensors = result?;
            // Started for a desktop session (the session helper sets this): without the
            // window sensor the station is not being watched, so it must not look healthy.
            if std::env::var("TUTELA_REQUIRE_DISPLAY").is_ok_and(|v| v == "1")
                && !sensors.sensors().contains(&"window")
            {
                anyhow::bail!(
                    "the X display {} could not be watched (see the window sensor warning above: \
                     a wrong or missing X authority cookie?); exiting so that the station shows as silent",
                    std::env::var("DISPLAY").unwrap_or_default()
                );
            }
            Ok(sensors)
        }
        Ok(Err(_)) => anyhow::bail!("the sensor start-up thread ended without an answer"),
        Err(_) => anyhow::bail!(
            "the sensors did not start within {} s (is the X server answering? is XAUTHORITY a regular file?); exiting so that the service restarts the agent",
            SENSOR_START_TIMEOUT.as_secs()
        ),
    }
}
