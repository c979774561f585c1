//! Files and directories of backups and restores: owner-only, checked,
//! never written over.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::Connection;

use super::{sql, BackupError, SEALED_SUFFIX};

/// A closure turning an I/O error on `path` into a [`BackupError`].
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A new owner-only file (never an existing one, never through a symlink).
pub(super) fn create_private(path: &Path) -> Result<fs::File, BackupError> {
    tutela_proto::private_file::create_new(path).map_err(io(path))
}

pub(super) fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut input = fs::File::open(path).map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

pub(super) fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

pub(super) fn is_empty_dir(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

/// The name a file has inside a backup.
pub(super) fn stored_name(name: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{name}{SEALED_SUFFIX}")
    } else {
        name.to_owned()
    }
}

/// Removes plain database copies left beside the live one by a backup that
/// was killed before it could clean up (older than an hour, so a backup
/// running at the same time keeps its own).
pub(super) fn remove_stale_partials(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".backup-") && name.ends_with(".partial")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if old {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %name, "removed the plain copy left by an interrupted backup")
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove the plain copy left by an interrupted backup")
                }
            }
        }
    }
}

/// Copies one snapshot of `source` into the new database file `partial`.
pub(super) fn copy_database(source: &Connection, partial: &Path) -> Result<(), BackupError> {
    {
        let mut target = Connection::open(partial).map_err(sql(partial))?;
        let backup = rusqlite::backup::Backup::new(source, &mut target).map_err(sql(partial))?;
        // One step copies one snapshot: with WAL the reader does not block the
        // writer, and no concurrent write can make the copy restart.
        loop {
            use rusqlite::backup::StepResult;
            match backup.step(-1).map_err(sql(partial))? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        drop(backup);
        // The copy is one self-contained file: no WAL beside it.
        target
            .pragma_update(None, "journal_mode", "DELETE")
            .map_err(sql(partial))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(partial, fs::Permissions::from_mode(0o600)).map_err(io(partial))?;
    }
    Ok(())
}

/// A new private directory beside `data_dir` for a restore in progress.
pub(super) fn staging_dir(data_dir: &Path) -> Result<PathBuf, BackupError> {
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| BackupError::Kdf("no randomness for a directory name".into()))?;
    let name = data_dir.file_name().unwrap_or_default().to_string_lossy();
    let staging = parent.join(format!(".{name}.restore-{}", hex::encode(suffix)));
    fs::create_dir(&staging).map_err(io(&staging))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o700)).map_err(io(&staging))?;
    }
    Ok(staging)
}

/// Renames the checked copy onto `data_dir` (missing or an empty directory).
pub(super) fn move_into_place(staging: &Path, data_dir: &Path) -> Result<(), BackupError> {
    if fs::rename(staging, data_dir).is_ok() {
        return Ok(());
    }
    // An empty directory that cannot be replaced (a mount point): move the
    // files in one by one, checking again that nothing appeared meanwhile.
    if !is_empty_dir(data_dir)? {
        return Err(BackupError::RestoreOverLive(data_dir.to_owned()));
    }
    make_private_dir(data_dir)?;
    for entry in fs::read_dir(staging).map_err(io(staging))? {
        let entry = entry.map_err(io(staging))?;
        let to = data_dir.join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(io(&to))?;
    }
    fs::remove_dir(staging).map_err(io(staging))
}
