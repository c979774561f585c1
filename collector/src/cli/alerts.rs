//! `tutela-collector alerts list|gaps|capture`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};

use super::load_config;
use crate::alerts::{self, AlertFilter};
use crate::{evidence, secrets, store};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
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

pub fn run(dir: &Path, command: AlertsCommand) -> Result<()> {
    let conn = store::open(dir).context("opening the collector database")?;
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
            let vault = secrets::CaptureVault::load(dir)?;
            let blobs = store::blob::Blobs::connect(&load_config(dir)?.storage.captures)?;
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
