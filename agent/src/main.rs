//! `tutela-agent`: the Tutela workstation agent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tutela_agent::config::AgentConfig;
use tutela_agent::event::EventDraft;
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::monitor::{EventSink, LiveRules, Monitor, MonitorSettings};
use tutela_agent::rules_sync::RulesSync;
use tutela_agent::sensor::{self, SensorConfig};
use tutela_agent::session;
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_agent::uplink::{self, UplinkConfig};
use tutela_proto::v1::{Observation, RuleMatch, Source};

#[derive(Debug, Parser)]
#[command(
    name = "tutela-agent",
    version,
    about = "Tutela safeguarding agent for pupil workstations"
)]
struct Cli {
    /// Directory holding the agent key, enrolment record, spool and agent.toml.
    #[arg(long, global = true, env = "TUTELA_AGENT_DIR", default_value = default_data_dir())]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol this device with a token from `tutela-collector token create`.
    Enrol {
        /// The enrolment token (starts with `tutela1.`).
        token: String,
        /// Station name to register (default: the host name, or TUTELA_STATION). It must be
        /// the name the agent runs under: a station whose name changes gets a new identity.
        #[arg(long)]
        station: Option<String>,
    },
    /// Run the agent: sensors, matcher, evidence, spool and uplink.
    Run {
        /// Instead of watching the desktop, generate synthetic events until
        /// this many have been spooled in total (load and resilience tests).
        #[arg(long, value_name = "TOTAL")]
        simulate: Option<u64>,
        /// Synthetic events per second for --simulate (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        simulate_rate: u64,
    },
    /// Open the school's 'Report a concern' page in the browser (the desktop entry
    /// "Report a concern" runs this as the pupil).
    Concern {
        /// The file the agent publishes the page's address in.
        #[arg(long, value_name = "FILE")]
        link_file: Option<std::path::PathBuf>,
        /// Print the address instead of opening it.
        #[arg(long)]
        print: bool,
    },
    /// Show enrolment and spool status.
    Status,
    /// The Windows service: install, uninstall, or run (started by the service manager).
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[cfg(windows)]
#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Register and start the service (automatic start, runs as LocalSystem).
    Install,
    /// Stop and remove the service.
    Uninstall,
    /// Run as the service (only the service manager starts this).
    Run,
    /// The installer's last step: enrol with the token (or TUTELA_ENROL_TOKEN) unless this
    /// device is enrolled already, then set the service's recovery and start it; when the
    /// device is not enrolled, say why and what to do, and leave the service stopped.
    Setup {
        /// The enrolment token; the MSI passes it in TUTELA_ENROL_TOKEN instead.
        #[arg(env = "TUTELA_ENROL_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Show the service's recovery settings and the data directory's permissions.
    Show,
    /// Delete the data directory: key, enrolment, spool and settings (uninstall with
    /// PURGEDATA=1). The device must be enrolled again afterwards.
    Purge,
}

fn default_data_dir() -> &'static str {
    if cfg!(windows) {
        "C:\\ProgramData\\Tutela\\agent"
    } else {
        "/var/lib/tutela-agent"
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TUTELA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Plain lines where stderr is a file or a pipe (the MSI log, a service's log).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Concern { link_file, print } = &cli.command {
        return concern(link_file.as_deref(), *print);
    }
    #[cfg(windows)]
    if let Command::Service { command } = &cli.command {
        use tutela_agent::service;
        return match command {
            ServiceCommand::Install => {
                service::install(&cli.data_dir)?;
                println!("service {} installed and started", service::SERVICE_NAME);
                Ok(())
            }
            ServiceCommand::Uninstall => {
                service::uninstall()?;
                println!("service {} removed", service::SERVICE_NAME);
                Ok(())
            }
            ServiceCommand::Run => Ok(service::run(cli.data_dir.clone())?),
            ServiceCommand::Setup { token } => {
                let code = tutela_agent::service_setup::setup(&cli.data_dir, token.as_deref());
                std::process::exit(code)
            }
            ServiceCommand::Show => tutela_agent::service_setup::show(&cli.data_dir)
                .with_context(|| format!("reading the permissions of {}", cli.data_dir.display())),
            ServiceCommand::Purge => Ok(tutela_agent::service_setup::purge(&cli.data_dir)?),
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Enrol { token, station } => {
                let station = station.unwrap_or_else(session::station_name);
                let enrolment =
                    tutela_agent::enrol::enrol(&cli.data_dir, &token, &station, session::now_ms())
                        .await?;
                println!(
                    "enrolled as {} (group {}) with collector {}",
                    enrolment.agent_id,
                    if enrolment.group.is_empty() {
                        "-"
                    } else {
                        &enrolment.group
                    },
                    enrolment.collector
                );
                Ok(())
            }
            Command::Status => status(&cli.data_dir),
            Command::Concern { .. } => unreachable!("handled before the runtime starts"),
            #[cfg(windows)]
            Command::Service { .. } => unreachable!("handled before the runtime starts"),
            Command::Run {
                simulate,
                simulate_rate,
            } => run(&cli.data_dir, simulate, simulate_rate).await,
        }
    })
}

fn spool_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spool.db")
}

/// `tutela-agent concern`: opens the school's 'Report a concern' page. Run from
/// a desktop entry, so a problem is also shown in a window, not only printed.
fn concern(link_file: Option<&std::path::Path>, print: bool) -> Result<()> {
    let file = link_file.map_or_else(tutela_agent::concern::default_link_file, |f| f.to_owned());
    let opened = tutela_agent::concern::read(&file).and_then(|url| {
        if print {
            println!("{url}");
            Ok(())
        } else {
            tutela_agent::concern::open(&url)
        }
    });
    if let (Err(e), false) = (&opened, print) {
        if let Err(shown) = tutela_agent::notice::show_message(&e.to_string()) {
            tracing::debug!(error = %shown, "no window for the message");
        }
    }
    Ok(opened?)
}

fn status(data_dir: &std::path::Path) -> Result<()> {
    let enrolment = Enrolment::load(data_dir)?;
    let config = AgentConfig::load(&data_dir.join("agent.toml"))?;
    let spool = Spool::open(
        &spool_path(data_dir),
        &enrolment.agent_id,
        SpoolConfig {
            max_bytes: config.spool.max_bytes,
        },
    )?;
    let stats = spool.stats()?;
    println!("agent id:      {}", enrolment.agent_id);
    println!("group:         {}", enrolment.group);
    println!("collector:     {}", enrolment.addresses().join(", "));
    println!("pinned cert:   {}", enrolment.fingerprint);
    println!(
        "events sent:   {}",
        stats.next_seq.saturating_sub(1 + stats.backlog)
    );
    println!(
        "spool backlog: {} events, {} bytes (limit {})",
        stats.backlog, stats.bytes, config.spool.max_bytes
    );
    println!("dropped:       {}", stats.dropped);
    println!("quarantined:   {}", stats.quarantined);
    Ok(())
}

async fn run(data_dir: &std::path::Path, simulate: Option<u64>, rate: u64) -> Result<()> {
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
            tracing::info!("stopping; unsent events stay in the spool");
            Ok(())
        }
    }
}

/// How long the sensors may take to start before the agent gives up.
const SENSOR_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the sensors on their own thread, bounded by [`SENSOR_START_TIMEOUT`]:
/// a start that blocks (an X server that never answers) ends the agent with an
/// error, so the service restarts it, instead of leaving it up but blind.
async fn start_sensors(
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

/// Replaces a cloned identity, retrying until the collector answers (a
/// cloned identity must not send anything), then deletes the old spool: its
/// events (typed context, captures) belong to the station the image was taken
/// from and can never be sent under the new identity. (When the collector
/// asks for the re-key mid-run, the caller first takes out the events this
/// run made itself and seals them again afterwards: see `carry_over`.)
async fn replace_identity(
    data_dir: &std::path::Path,
    enrolment: &Enrolment,
    identity: &Identity,
    reason: tutela_agent::enrol::RekeyReason,
) -> (Enrolment, Identity) {
    let mut backoff = uplink::Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        match tutela_agent::enrol::rekey(data_dir, enrolment, identity, reason).await {
            Ok(new) => {
                discard_cloned_spools(data_dir);
                return new;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not replace the cloned identity; will retry");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Seals `drafts` (this machine's own events, taken from the cloned
/// identity's spool before it was deleted) into the new identity's spool.
fn carry_over(
    data_dir: &std::path::Path,
    enrolment: &Enrolment,
    identity: &Identity,
    drafts: Vec<tutela_agent::event::EventDraft>,
    config: &AgentConfig,
) -> Result<()> {
    if drafts.is_empty() {
        return Ok(());
    }
    let mut spool = Spool::open(
        &spool_path(data_dir),
        &enrolment.agent_id,
        SpoolConfig {
            max_bytes: config.spool.max_bytes,
        },
    )
    .context("opening the new identity's spool")?;
    let total = drafts.len();
    for draft in drafts {
        spool
            .append(identity, draft)
            .context("carrying this machine's events over to the new identity")?;
    }
    tracing::info!(
        events = total,
        agent_id = %enrolment.agent_id,
        "this machine's unsent events were sealed again under the new identity"
    );
    Ok(())
}

/// Deletes the spool left by a cloned identity (and any `spool.cloned-*.db`
/// an earlier version set aside), with their -wal and -shm files, logging how
/// many unsent events went with them. Called once the new identity is enrolled.
fn discard_cloned_spools(data_dir: &std::path::Path) {
    let mut spools = vec![spool_path(data_dir)];
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        spools.extend(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("spool.cloned-") && n.ends_with(".db"))
                }),
        );
    }
    for spool in spools.into_iter().filter(|p| p.is_file()) {
        let unsent = rusqlite::Connection::open(&spool)
            .and_then(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM quarantine)",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0);
        let mut removed = true;
        for file in [
            spool.clone(),
            spool.with_extension("db-wal"),
            spool.with_extension("db-shm"),
        ] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    removed = false;
                    tracing::error!(file = %file.display(), error = %e, "could not delete the cloned identity's spool; delete it by hand");
                }
            }
        }
        if removed {
            tracing::warn!(
                spool = %spool.display(),
                dropped = unsent,
                "deleted the cloned identity's spool; its unsent events came from another machine and are dropped"
            );
        }
    }
}

/// The shipped English (UK) pack, used until the collector pushes a bundle.
const BUILT_IN_PACK: &str = include_str!("../../rules/packs/en-GB.toml");

fn age_band(config: &AgentConfig) -> Result<tutela_rules::AgeBand> {
    Ok(match config.rules.age.as_deref().unwrap_or("all") {
        "all" => tutela_rules::AgeBand::All,
        "primary" => tutela_rules::AgeBand::Primary,
        "secondary" => tutela_rules::AgeBand::Secondary,
        other => anyhow::bail!("[rules] age = {other:?} is not one of all, primary, secondary"),
    })
}

/// The rules to run: a local override pack if configured, else the last
/// bundle the collector published, else the built-in pack.
fn load_rules(
    config: &AgentConfig,
    data_dir: &std::path::Path,
    enrolment: &Enrolment,
    age: tutela_rules::AgeBand,
) -> Result<LiveRules> {
    if config.rules.pack_file.is_none() {
        if let Some(m) = tutela_agent::rules_sync::load_saved(data_dir, enrolment, age) {
            tracing::info!(pack = %m.pack_id(), version = m.version(), "rules loaded from the last published bundle");
            tutela_agent::memory::release_freed();
            return Ok(Arc::new(std::sync::RwLock::new(Arc::new(m))));
        }
    }
    let (text, origin) = match &config.rules.pack_file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the rule pack {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (BUILT_IN_PACK.to_owned(), "built-in en-GB.toml".to_owned()),
    };
    let pack = tutela_rules::Pack::parse(&text, &origin)?;
    let matcher = tutela_rules::Matcher::compile(&pack, &tutela_rules::CompileOptions { age })?;
    tracing::info!(pack = %matcher.pack_id(), version = matcher.version(), terms = matcher.term_count(), "rules loaded");
    drop((pack, text));
    tutela_agent::memory::release_freed();
    Ok(Arc::new(std::sync::RwLock::new(Arc::new(matcher))))
}

/// Generates synthetic matched events until `total` have been spooled,
/// counting those spooled by earlier runs, so a restart continues the series.
async fn simulate_events(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: u64) -> EventDraft {
        EventDraft {
            time_ms: session::now_ms(),
            user: "pupil".into(),
            station: "LAB1-PC01".into(),
            observation: Observation {
                source: Source::Title as i32,
                context: format!("typed context {n}"),
                ..Default::default()
            },
            matches: Vec::new(),
            evidence: None,
            rules_version: 0,
            count: 1,
            event_id: None,
            repeat_of: String::new(),
        }
    }

    #[test]
    fn a_cloned_identitys_spool_is_deleted_with_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate();
        {
            let mut spool =
                Spool::open(&spool_path(dir.path()), "ag-old", SpoolConfig::default()).unwrap();
            for n in 0..5 {
                spool.append(&identity, draft(n)).unwrap();
            }
            assert!(dir.path().join("spool.db-wal").exists());
            // A spool an earlier version set aside.
            std::fs::copy(
                spool_path(dir.path()),
                dir.path().join("spool.cloned-1700000000000.db"),
            )
            .unwrap();
            discard_cloned_spools(dir.path());
        }
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.iter().all(|n| !n.starts_with("spool")), "{left:?}");
        // The new identity starts an empty spool.
        let spool = Spool::open(&spool_path(dir.path()), "ag-new", SpoolConfig::default()).unwrap();
        assert_eq!(spool.stats().unwrap().backlog, 0);
    }
}
