//! A cloned identity (an imaged disk): replaced, its spool deleted, this
//! machine's own events sealed again under the new identity.

use std::time::Duration;

use anyhow::{Context, Result};
use tutela_agent::config::AgentConfig;
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::spool::{Spool, SpoolConfig};
use tutela_agent::uplink::{self};

use crate::spool_path;

/// Replaces a cloned identity, retrying until the collector answers (a
/// cloned identity must not send anything), then deletes the old spool: its
/// events (typed context, captures) belong to the station the image was taken
/// from and can never be sent under the new identity. (When the collector
/// asks for the re-key mid-run, the caller first takes out the events this
/// run made itself and seals them again afterwards: see `carry_over`.)
pub(super) async fn replace_identity(
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
pub(super) fn carry_over(
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
pub(super) fn discard_cloned_spools(data_dir: &std::path::Path) {
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
