//! `tutela-collector alerts list|gaps|capture`, on the store `[storage] url`
//! names (SQLite or PostgreSQL).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};

use super::load_config;
use crate::console::cli::with_store;
use crate::store::review::{Alert, Listing};
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
    match command {
        AlertsCommand::List {
            agent,
            limit,
            format,
            all,
        } => {
            let listing = Listing {
                agent_id: agent,
                limit,
                include_folded: all,
            };
            let rows = with_store(dir, |db| Ok(db.listing(&listing)?))?;
            match format {
                Format::Json => {
                    for row in &rows {
                        println!("{}", json(row));
                    }
                }
                Format::Table => print_table(&rows),
            }
        }
        AlertsCommand::Gaps => {
            for g in with_store(dir, |db| Ok(db.gaps()?))? {
                println!("{} {}..={}", g.agent_id, g.from_seq, g.to_seq);
            }
        }
        AlertsCommand::Capture { alert_id, out } => {
            let vault = secrets::CaptureVault::load(dir)?;
            let blobs = store::blob::Blobs::connect(&load_config(dir)?.storage.captures)?;
            let capture = with_store(dir, |db| {
                Ok(evidence::open_capture(db, &vault, &blobs, alert_id)?)
            })?
            .with_context(|| format!("alert {alert_id} has no capture; `tutela-collector alerts list` shows which alerts have one"))?;
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

/// One alert as a line of JSON (the signed body and signature stay out).
fn json(a: &Alert) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "event_id": a.event_id,
        "agent_id": a.agent_id,
        "seq": a.seq,
        "time_ms": a.time_ms,
        "received_ms": a.received_ms,
        "clock_skew": a.clock_skew,
        "chain_ok": a.chain_ok,
        "user": a.user,
        "station": a.station,
        "source": a.source,
        "context": a.context,
        "app": a.app,
        "window_title": a.window_title,
        "url": a.url,
        "search_query": a.search_query,
        "category": a.category,
        "severity": a.severity,
        "rule_id": a.rule_id,
        "term": a.term,
        "rules_version": a.rules_version,
        "count": a.repeats,
        "has_capture": a.has_capture,
        "state": a.state,
    })
}

fn print_table(rows: &[Alert]) {
    println!(
        "{:>6} {:<16} {:>6} {:<10} {:<14} {:<18} {:>3} {:<12} context",
        "id", "agent", "seq", "user", "station", "category", "sev", "state"
    );
    for r in rows {
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
