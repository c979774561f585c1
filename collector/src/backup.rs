//! `tutela-collector backup` and `restore`: a complete, consistent copy of a
//! collector that may be serving at the time.
//!
//! The database is copied with SQLite's online backup API in one step, which
//! reads one snapshot (WAL readers do not block the writer), and the copy is
//! checked with `PRAGMA integrity_check`. Beside it go the files the collector
//! cannot work without: `collector.toml`, the TLS certificate and key (agents
//! pin its fingerprint), the rule-signing key (agents trust only it) and the
//! capture key (without it no stored capture can be read). A manifest records
//! each file's SHA-256 so that a restore refuses a damaged or partial backup.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::secrets::{self, CAPTURE_KEY_FILE, CERT_FILE, CERT_KEY_FILE, SIGNING_KEY_FILE};
use crate::store::{self, DB_FILE};

/// The configuration file, beside the database.
pub const CONFIG_FILE: &str = "collector.toml";
/// The manifest written into every backup.
pub const MANIFEST_FILE: &str = "backup.toml";

/// Files copied beside the database; a missing one fails the backup.
const FILES: [&str; 5] = [
    CONFIG_FILE,
    CERT_FILE,
    CERT_KEY_FILE,
    SIGNING_KEY_FILE,
    CAPTURE_KEY_FILE,
];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error while copying {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error(
        "{0} is not a collector data directory (no {DB_FILE}); pass the collector's --data-dir"
    )]
    NoDatabase(PathBuf),
    #[error("{0} already exists and is not empty; back up to a new directory")]
    DestinationNotEmpty(PathBuf),
    #[error("{0} already holds a collector; restore into a new, empty directory (move the old one aside first)")]
    RestoreOverLive(PathBuf),
    #[error("{path} is missing or has no manifest ({MANIFEST_FILE}); it is not a complete Tutela backup")]
    NoManifest { path: PathBuf },
    #[error("{0} does not match the checksum in the backup manifest; the backup is damaged, use another one")]
    Checksum(PathBuf),
    #[error("the database copy in {path} failed its integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("the backup manifest {path} is not valid: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sql(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// What a backup holds, written as `backup.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub created_ms: i64,
    pub collector_version: String,
    pub alerts: i64,
    pub captures: i64,
    /// File name -> SHA-256 (hex).
    pub files: std::collections::BTreeMap<String, String>,
}

/// The outcome of a backup or restore.
#[derive(Debug, Clone)]
pub struct Report {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let bytes = fs::read(path).map_err(io(path))?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &bytes,
    )))
}

fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Checks a database file with `PRAGMA integrity_check` and counts its alerts
/// and captures.
pub fn check_database(path: &Path) -> Result<(i64, i64), BackupError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql(path))?;
    let detail: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sql(path))?;
    if detail != "ok" {
        return Err(BackupError::Integrity {
            path: path.to_owned(),
            detail,
        });
    }
    let count = |table: &str| -> Result<i64, BackupError> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(sql(path))
    };
    Ok((count("alerts")?, count("captures")?))
}

/// Copies the collector in `data_dir` (serving or not) into `dest`, a new or
/// empty directory.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Report, BackupError> {
    let db_path = data_dir.join(DB_FILE);
    if !db_path.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    if !is_empty_dir(dest)? {
        return Err(BackupError::DestinationNotEmpty(dest.to_owned()));
    }
    make_private_dir(dest)?;

    // Read the secrets first: a backup without them is useless, fail early.
    let mut copies = Vec::new();
    for name in FILES {
        let from = data_dir.join(name);
        let bytes = fs::read(&from).map_err(io(&from))?;
        copies.push((name, bytes));
    }

    let source = store::open(data_dir).map_err(sql(&db_path))?;
    let partial = dest.join(format!("{DB_FILE}.partial"));
    {
        let mut target = Connection::open(&partial).map_err(sql(&partial))?;
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(sql(&partial))?;
        // One step copies one snapshot: with WAL the reader does not block the
        // writer, and no concurrent write can make the copy restart.
        loop {
            use rusqlite::backup::StepResult;
            match backup.step(-1).map_err(sql(&partial))? {
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
            .map_err(sql(&partial))?;
    }
    drop(source);
    let (alerts, captures) = check_database(&partial)?;
    let db_copy = dest.join(DB_FILE);
    fs::rename(&partial, &db_copy).map_err(io(&db_copy))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&db_copy, fs::Permissions::from_mode(0o600)).map_err(io(&db_copy))?;
    }

    let mut files = std::collections::BTreeMap::new();
    files.insert(DB_FILE.to_owned(), sha256_file(&db_copy)?);
    for (name, bytes) in copies {
        secrets::write_private(&dest.join(name), &bytes)?;
        files.insert(
            name.to_owned(),
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
        );
    }
    let manifest = Manifest {
        created_ms: store::now_ms(),
        collector_version: env!("CARGO_PKG_VERSION").to_owned(),
        alerts,
        captures,
        files,
    };
    write_manifest(dest, &manifest)?;
    tracing::info!(dest = %dest.display(), alerts, captures, "backup written");
    Ok(Report {
        dir: dest.to_owned(),
        manifest,
    })
}

fn write_manifest(dest: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dest.join(MANIFEST_FILE);
    let text = toml::to_string_pretty(manifest).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    secrets::write_private(
        &path,
        format!("# Tutela collector backup: restore with `tutela-collector --data-dir NEW restore <this directory>`\n{text}")
            .as_bytes(),
    )?;
    Ok(())
}

/// Reads and checks a backup: every file present with its recorded checksum,
/// and the database passing its integrity check.
pub fn verify(src: &Path) -> Result<Manifest, BackupError> {
    let path = src.join(MANIFEST_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::NoManifest {
                path: src.to_owned(),
            })
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest = toml::from_str(&text).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    for name in std::iter::once(DB_FILE).chain(FILES) {
        let file = src.join(name);
        let recorded = manifest
            .files
            .get(name)
            .ok_or_else(|| BackupError::Manifest {
                path: path.clone(),
                reason: format!("{name} is not listed"),
            })?;
        if !file.is_file() || &sha256_file(&file)? != recorded {
            return Err(BackupError::Checksum(file));
        }
    }
    check_database(&src.join(DB_FILE))?;
    Ok(manifest)
}

/// Restores the backup in `src` into `data_dir`, which must be new or empty.
pub fn restore(src: &Path, data_dir: &Path) -> Result<Report, BackupError> {
    let manifest = verify(src)?;
    if data_dir.join(DB_FILE).exists() || data_dir.join(CONFIG_FILE).exists() {
        return Err(BackupError::RestoreOverLive(data_dir.to_owned()));
    }
    make_private_dir(data_dir)?;
    for name in std::iter::once(DB_FILE).chain(FILES) {
        let from = src.join(name);
        let bytes = fs::read(&from).map_err(io(&from))?;
        secrets::write_private(&data_dir.join(name), &bytes)?;
    }
    // Opening puts the copy back into WAL mode and adds any tables a newer
    // collector expects; then check what landed.
    let db_path = data_dir.join(DB_FILE);
    drop(store::open(data_dir).map_err(sql(&db_path))?);
    check_database(&db_path)?;
    tracing::info!(src = %src.display(), dir = %data_dir.display(), alerts = manifest.alerts, "backup restored");
    Ok(Report {
        dir: data_dir.to_owned(),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_backup_is_refused() {
        let data = tempfile::tempdir().unwrap();
        crate::secrets::create_missing(data.path(), &[]).unwrap();
        fs::write(data.path().join(CONFIG_FILE), "").unwrap();
        store::open(data.path()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("b");
        let report = backup(data.path(), &copy).unwrap();
        assert_eq!(report.manifest.alerts, 0);
        assert!(verify(&copy).is_ok());
        assert!(matches!(
            backup(data.path(), &copy),
            Err(BackupError::DestinationNotEmpty(_))
        ));
        fs::write(copy.join(CAPTURE_KEY_FILE), b"not the key").unwrap();
        assert!(matches!(verify(&copy), Err(BackupError::Checksum(_))));
        let target = dest.path().join("restored");
        assert!(matches!(
            restore(&copy, &target),
            Err(BackupError::Checksum(_))
        ));
        assert!(!target.join(DB_FILE).exists());
    }
}
