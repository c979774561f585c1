//! Scheduled backups while `serve` runs (`[backup] dir`, `every`, `keep`).
//!
//! Time is cut into slots (`every` long, from 1970 UTC); each slot's backup
//! goes into `dir/<slot start>` (e.g. `20261206T180000Z`). Where several
//! collectors share PostgreSQL, one of them does the work: the `backup`
//! lease picks the collector that tries, and before writing it claims the
//! slot itself (a lease named after the slot, held far longer than the
//! slot), so a slot is backed up once across the cluster even when the
//! work moves to another collector in the middle of it. Claims of slots
//! older than the kept backups (and at least two slots old) are deleted
//! after each slot, so the `leases` table does not grow. On SQLite one
//! process serves: both are always held.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BackupError, Passphrase};
use crate::config::Backup as BackupConfig;
use crate::store::lease::{holder_id, Lease};
use crate::store::{Jobs, Location};

/// The lease of the collector that makes scheduled backups.
pub const BACKUP_LEASE: &str = "backup";
/// A slot's claim is a lease named this and the slot's name.
const SLOT_CLAIM: &str = "backup-slot:";
/// Claims are kept for at least this many slots before the current one.
const MIN_CLAIMS_KEPT: i64 = 2;
/// How often the scheduler looks at the clock.
const CHECK: Duration = Duration::from_secs(1);
/// Slots shorter than this are refused (a backup takes a while).
const MIN_EVERY_MS: i64 = 2_000;

/// The schedule, checked.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every_ms: i64,
    pub keep: usize,
    pub passphrase_file: PathBuf,
}

impl Schedule {
    /// The schedule `[backup]` asks for; `Ok(None)` when it asks for none.
    pub fn from_config(config: &BackupConfig) -> Result<Option<Self>, String> {
        let Some(dir) = &config.dir else {
            return Ok(None);
        };
        let every = config.every.as_deref().unwrap_or("24h");
        let every_ms = crate::duration::parse_ms(every)
            .map_err(|e| format!("[backup] every = {every:?}: {e}"))?;
        if every_ms < MIN_EVERY_MS {
            return Err(format!(
                "[backup] every = {every:?} is too short: at least 2s (24h is usual)"
            ));
        }
        let passphrase_file = config.passphrase_file.clone().ok_or_else(|| {
            "[backup] dir is set but passphrase_file is not: scheduled backups are always encrypted; set [backup] passphrase_file".to_owned()
        })?;
        Ok(Some(Self {
            dir: dir.clone(),
            every_ms,
            keep: config.keep.unwrap_or(14).max(1) as usize,
            passphrase_file,
        }))
    }

    /// The start of the slot `now_ms` is in.
    pub fn slot(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.every_ms)
    }
}

/// A slot's directory name: its start, UTC.
pub fn slot_name(start_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(start_ms)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| start_ms.to_string())
}

/// Starts the scheduler for the collector in `data_dir`; `None` when no
/// schedule is configured (an unusable one is logged and not started).
pub fn spawn(
    data_dir: &Path,
    location: Location,
    config: &BackupConfig,
    lease_ttl: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let schedule = match Schedule::from_config(config) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "no scheduled backups");
            return None;
        }
    };
    let data_dir = data_dir.to_owned();
    Some(tokio::spawn(async move {
        let jobs = match Jobs::open(&location).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "scheduled backups cannot open the store; none until the collector restarts");
                return;
            }
        };
        let holder = holder_id();
        let lease = Lease::keep(&jobs, BACKUP_LEASE, &holder, lease_ttl);
        tracing::info!(dir = %schedule.dir.display(), every_ms = schedule.every_ms, keep = schedule.keep, "scheduled backups on");
        let mut done = None;
        loop {
            tokio::time::sleep(CHECK).await;
            let slot = schedule.slot(crate::store::now_ms());
            if done == Some(slot) || !lease.held_handle().now() {
                continue;
            }
            done = Some(slot);
            let name = slot_name(slot);
            // The slot's claim outlives the slot by far: nobody asks for it again.
            let claim_ms = (schedule.every_ms * 4).max(86_400_000);
            match jobs
                .take_lease(&format!("{SLOT_CLAIM}{name}"), &holder, claim_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(slot = %name, "another collector made this slot's backup");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(slot = %name, error = %e, "cannot claim the backup slot; trying the next one");
                    continue;
                }
            }
            let run = run_one(&data_dir, &location, &schedule, &name);
            let handle = tokio::runtime::Handle::current();
            match tokio::task::spawn_blocking(move || run(&handle)).await {
                Ok(Ok(dest)) => {
                    tracing::info!(slot = %name, dest = %dest.display(), "scheduled backup written")
                }
                Ok(Err(e)) => {
                    tracing::error!(slot = %name, error = %e, "scheduled backup failed; the next slot tries again")
                }
                Err(e) => tracing::error!(slot = %name, error = %e, "scheduled backup stopped"),
            }
            forget_old_claims(&jobs, &schedule, slot).await;
        }
    }))
}

/// The claims of slots older than the kept backups (and at least two slots
/// old): no collector asks for those slots again, so their rows go.
fn oldest_claim_kept(schedule: &Schedule, slot: i64) -> i64 {
    let kept = (schedule.keep as i64).max(MIN_CLAIMS_KEPT);
    slot.saturating_sub(schedule.every_ms.saturating_mul(kept))
}

async fn forget_old_claims(jobs: &Jobs, schedule: &Schedule, slot: i64) {
    let before = slot_name(oldest_claim_kept(schedule, slot));
    match jobs.forget_leases_before(SLOT_CLAIM, &before).await {
        Ok(0) => {}
        Ok(forgotten) => {
            tracing::info!(forgotten, before = %before, "claims of old backup slots deleted")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot delete the claims of old backup slots; the next slot tries again")
        }
    }
}

/// The work of one slot, run on a blocking thread with the runtime's handle.
fn run_one(
    data_dir: &Path,
    location: &Location,
    schedule: &Schedule,
    name: &str,
) -> impl FnOnce(&tokio::runtime::Handle) -> Result<PathBuf, BackupError> + Send + 'static {
    let data_dir = data_dir.to_owned();
    let location = location.clone();
    let schedule = schedule.clone();
    let dest = schedule.dir.join(name);
    move |handle| {
        let passphrase = Passphrase::read(&schedule.passphrase_file)?;
        std::fs::create_dir_all(&schedule.dir).map_err(super::files::io(&schedule.dir))?;
        match &location {
            Location::Sqlite(_) => {
                let _ = handle;
                super::backup(&data_dir, &dest, Some(&passphrase))?;
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(pg) => {
                super::postgres::backup(&data_dir, pg, handle, &dest, Some(&passphrase))?;
            }
        }
        prune(&schedule.dir, schedule.keep);
        Ok(dest)
    }
}

/// Removes the oldest slot directories beyond `keep` (names sort by time).
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut slots: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 16 && name.ends_with('Z') && name.as_bytes()[8] == b'T'
        })
        .map(|e| e.path())
        .collect();
    slots.sort();
    let excess = slots.len().saturating_sub(keep);
    for old in &slots[..excess] {
        if let Err(e) = std::fs::remove_dir_all(old) {
            tracing::warn!(dir = %old.display(), error = %e, "cannot remove an old scheduled backup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_start_at_whole_multiples_and_are_named_by_their_start() {
        let schedule = Schedule::from_config(&BackupConfig {
            passphrase_file: Some("p".into()),
            dir: Some("d".into()),
            every: Some("6h".into()),
            keep: None,
        })
        .unwrap()
        .unwrap();
        let six = 6 * 3_600_000;
        assert_eq!(schedule.slot(six * 5 + 17), six * 5);
        assert_eq!(slot_name(six * 5), "19700102T060000Z");
        assert_eq!(schedule.keep, 14);
        let refused = |every: &str, pass: Option<&str>| {
            Schedule::from_config(&BackupConfig {
                passphrase_file: pass.map(Into::into),
                dir: Some("d".into()),
                every: Some(every.into()),
                keep: None,
            })
            .unwrap_err()
        };
        assert!(refused("1s", Some("p")).contains("too short"));
        assert!(refused("24h", None).contains("passphrase_file"));
        // Claims are kept for the kept backups' slots, and two at least.
        assert_eq!(oldest_claim_kept(&schedule, six * 20), six * 6);
        let mut one = schedule.clone();
        one.keep = 1;
        assert_eq!(oldest_claim_kept(&one, six * 20), six * 18);
        assert!(slot_name(six * 18) < slot_name(six * 19));
    }
}
