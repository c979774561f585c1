//! Backup and restore of a PostgreSQL store. The database is read in one
//! REPEATABLE READ snapshot while collectors keep serving, written into one
//! file (`postgres.db`, an SQLite file holding every table) checked against
//! the snapshot (row counts, event chains, audit chain), then sealed into
//! the same archive as a SQLite backup, with the same manifest, checksums
//! and encryption. A restore copies it into an empty PostgreSQL database in
//! one transaction, with the same checks before it commits.

use std::path::Path;

use tokio::runtime::Handle;

use super::{restore_with, write, BackupError, Passphrase, Report, StoreKind};
use crate::store::migrate::{self, dump};
use crate::store::postgres::PgConfig;

/// Backs up the collector in `data_dir`, whose store is the PostgreSQL at
/// `pg`, into `dest`. `handle` runs the database work: call this from a
/// thread outside the runtime (or a blocking task).
pub fn backup(
    data_dir: &Path,
    pg: &PgConfig,
    handle: &Handle,
    dest: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<(Report, dump::DumpReport), BackupError> {
    let mut checked = None;
    let report = write(data_dir, dest, passphrase, StoreKind::Postgres, |partial| {
        let report = handle
            .block_on(dump::dump(pg, partial))
            .map_err(|e| BackupError::Postgres(format!("backing up {}: {e}", pg.target())))?;
        secure(partial)?;
        checked = Some(report);
        Ok(())
    })?;
    Ok((report, checked.unwrap_or_default()))
}

/// Owner-only, as every file of a backup.
fn secure(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(super::files::io(path))?;
    }
    let _ = path;
    Ok(())
}

/// Restores the PostgreSQL backup in `src`: its files into `data_dir`
/// (missing or empty), its database into the empty PostgreSQL at `pg`.
/// `progress` hears a line per table.
pub fn restore(
    src: &Path,
    data_dir: &Path,
    passphrase: Option<&Passphrase>,
    pg: &PgConfig,
    handle: &Handle,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(Report, migrate::Report), BackupError> {
    let mut copied = None;
    let report = restore_with(src, data_dir, passphrase, |kind, staging| {
        if kind != StoreKind::Postgres {
            return Err(BackupError::NotPostgres(src.to_owned()));
        }
        let file = staging.join(kind.file());
        super::check_database(&file)?;
        let restored = handle
            .block_on(migrate::restore(&file, pg, progress))
            .map_err(|e| BackupError::Postgres(format!("restoring into {}: {e}", pg.target())));
        // The plain copy of the database never stays on disk.
        let _ = std::fs::remove_file(&file);
        copied = Some(restored?);
        Ok(())
    })?;
    Ok((report, copied.unwrap_or_default()))
}
