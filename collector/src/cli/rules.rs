//! `tutela-collector rules push|status`, on the store `[storage] url` names:
//! a pack pushed through any collector reaches agents connected to all.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

use super::open_store;
use crate::{publish, secrets};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
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

pub fn run(dir: &Path, command: RulesCommand) -> Result<()> {
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
