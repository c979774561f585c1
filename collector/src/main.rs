//! `tutela-collector`: the school's Tutela server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tutela_collector::alerts::{self, AlertFilter};
use tutela_collector::config::CollectorConfig;
use tutela_collector::enrolment::{self, TokenSpec};
use tutela_collector::{evidence, secrets, serve, store};

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
        command: TokenCommand,
    },
    /// Stored alerts.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Rule packs: publish signed bundles to agents.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Review console accounts.
    User {
        #[command(subcommand)]
        command: tutela_collector::console::cli::UserCommand,
    },
    /// The schools of a trust, each a tenant of this collector.
    Schools {
        #[command(subcommand)]
        command: tutela_collector::schools::SchoolsCommand,
    },
    /// Staff accounts (their alerts go to the head teacher only) and grants.
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
        command: ExemptionCommand,
    },
    /// The monitoring notice pupils acknowledge at sign-in, per group.
    Notice {
        #[command(subcommand)]
        command: tutela_collector::notice::cli::NoticeCommand,
    },
    /// Copy the database (online, while serving) and the keys, certificate and configuration into a new directory.
    Backup {
        /// A new or empty directory for the backup.
        dest: PathBuf,
        /// File holding the passphrase that encrypts the backup (default: [backup] passphrase_file).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Write the keys and database in the clear (anyone with the backup can read every capture).
        #[arg(long, conflicts_with = "passphrase_file")]
        unencrypted: bool,
    },
    /// Restore a backup into --data-dir, which must be missing or empty.
    Restore {
        /// The backup directory (made by `backup`).
        src: PathBuf,
        /// The passphrase file the backup was made with (for an encrypted backup).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
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

#[derive(Debug, Subcommand)]
enum ExemptionCommand {
    /// Suspend a category (or one term) for a group until a time, with a reason.
    Add {
        /// The group (as given to `token create --group`).
        #[arg(long)]
        group: String,
        #[arg(long, conflicts_with = "term", required_unless_present = "term")]
        category: Option<String>,
        #[arg(long)]
        term: Option<String>,
        /// End: an RFC 3339 time (2026-11-27T15:30:00Z) or a duration from now (90s, 45m, 8h, 7d).
        #[arg(long)]
        until: String,
        /// Why (shown in the audit log and the weekly summary).
        #[arg(long)]
        reason: String,
        /// Who asks for it (recorded in the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// List exemptions, newest first, with their state.
    List,
    /// End an exemption now.
    Revoke {
        id: i64,
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make an enrolment token for devices to join with `tutela-agent enrol`.
    Create {
        /// How long the token is valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_duration_ms)]
        expires: i64,
        /// How many devices may enrol with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Group the devices join (site, room or year group).
        #[arg(long, default_value = "")]
        group: String,
        /// A note for technicians.
        #[arg(long, default_value = "")]
        label: String,
        /// The school the devices belong to (`schools list`).
        #[arg(long, default_value = tutela_collector::store::schools::DEFAULT_SCHOOL)]
        school: String,
    },
    /// List enrolment tokens (never their secrets) with uses and state.
    List,
    /// Revoke a token by its id (or a prefix of at least 4 digits) from `token list`.
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// List stored alerts, oldest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also list folded repeats and extra burst shots as rows of their own.
        #[arg(long)]
        all: bool,
    },
    /// List recorded sequence gaps (events an agent numbered but never delivered).
    Gaps,
    /// Decrypt the screenshot of one alert into a JPEG file.
    Capture {
        /// The alert id, as `alerts list` shows it.
        alert_id: i64,
        /// Where to write the JPEG.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Lint a pack, show its change against the live version, sign it and publish it to every agent.
    Push {
        /// The pack file (TOML).
        pack: PathBuf,
        /// Publish as a shadow (candidate) pack: agents count its would-be matches, raise no alerts.
        #[arg(long)]
        shadow: bool,
    },
    /// Show the published versions and which version each agent runs.
    Status,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// List enrolled agents.
    List,
    /// Revoke an agent: its events are refused from now on. An identity that
    /// was re-keyed (cloned images) has descendants: say whether they go too.
    Revoke {
        agent_id: String,
        /// Also revoke every identity re-keyed from this one (a stolen or
        /// copied key: the usual choice).
        #[arg(long, conflicts_with = "only")]
        with_descendants: bool,
        /// Revoke this identity only; its re-keyed descendants keep working
        /// (e.g. retiring the master of a cloned lab image).
        #[arg(long)]
        only: bool,
        /// Who asks for it (recorded in the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Clear an agent's technician flag (e.g. a cloned identity, once dealt with).
    ClearFlag { agent_id: String },
    /// Move an agent to another group: it takes that group's exemptions and
    /// notice at once (when connected; otherwise when it next connects),
    /// without a restart or a new token. Works on PostgreSQL too.
    Move {
        agent_id: String,
        /// The new group (as given to `token create --group`).
        #[arg(long)]
        group: String,
        /// Who asks for it (recorded in the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

/// A token's validity: a duration (a bare number counts hours), at most 365 days.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    use tutela_collector::duration::{parse_ms, DurationError};
    let text = text.trim();
    let hours;
    let with_unit = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        hours = format!("{text}h");
        &hours
    } else {
        text
    };
    match parse_ms(with_unit) {
        Ok(ms) if ms <= MAX_TOKEN_VALIDITY_MS => Ok(ms),
        Ok(_) | Err(DurationError::TooLong(_)) => Err(format!(
            "`{text}` is too long: a token may be valid for at most 365d"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Longest an enrolment token may stay valid.
const MAX_TOKEN_VALIDITY_MS: i64 = 365 * 86_400_000;

/// The store `[storage] url` names (tokens live there), and a runtime to use it on.
fn open_store(dir: &Path) -> Result<(tokio::runtime::Runtime, store::Store)> {
    let config = CollectorConfig::load(&config_path(dir))?;
    let location = store::Location::new(dir, &config.storage.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opened = runtime
        .block_on(store::Store::open(&location))
        .context("opening the collector's store")?;
    Ok((runtime, opened))
}

/// Commands that still read the SQLite file are refused when agents and
/// events live in PostgreSQL, rather than answer from the wrong store (an
/// agent "revoked" where ingest never looks).
fn refuse_on_postgres(dir: &Path, command: &str) -> Result<()> {
    let Ok(config) = CollectorConfig::load(&config_path(dir)) else {
        return Ok(());
    };
    anyhow::ensure!(
        !store::Location::new(dir, &config.storage.url)?.shared(),
        "`tutela-collector {command}` does not work on PostgreSQL yet: [storage] url in collector.toml names PostgreSQL, where agents and events are kept, and this command reads only the SQLite file; query PostgreSQL directly for now (see the README, Running for many schools)"
    );
    Ok(())
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("collector.toml")
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
    let unmoved = match &cli.command {
        Command::Alerts { .. } => Some("alerts"),
        Command::Agents {
            command: AgentsCommand::Move { .. },
        } => None,
        Command::Agents { .. } => Some("agents"),
        Command::Backup { .. } => Some("backup"),
        Command::Restore { .. } => Some("restore"),
        _ => None,
    };
    if let Some(command) = unmoved {
        refuse_on_postgres(&dir, command)?;
    }
    match cli.command {
        Command::Init { listen, hostnames } => init(&dir, listen, &hostnames),
        Command::Serve { listen } => {
            let mut config = CollectorConfig::load(&config_path(&dir))?;
            if let Some(l) = listen {
                config.listen = l;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::serve(&dir, &config, async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
            }))
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    expires,
                    uses,
                    group,
                    label,
                    school,
                },
        } => {
            let config = CollectorConfig::load(&config_path(&dir))?;
            let tls = secrets::load_tls(&dir)?;
            anyhow::ensure!(uses >= 1, "--uses must be at least 1");
            let (runtime, tokens) = open_store(&dir)?;
            runtime.block_on(tutela_collector::schools::require(&tokens, &school))?;
            let mut token = runtime.block_on(enrolment::create_token(
                &tokens,
                &TokenSpec {
                    valid_for_ms: expires,
                    max_uses: uses,
                    group: group.clone(),
                    label: label.clone(),
                    school,
                },
                &config.advertised(),
                &tls.fingerprint,
            ))?;
            token.fallbacks = config.advertise_also.clone();
            let conn = store::open(&dir)?;
            tutela_collector::console::schema::create(&conn)?;
            tutela_collector::console::audit::append(
                &conn,
                "cli",
                "token-create",
                &format!("group:{group}"),
                &format!("{uses} uses, valid {} s, label {label}", expires / 1000),
            )?;
            println!("{}", token.encode());
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List,
        } => {
            let (runtime, tokens) = open_store(&dir)?;
            let now = store::now_ms();
            println!(
                "{:<12} {:<10} {:<12} {:>9} {:<24} label",
                "id", "state", "group", "uses", "expires"
            );
            for t in runtime.block_on(tokens.list_tokens())? {
                println!(
                    "{:<12} {:<10} {:<12} {:>9} {:<24} {}",
                    t.id,
                    t.state(now),
                    if t.group.is_empty() { "-" } else { &t.group },
                    format!("{}/{}", t.uses, t.max_uses),
                    tutela_collector::console::tz::Zone::utc().format(t.expires_ms),
                    t.label
                );
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => {
            let (runtime, tokens) = open_store(&dir)?;
            let id = enrolment::token_by_prefix(&runtime.block_on(tokens.list_tokens())?, &id)?;
            runtime.block_on(tokens.revoke_token(&id))?;
            tracing::info!(token = %id, "enrolment token revoked");
            let conn = store::open(&dir)?;
            tutela_collector::console::schema::create(&conn)?;
            tutela_collector::console::audit::append(
                &conn,
                "cli",
                "token-revoke",
                &id,
                "from the command line",
            )?;
            println!("revoked token {id}");
            Ok(())
        }
        Command::Exemption { command } => exemption_cli(&dir, command),
        Command::Notice { command } => tutela_collector::notice::cli::run(&dir, command),
        Command::Alerts { command } => {
            let conn = store::open(&dir).context("opening the collector database")?;
            match command {
                AlertsCommand::List {
                    agent,
                    limit,
                    format,
                    all,
                } => {
                    let rows = alerts::list(
                        &conn,
                        &AlertFilter {
                            agent_id: agent,
                            limit,
                            include_folded: all,
                        },
                    )?;
                    match format {
                        Format::Json => {
                            for row in &rows {
                                println!("{}", serde_json::to_string(row)?);
                            }
                        }
                        Format::Table => {
                            println!(
                                "{:>6} {:<16} {:>6} {:<10} {:<14} {:<18} {:>3} {:<12} context",
                                "id", "agent", "seq", "user", "station", "category", "sev", "state"
                            );
                            for r in &rows {
                                println!(
                                    "{:>6} {:<16} {:>6} {:<10} {:<14} {:<18} {:>3} {:<12} {}",
                                    r.id,
                                    r.agent_id,
                                    r.seq,
                                    r.user,
                                    r.station,
                                    r.category,
                                    r.severity,
                                    r.state,
                                    r.context
                                        .chars()
                                        .map(|c| if c.is_control() { ' ' } else { c })
                                        .take(60)
                                        .collect::<String>()
                                );
                            }
                            eprintln!("{} alerts", rows.len());
                        }
                    }
                }
                AlertsCommand::Gaps => {
                    for (agent, from, to) in alerts::gaps(&conn)? {
                        println!("{agent} {from}..={to}");
                    }
                }
                AlertsCommand::Capture { alert_id, out } => {
                    let vault = secrets::CaptureVault::load(&dir)?;
                    let blobs = tutela_collector::store::blob::Blobs::connect(
                        &CollectorConfig::load(&config_path(&dir))?.storage.captures,
                    )?;
                    let capture = evidence::open_capture(&conn, &vault, &blobs, alert_id)?
                        .with_context(|| format!("alert {alert_id} has no capture"))?;
                    secrets::write_private(&out, &capture.jpeg)?;
                    println!(
                        "wrote {} ({}x{}, {} bytes)",
                        out.display(),
                        capture.width,
                        capture.height,
                        capture.jpeg.len()
                    );
                }
            }
            Ok(())
        }
        Command::Rules { command } => rules_cli(&dir, command),
        Command::User { command } => tutela_collector::console::cli::user(&dir, command),
        Command::Users { command } => tutela_collector::console::cli::users(&dir, command),
        Command::Schools { command } => tutela_collector::schools::run(&dir, command),
        Command::Summary(args) => tutela_collector::summary::cli::run(&dir, args),
        Command::Webhooks { command } => tutela_collector::webhook::cli::run(&dir, command),
        Command::Backup {
            dest,
            passphrase_file,
            unencrypted,
        } => {
            use tutela_collector::backup::{BackupError, Passphrase};
            let passphrase = if unencrypted {
                eprintln!("warning: writing an UNENCRYPTED backup: it holds the capture key and the database in the clear");
                None
            } else {
                let file = match passphrase_file {
                    Some(f) => f,
                    None => CollectorConfig::load(&config_path(&dir))?
                        .backup
                        .passphrase_file
                        .ok_or(BackupError::NoPassphrase)?,
                };
                Some(Passphrase::read(&file)?)
            };
            let report = tutela_collector::backup::backup(&dir, &dest, passphrase.as_ref())?;
            println!(
                "backup of {} alerts and {} captures written to {} (integrity ok){}",
                report.manifest.alerts,
                report.manifest.captures,
                report.dir.display(),
                if report.manifest.encryption.is_some() {
                    ", encrypted"
                } else {
                    ", NOT encrypted"
                }
            );
            Ok(())
        }
        Command::Restore {
            src,
            passphrase_file,
        } => {
            let passphrase = passphrase_file
                .as_deref()
                .map(tutela_collector::backup::Passphrase::read)
                .transpose()?;
            let report = tutela_collector::backup::restore(&src, &dir, passphrase.as_ref())?;
            println!(
                "restored {} alerts and {} captures into {} (integrity ok); start the collector with this --data-dir",
                report.manifest.alerts,
                report.manifest.captures,
                report.dir.display()
            );
            Ok(())
        }
        Command::Migrate { to } => migrate(&dir, &to),
        Command::Purge { dry_run } => {
            let config = CollectorConfig::load(&config_path(&dir))?;
            let location = store::Location::new(&dir, &config.storage.url)?;
            let report = if location.shared() {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(tutela_collector::retention::run_once_at(
                        &location,
                        &config.retention,
                        dry_run,
                    ))?
            } else {
                tutela_collector::retention::run_once(&dir, &config.retention, dry_run)?
            };
            println!("{report}");
            Ok(())
        }
        Command::Agents {
            command:
                AgentsCommand::Move {
                    agent_id,
                    group,
                    by,
                },
        } => move_agent(&dir, &agent_id, &group, &by),
        Command::Agents { command } => {
            let mut conn = store::open(&dir)?;
            match command {
                AgentsCommand::List => {
                    let mut stmt = conn.prepare("SELECT agent_id, station, grp, revoked, last_seq, COALESCE(last_seen_ms, 0), COALESCE(flag, ''), problems FROM agents ORDER BY enrolled_ms")?;
                    let rows = stmt.query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, String>(7)?,
                        ))
                    })?;
                    for row in rows {
                        let (id, station, grp, revoked, last_seq, seen, flag, problems) = row?;
                        let flag = if flag.is_empty() {
                            String::new()
                        } else {
                            format!(" flag={flag:?}")
                        };
                        let problems = if problems.is_empty() {
                            String::new()
                        } else {
                            format!(" problems={problems:?}")
                        };
                        println!("{id} station={station} group={grp} revoked={revoked} last_seq={last_seq} last_seen_ms={seen}{flag}{problems}");
                    }
                }
                AgentsCommand::Revoke {
                    agent_id,
                    with_descendants,
                    only,
                    by,
                } => {
                    tutela_collector::console::schema::create(&conn)?;
                    // The family is read and revoked in one write transaction,
                    // so an identity re-keyed meanwhile cannot slip through.
                    let tx =
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let descendants = store::sqlite::agents::descendants(&tx, &agent_id)?;
                    anyhow::ensure!(
                        descendants.is_empty() || with_descendants || only,
                        "agent {agent_id} was re-keyed into {} other identities ({}); pass --with-descendants to revoke them too (a copied or stolen key), or --only to revoke this one alone",
                        descendants.len(),
                        descendants.join(", ")
                    );
                    let mut targets = vec![agent_id.clone()];
                    if with_descendants {
                        targets.extend(descendants);
                    }
                    for target in &targets {
                        let n = tx.execute(
                            "UPDATE agents SET revoked = 1 WHERE agent_id = ?1",
                            [target],
                        )?;
                        anyhow::ensure!(
                            n == 1,
                            "no agent {target}; see `tutela-collector agents list`"
                        );
                        tutela_collector::console::audit::append(
                            &tx,
                            &by,
                            "agent-revoke",
                            target,
                            "from the command line",
                        )?;
                    }
                    tx.commit()?;
                    println!("revoked {}", targets.join(", "));
                }
                AgentsCommand::Move { .. } => unreachable!("moves go to the store above"),
                AgentsCommand::ClearFlag { agent_id } => {
                    let n = conn.execute(
                        "UPDATE agents SET flag = NULL WHERE agent_id = ?1",
                        [&agent_id],
                    )?;
                    anyhow::ensure!(
                        n == 1,
                        "no agent {agent_id}; see `tutela-collector agents list`"
                    );
                    tutela_collector::console::schema::create(&conn)?;
                    tutela_collector::console::audit::append(
                        &conn,
                        "cli",
                        "agent-clear-flag",
                        &agent_id,
                        "from the command line",
                    )?;
                    println!("cleared the flag of {agent_id}");
                }
            }
            Ok(())
        }
    }
}

/// `rules push` and `rules status`, on the store `[storage] url` names:
/// a pack pushed through any collector reaches agents connected to all.
fn rules_cli(dir: &Path, command: RulesCommand) -> Result<()> {
    use tutela_collector::publish;
    let (runtime, store) = open_store(dir)?;
    match command {
        RulesCommand::Push { pack, shadow } => {
            let key = secrets::load_signing_key(dir)?;
            let report = runtime.block_on(publish::push_to(&store, &key, &pack, shadow))?;
            for f in &report.findings {
                eprintln!("{f}");
            }
            println!(
                "{} terms added, {} removed against live version {}",
                report.added.len(),
                report.removed.len(),
                report
                    .previous
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(none)".into())
            );
            for t in report.added.iter().take(20) {
                println!("  + {t}");
            }
            for t in report.removed.iter().take(20) {
                println!("  - {t}");
            }
            println!(
                "published {} version {}",
                if shadow { "shadow" } else { "live" },
                report.version
            );
        }
        RulesCommand::Status => {
            let mut candidate = None;
            for shadow in [false, true] {
                let v = runtime
                    .block_on(store.latest_bundle(shadow))?
                    .map(|b| b.version);
                if shadow {
                    candidate = v;
                }
                println!(
                    "{}: {}",
                    if shadow { "shadow" } else { "live" },
                    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
                );
            }
            for a in runtime.block_on(store.agents_rules())? {
                println!(
                    "{} {} runs version {}",
                    a.agent_id, a.station, a.rules_version
                );
            }
            if let Some(v) = candidate {
                let (totals, agents) = runtime.block_on(store.shadow_totals(v))?;
                let sum = totals.iter().fold(0i64, |s, t| s.saturating_add(t.count));
                println!(
                    "shadow version {v}: {sum} would-be matches from {agents} agents (predicted alert volume, before cooldown folding)"
                );
                for t in &totals {
                    println!(
                        "  shadow {} {} matches on {} agents",
                        t.rule_id, t.count, t.agents
                    );
                }
            }
        }
    }
    Ok(())
}

/// `agents move`, on the store `[storage] url` names: the collector the
/// agent is connected to sends it a signed assignment to the new group.
fn move_agent(dir: &Path, agent_id: &str, group: &str, by: &str) -> Result<()> {
    let (runtime, store) = open_store(dir)?;
    let group = runtime.block_on(tutela_collector::exemption::move_agent(
        &store, agent_id, group, by,
    ))?;
    println!("agent {agent_id} moved to group {group}; it takes that group's exemptions and notice now if it is connected, or when it next connects");
    Ok(())
}

/// `exemption add|list|revoke`, on the store `[storage] url` names.
fn exemption_cli(dir: &Path, command: ExemptionCommand) -> Result<()> {
    use tutela_collector::exemption;
    let (runtime, store) = open_store(dir)?;
    let config = CollectorConfig::load(&config_path(dir))?;
    let zone = tutela_collector::summary::zone(&config);
    match command {
        ExemptionCommand::Add {
            group,
            category,
            term,
            until,
            reason,
            by,
        } => {
            let now = store::now_ms();
            let ends_ms = exemption::parse_until(&until, now).map_err(anyhow::Error::msg)?;
            let id = runtime.block_on(exemption::add_to(
                &store,
                &exemption::NewExemption {
                    group: group.clone(),
                    category: category.unwrap_or_default(),
                    term: term.unwrap_or_default(),
                    reason,
                    created_by: by,
                    starts_ms: now,
                    ends_ms,
                },
            ))?;
            println!("exemption {id} in force until {}", zone.format(ends_ms));
            warn_if_no_agents(&runtime.block_on(store.group_agents(group.trim()))?, &group);
        }
        ExemptionCommand::List => {
            let now = store::now_ms();
            for e in runtime.block_on(store.exemptions())? {
                println!(
                    "{} {} group={} {} from {} until {} by {}: {}",
                    e.id,
                    e.state(now),
                    e.grp,
                    e.target(),
                    zone.format(e.starts_ms),
                    zone.format(e.ends_ms),
                    e.created_by,
                    e.reason
                );
            }
        }
        ExemptionCommand::Revoke { id, by } => {
            runtime.block_on(exemption::revoke_in(&store, id, &by))?;
            println!("revoked exemption {id}");
        }
    }
    Ok(())
}

/// An exemption for a group no enrolled agent is in reaches no one (often a
/// misspelt group): say so, and name the groups there are.
fn warn_if_no_agents(found: &store::exemption::GroupAgents, group: &str) {
    if found.in_group == 0 {
        eprintln!(
            "warning: no enrolled agent is in group `{}`, so this exemption reaches no device yet; groups with agents: {}",
            group.trim(),
            if found.groups.is_empty() {
                "(none)".to_owned()
            } else {
                found.groups.join(", ")
            }
        );
    }
}

#[cfg(feature = "postgres")]
fn migrate(dir: &Path, url: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let target = store::Location::redacted(url);
    let report = runtime
        .block_on(store::migrate::migrate(dir, url, &mut |line| {
            println!("{line}")
        }))
        .with_context(|| format!("migrating {} to {target}", dir.display()))?;
    for table in &report.left {
        println!("{table}: not copied (only one backend has it)");
    }
    println!(
        "checked: row counts of {} tables, {} agents' event chains ({} events), the audit log ({} entries)",
        report.copied.len(),
        report.agents_checked,
        report.events_checked,
        report.audit_entries
    );
    println!(
        "migrated to {target}; to serve from it, set [storage] url in collector.toml to this URL and start the collector"
    );
    Ok(())
}

#[cfg(not(feature = "postgres"))]
fn migrate(_dir: &Path, _url: &str) -> Result<()> {
    anyhow::bail!("this tutela-collector was built without PostgreSQL support: build it with `--features postgres` to migrate")
}

fn init(dir: &Path, listen: Option<SocketAddr>, hostnames: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = config_path(dir);
    if !path.exists() {
        let mut config = CollectorConfig::default();
        if let Some(l) = listen {
            config.listen = l;
        }
        let text = format!(
            "# Tutela collector configuration. Every value shown is the default.\n{}",
            toml::to_string_pretty(&config)?
        );
        secrets::write_private(&path, text.as_bytes())?;
    }
    secrets::create_missing(dir, hostnames)?;
    store::open(dir)?;
    let tls = secrets::load_tls(dir)?;
    println!("collector initialised in {}", dir.display());
    println!("certificate fingerprint {}", tls.fingerprint);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_durations_parse_and_huge_ones_are_refused() {
        assert_eq!(parse_duration_ms("30m"), Ok(30 * 60_000));
        assert_eq!(parse_duration_ms("24"), Ok(24 * 3_600_000));
        assert_eq!(parse_duration_ms("365d"), Ok(MAX_TOKEN_VALIDITY_MS));
        for huge in ["366d", "9223372036854775807d", "999999999999999999s"] {
            let err = parse_duration_ms(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge}: {err}");
        }
        assert!(parse_duration_ms("0h").is_err());
        assert!(parse_duration_ms("3y")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }
}
