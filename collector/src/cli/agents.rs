//! `tutela-collector agents list|revoke|clear-flag|move`.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::open_store;
use crate::console::cli::with_store;
use crate::store::fleet::{Family, Revoked, StationChange};
use crate::store::users::Audited;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
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
    /// Move an agent to another group, or another school (or both): it
    /// takes the group's exemptions and notice at once (when connected;
    /// otherwise when it next connects), without a restart or a new token;
    /// its later alerts belong to the new school, its earlier ones stay with
    /// the old. Works on PostgreSQL too.
    #[command(group(clap::ArgGroup::new("to").required(true).multiple(true).args(["group", "school"])))]
    Move {
        agent_id: String,
        /// The new group (as given to `token create --group`).
        #[arg(long)]
        group: Option<String>,
        /// The new school (`schools list`).
        #[arg(long)]
        school: Option<String>,
        /// Who asks for it (recorded in the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

pub fn run(dir: &Path, command: AgentsCommand) -> Result<()> {
    match command {
        AgentsCommand::List => {
            for a in with_store(dir, |db| Ok(db.enrolled()?))? {
                let flag = if a.flag.is_empty() {
                    String::new()
                } else {
                    format!(" flag={:?}", a.flag)
                };
                let problems = if a.problems.is_empty() {
                    String::new()
                } else {
                    format!(" problems={:?}", a.problems)
                };
                println!(
                    "{} station={} group={} revoked={} last_seq={} last_seen_ms={}{flag}{problems}",
                    a.agent_id, a.station, a.grp, a.revoked, a.last_seq, a.last_seen_ms
                );
            }
        }
        AgentsCommand::Revoke {
            agent_id,
            with_descendants,
            only,
            by,
        } => {
            let family = match (with_descendants, only) {
                (true, _) => Family::WithDescendants,
                (false, true) => Family::Only,
                (false, false) => Family::Ask,
            };
            match with_store(dir, |db| Ok(db.revoke_family(&agent_id, family, &by)?))? {
                Revoked::Done(targets) => println!("revoked {}", targets.join(", ")),
                Revoked::NoAgent => {
                    bail!("no agent {agent_id}; see `tutela-collector agents list`")
                }
                Revoked::HasDescendants(descendants) => bail!(
                    "agent {agent_id} was re-keyed into {} other identities ({}); pass --with-descendants to revoke them too (a copied or stolen key), or --only to revoke this one alone",
                    descendants.len(),
                    descendants.join(", ")
                ),
            }
        }
        AgentsCommand::Move {
            agent_id,
            group,
            school,
            by,
        } => {
            if let Some(school) = school {
                move_school(dir, &agent_id, &school, &by)?;
            }
            if let Some(group) = group {
                move_agent(dir, &agent_id, &group, &by)?;
            }
        }
        AgentsCommand::ClearFlag { agent_id } => {
            let entry = Audited {
                actor: "cli",
                action: "agent-clear-flag",
                target: &agent_id,
                detail: "from the command line",
            };
            let cleared = with_store(dir, |db| {
                Ok(db.change_stations(StationChange::ClearFlag, &[(agent_id.clone(), entry)])?)
            })?;
            if !cleared {
                bail!(
                    "no enrolled, unrevoked agent {agent_id}; see `tutela-collector agents list`"
                );
            }
            println!("cleared the flag of {agent_id}");
        }
    }
    Ok(())
}

/// `agents move`, on the store `[storage] url` names: the collector the
/// agent is connected to sends it a signed assignment to the new group.
fn move_agent(dir: &Path, agent_id: &str, group: &str, by: &str) -> Result<()> {
    let (runtime, store) = open_store(dir)?;
    let group = runtime.block_on(crate::exemption::move_agent(&store, agent_id, group, by))?;
    println!("agent {agent_id} moved to group {group}; it takes that group's exemptions and notice now if it is connected, or when it next connects");
    Ok(())
}

/// `agents move --school`: the agent's later alerts belong to `school`.
fn move_school(dir: &Path, agent_id: &str, school: &str, by: &str) -> Result<()> {
    let detail = format!("to school {school}");
    let target = format!("agent:{agent_id}");
    let entry = Audited {
        actor: by,
        action: "agent-move-school",
        target: &target,
        detail: &detail,
    };
    if !with_store(dir, |db| Ok(db.schools()?.iter().any(|s| s.id == school)))? {
        bail!("there is no school {school:?}; `tutela-collector schools list` shows the schools and `schools add` adds one; nothing was changed");
    }
    // The new school's notice first, so the device hears of both at once.
    let (runtime, store) = open_store(dir)?;
    let reissued = runtime.block_on(crate::notice::before_move(&store, dir, agent_id, school));
    let moved = with_store(
        dir,
        |db| Ok(db.move_agent_school(agent_id, school, &entry)?),
    )?;
    let Some(from) = moved else {
        bail!("no enrolled, unrevoked agent {agent_id}; see `tutela-collector agents list`; nothing was changed");
    };
    tracing::info!(agent_id, from = %from, to = %school, by, "agent moved to another school");
    println!("agent {agent_id} moved from school {from} to school {school}; its later alerts are {school}'s, its earlier ones stay {from}'s");
    match reissued {
        Ok(Some(issue)) => println!("{school}'s monitoring notice for its group was issued again (issue {issue}) so the device shows it"),
        Ok(None) => {}
        Err(e) => eprintln!("warning: {school}'s monitoring notice could not be issued again for the device ({e}); it keeps its former school's notice until {school}'s changes. Run the move again once that is fixed."),
    }
    Ok(())
}
