//! `tutela-collector agents list|revoke|clear-flag|move`.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::open_store;
use crate::store;

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

impl AgentsCommand {
    /// Whether the command works on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        matches!(self, Self::Move { .. })
    }
}

pub fn run(dir: &Path, command: AgentsCommand) -> Result<()> {
    if let AgentsCommand::Move {
        agent_id,
        group,
        by,
    } = &command
    {
        return move_agent(dir, agent_id, group, by);
    }
    let mut conn = store::open(dir)?;
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
            crate::console::schema::create(&conn)?;
            // The family is read and revoked in one write transaction,
            // so an identity re-keyed meanwhile cannot slip through.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
                crate::console::audit::append(
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
            crate::console::schema::create(&conn)?;
            crate::console::audit::append(
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

/// `agents move`, on the store `[storage] url` names: the collector the
/// agent is connected to sends it a signed assignment to the new group.
fn move_agent(dir: &Path, agent_id: &str, group: &str, by: &str) -> Result<()> {
    let (runtime, store) = open_store(dir)?;
    let group = runtime.block_on(crate::exemption::move_agent(&store, agent_id, group, by))?;
    println!("agent {agent_id} moved to group {group}; it takes that group's exemptions and notice now if it is connected, or when it next connects");
    Ok(())
}
