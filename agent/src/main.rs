//! `tutela-agent`: the Tutela workstation agent.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tutela_agent::config::AgentConfig;
use tutela_agent::identity::Enrolment;
use tutela_agent::session;
use tutela_agent::spool::{Spool, SpoolConfig};

mod run;

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
        use anyhow::Context;
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
            } => run::run(&cli.data_dir, simulate, simulate_rate).await,
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
