//! `tutela-collector exemption add|list|revoke`, on the store `[storage] url` names.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::{load_config, open_store};
use crate::{exemption, store};

#[derive(Debug, Subcommand)]
pub enum ExemptionCommand {
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
        /// Only that school's stations (its id; without it, every school's).
        #[arg(long)]
        school: Option<String>,
    },
    /// List exemptions, newest first, with their state and school.
    List {
        /// Only those one school's stations hold: its own and the trust-wide ones.
        #[arg(long)]
        school: Option<String>,
    },
    /// End an exemption now.
    Revoke {
        id: i64,
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

pub fn run(dir: &Path, command: ExemptionCommand) -> Result<()> {
    let (runtime, store) = open_store(dir)?;
    let config = load_config(dir)?;
    let zone = crate::summary::zone(&config);
    match command {
        ExemptionCommand::Add {
            group,
            category,
            term,
            until,
            reason,
            by,
            school,
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
                    school: school.unwrap_or_default(),
                },
            ))?;
            println!("exemption {id} in force until {}", zone.format(ends_ms));
            warn_if_no_agents(&runtime.block_on(store.group_agents(group.trim()))?, &group);
        }
        ExemptionCommand::List { school } => {
            let now = store::now_ms();
            let scope = school.map_or(store::schools::Scope::Trust, store::schools::Scope::School);
            for e in runtime.block_on(store.exemptions(&scope))? {
                let school = if e.school.is_empty() {
                    String::new()
                } else {
                    format!(" (school {})", e.school)
                };
                println!(
                    "{} {} group={} {} from {} until {} by {}: {}{school}",
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
            runtime.block_on(exemption::revoke_in(
                &store,
                &store::schools::Scope::Trust,
                id,
                &by,
            ))?;
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
