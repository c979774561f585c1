//! `tutela-collector`: the school's Tutela server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tutela_collector::cli::{self, agents::AgentsCommand, alerts::AlertsCommand};
use tutela_collector::{config::CollectorConfig, serve};

#[derive(Debug, Parser)]
#[command(
    name = "tutela-collector",
    version,
    about = "Tutela collector: receives, verifies and stores agents' signed events"
)]
struct Cli {
    /// Directory holding the database, keys, certificate and collector.toml.
    #[arg(
        long,
        global = true,
        env = "TUTELA_COLLECTOR_DIR",
        default_value = "/var/lib/tutela-collector"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory, configuration, TLS certificate and keys (keeps existing ones).
    Init {
        /// Address agents connect to (written to collector.toml).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Extra host names for the certificate.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
    },
    /// Run the collector.
    Serve {
        /// Override the listen address from collector.toml.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Enrolment tokens.
    Token {
        #[command(subcommand)]
        command: cli::token::TokenCommand,
    },
    /// Stored alerts.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Rule packs: publish signed bundles to agents.
    Rules {
        #[command(subcommand)]
        command: cli::rules::RulesCommand,
    },
    /// Review console accounts.
    User {
        #[command(subcommand)]
        command: tutela_collector::console::cli::UserCommand,
    },
    /// Staff accounts (their alerts go to the head teacher only).
    Users {
        #[command(subcommand)]
        command: tutela_collector::console::cli::UsersCommand,
    },
    /// The weekly summary email: preview it, send it now, or see what was sent.
    Summary(tutela_collector::summary::cli::SummaryArgs),
    /// Urgent alerts by webhook: see what is waiting or refused, queue refused ones again.
    Webhooks {
        #[command(subcommand)]
        command: tutela_collector::webhook::cli::WebhooksCommand,
    },
    /// Enrolled agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Curriculum exemptions: suspend a category or term for a group for a while.
    Exemption {
        #[command(subcommand)]
        command: cli::exemption::ExemptionCommand,
    },
    /// The monitoring notice pupils acknowledge at sign-in, per group.
    Notice {
        #[command(subcommand)]
        command: tutela_collector::notice::cli::NoticeCommand,
    },
    /// Copy the database (online, while serving) and the keys, certificate and configuration into a new directory.
    Backup(cli::backup::BackupArgs),
    /// Restore a backup into --data-dir, which must be missing or empty (a PostgreSQL store's database into --to).
    Restore(cli::backup::RestoreArgs),
    /// Copy this data directory's SQLite store into an empty PostgreSQL database, checking counts and hash chains (stop the collector first).
    Migrate {
        /// The target: postgres://user:password@host:port/database.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Delete alerts closed longer ago than [retention] closed_alert_months, with their captures.
    Purge {
        /// Count what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TUTELA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let dir = cli.data_dir;
    match cli.command {
        Command::Init { listen, hostnames } => cli::init::run(&dir, listen, &hostnames),
        Command::Serve { listen } => {
            let mut config = cli::load_config(&dir)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            serve_until_interrupted(&dir, &config)
        }
        Command::Token { command } => cli::token::run(&dir, command),
        Command::Exemption { command } => cli::exemption::run(&dir, command),
        Command::Notice { command } => tutela_collector::notice::cli::run(&dir, command),
        Command::Alerts { command } => cli::alerts::run(&dir, command),
        Command::Rules { command } => cli::rules::run(&dir, command),
        Command::User { command } => tutela_collector::console::cli::user(&dir, command),
        Command::Users { command } => tutela_collector::console::cli::users(&dir, command),
        Command::Summary(args) => tutela_collector::summary::cli::run(&dir, args),
        Command::Webhooks { command } => tutela_collector::webhook::cli::run(&dir, command),
        Command::Backup(args) => cli::backup::backup(&dir, args),
        Command::Restore(args) => cli::backup::restore(&dir, args),
        Command::Migrate { to } => cli::migrate::run(&dir, &to),
        Command::Purge { dry_run } => purge(&dir, dry_run),
        Command::Agents { command } => cli::agents::run(&dir, command),
    }
}

/// `serve`, until Ctrl-C or SIGINT.
fn serve_until_interrupted(dir: &std::path::Path, config: &CollectorConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve::serve(dir, config, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }))
}

/// `purge`, on the store `[storage] url` names.
fn purge(dir: &std::path::Path, dry_run: bool) -> Result<()> {
    use tutela_collector::{retention, store};
    let config = cli::load_config(dir)?;
    let location = store::Location::new(dir, &config.storage.url)?;
    let report = if location.shared() {
        cli::runtime()?.block_on(retention::run_once_at(
            &location,
            &config.retention,
            dry_run,
        ))?
    } else {
        retention::run_once(dir, &config.retention, dry_run)?
    };
    println!("{report}");
    Ok(())
}
