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
//!
//! A backup is encrypted unless asked otherwise: every file (the database
//! holds typed context; the keys open the captures) is sealed with
//! AES-256-GCM under a key derived with Argon2id from a passphrase file the
//! operator keeps elsewhere. The salt and Argon2 parameters are in the
//! manifest; without the passphrase the backup can be checked for damage but
//! not read. The manifest itself is authenticated with HMAC-SHA256 under a
//! key derived from the same passphrase, so that nobody without it can swap
//! in files and recompute their checksums; a restore given a passphrase
//! refuses a manifest that is unencrypted, unauthenticated or altered, and
//! Argon2 parameters outside sane bounds (so that a planted manifest cannot
//! exhaust the machine's memory).

use std::fs;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

mod files;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod schedule;
mod seal;
#[cfg(test)]
mod tests;

use files::{
    copy_database, io, is_empty_dir, make_private_dir, move_into_place, remove_stale_partials,
    sha256_file, staging_dir, stored_name,
};
use seal::{new_encryption, BackupKey};
pub use seal::{Encryption, Passphrase};

use crate::secrets::{self, CAPTURE_KEY_FILE, CERT_FILE, CERT_KEY_FILE, SIGNING_KEY_FILE};
use crate::store::{self, DB_FILE};

/// The configuration file, beside the database.
pub const CONFIG_FILE: &str = "collector.toml";
/// A PostgreSQL store's dump in a backup (an SQLite file of its tables).
pub const PG_DUMP_FILE: &str = "postgres.db";
/// The manifest written into every backup.
pub const MANIFEST_FILE: &str = "backup.toml";
/// What an encrypted file's name ends with in a backup.
pub const SEALED_SUFFIX: &str = ".enc";
/// The shortest passphrase accepted (bytes, after trimming whitespace).
pub const MIN_PASSPHRASE_BYTES: usize = 16;

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
    #[error("{0} already holds a collector or other files; restore into a new, empty directory (move the old one aside first)")]
    RestoreOverLive(PathBuf),
    #[error("{path} is missing or has no manifest ({MANIFEST_FILE}); it is not a complete Tutela backup")]
    NoManifest { path: PathBuf },
    #[error("{0} does not match the checksum in the backup manifest; the backup is damaged, use another one")]
    Checksum(PathBuf),
    #[error("the database copy in {path} failed its integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("the backup manifest {path} is not valid: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("no passphrase file for an encrypted backup: set [backup] passphrase_file in collector.toml or pass --passphrase-file (or, knowingly, --unencrypted)")]
    NoPassphrase,
    #[error("the backup in {0} is encrypted; pass --passphrase-file with the passphrase file used to make it")]
    PassphraseNeeded(PathBuf),
    #[error("the passphrase file {path} is not usable: {reason}")]
    BadPassphrase { path: PathBuf, reason: String },
    #[error("{0} cannot be decrypted: wrong passphrase file, or the file was tampered with")]
    Decrypt(PathBuf),
    #[error("cannot derive the backup key: {0}")]
    Kdf(String),
    #[error("the backup in {0} is not encrypted, but a passphrase file was given: it is not the encrypted backup you made (it may have been replaced); refusing to restore it. Restore it without --passphrase-file only if you made it yourself with --unencrypted")]
    NotEncrypted(PathBuf),
    #[error("the backup in {0} is of a PostgreSQL store: pass --to postgres://user:password@host:port/database naming a new, empty database (createdb -O <user> <database>)")]
    NeedsPostgres(PathBuf),
    #[error("the backup in {0} is of a SQLite store: restore it without --to, then `tutela-collector migrate --to postgres://...` copies it into PostgreSQL")]
    NotPostgres(PathBuf),
    #[error("{0}")]
    Postgres(String),
    #[error("the backup manifest {0} does not match the passphrase: wrong passphrase file, or the manifest was altered or replaced; use the right passphrase file or another backup")]
    ManifestForged(PathBuf),
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
    /// Stored file name -> SHA-256 (hex) of the stored bytes.
    pub files: std::collections::BTreeMap<String, String>,
    /// Absent for a backup made with `--unencrypted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// HMAC-SHA256 (hex) of everything above, keyed from the passphrase;
    /// present on every encrypted backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The store backed up: empty for SQLite (the file as it is),
    /// `postgres` for a PostgreSQL store dumped into `postgres.db`. Last, so
    /// that a SQLite backup's manifest and MAC are as before.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
}

impl Manifest {
    /// Which store the backup holds; an unknown one is refused.
    pub(crate) fn kind(&self, path: &Path) -> Result<StoreKind, BackupError> {
        match self.store.as_str() {
            "" => Ok(StoreKind::Sqlite),
            "postgres" => Ok(StoreKind::Postgres),
            other => Err(BackupError::Manifest {
                path: path.join(MANIFEST_FILE),
                reason: format!("it holds a store of kind {other:?}, which this collector does not know; restore it with the collector version that made it"),
            }),
        }
    }
}

impl Manifest {
    /// The bytes the MAC covers: the manifest without its MAC, as JSON
    /// (fields in declaration order, files sorted by name).
    pub(super) fn mac_input(&self) -> Vec<u8> {
        let mut bare = self.clone();
        bare.mac = None;
        serde_json::to_vec(&bare).expect("a manifest serialises")
    }
}

/// The outcome of a backup or restore.
#[derive(Debug, Clone)]
pub struct Report {
    pub dir: PathBuf,
    pub manifest: Manifest,
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
/// empty directory, encrypted with `passphrase` (`None`: in the clear).
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Report, BackupError> {
    let db_path = data_dir.join(DB_FILE);
    if !db_path.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    write(data_dir, dest, passphrase, StoreKind::Sqlite, |partial| {
        let source = store::open(data_dir).map_err(sql(&db_path))?;
        copy_database(&source, partial)
    })
}

/// Which store a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// The SQLite file, as it is.
    Sqlite,
    /// A PostgreSQL store, dumped into one SQLite file (`store::migrate::dump`).
    Postgres,
}

impl StoreKind {
    /// The name of the database file in the backup.
    pub(crate) fn file(self) -> &'static str {
        match self {
            Self::Sqlite => DB_FILE,
            Self::Postgres => PG_DUMP_FILE,
        }
    }

    /// As the manifest records it ("" for SQLite, as before it was recorded).
    fn recorded(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => "postgres",
        }
    }
}

/// Writes a backup of `data_dir`'s files and the database `copy` writes
/// into the new file it is given.
pub(crate) fn write(
    data_dir: &Path,
    dest: &Path,
    passphrase: Option<&Passphrase>,
    kind: StoreKind,
    copy: impl FnOnce(&Path) -> Result<(), BackupError>,
) -> Result<Report, BackupError> {
    if !is_empty_dir(dest)? {
        return Err(BackupError::DestinationNotEmpty(dest.to_owned()));
    }
    let (encryption, key) = match passphrase {
        Some(p) => {
            let enc = new_encryption()?;
            let key = BackupKey::derive(p, &enc)?;
            (Some(enc), Some(key))
        }
        None => (None, None),
    };
    make_private_dir(dest)?;

    // Read the secrets first: a backup without them is useless, fail early.
    let mut copies = Vec::new();
    for name in FILES {
        let from = data_dir.join(name);
        let bytes = fs::read(&from).map_err(io(&from))?;
        copies.push((name, bytes));
    }

    remove_stale_partials(data_dir);
    let db_file = kind.file();
    // An encrypted backup's database is copied in the clear beside the live
    // one (same owner, same protection), sealed into the backup, then removed.
    let partial = if key.is_some() {
        let mut suffix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut suffix)
            .map_err(|_| BackupError::Kdf("no randomness for a file name".into()))?;
        data_dir.join(format!(".backup-{}.{db_file}.partial", hex::encode(suffix)))
    } else {
        dest.join(format!("{db_file}.partial"))
    };
    if let Err(e) = copy(&partial) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    let sealed = seal_database(&partial, dest, key.as_ref(), db_file);
    if sealed.is_err() || key.is_some() {
        let _ = fs::remove_file(&partial);
    }
    let (alerts, captures, db_copy) = sealed?;

    let mut files = std::collections::BTreeMap::new();
    files.insert(stored_name(db_file, key.is_some()), sha256_file(&db_copy)?);
    for (name, bytes) in copies {
        let stored = dest.join(stored_name(name, key.is_some()));
        match &key {
            Some(key) => key.seal(name, &mut bytes.as_slice(), &data_dir.join(name), &stored)?,
            None => secrets::write_private(&stored, &bytes)?,
        }
        files.insert(stored_name(name, key.is_some()), sha256_file(&stored)?);
    }
    let mut manifest = Manifest {
        created_ms: store::now_ms(),
        collector_version: env!("CARGO_PKG_VERSION").to_owned(),
        alerts,
        captures,
        files,
        encryption,
        mac: None,
        store: kind.recorded().to_owned(),
    };
    manifest.mac = key.as_ref().map(|key| key.sign_manifest(&manifest));
    write_manifest(dest, &manifest)?;
    tracing::info!(dest = %dest.display(), alerts, captures, encrypted = manifest.encryption.is_some(), store = ?kind, "backup written");
    Ok(Report {
        dir: dest.to_owned(),
        manifest,
    })
}

/// Checks the copy in `partial` and puts it into the backup in `dest`
/// (sealed with `key`, or renamed as it is); returns its alert and capture
/// counts and where it landed.
fn seal_database(
    partial: &Path,
    dest: &Path,
    key: Option<&BackupKey>,
    db_file: &str,
) -> Result<(i64, i64, PathBuf), BackupError> {
    let (alerts, captures) = check_database(partial)?;
    let db_copy = dest.join(stored_name(db_file, key.is_some()));
    match key {
        Some(key) => {
            let mut input = fs::File::open(partial).map_err(io(partial))?;
            key.seal(db_file, &mut input, partial, &db_copy)?;
        }
        None => fs::rename(partial, &db_copy).map_err(io(&db_copy))?,
    }
    Ok((alerts, captures, db_copy))
}

fn write_manifest(dest: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dest.join(MANIFEST_FILE);
    let text = toml::to_string_pretty(manifest).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let how = if manifest.encryption.is_some() {
        " --passphrase-file FILE"
    } else {
        ""
    };
    secrets::write_private(
        &path,
        format!("# Tutela collector backup: restore with `tutela-collector --data-dir NEW restore{how} <this directory>`\n{text}")
            .as_bytes(),
    )?;
    Ok(())
}

fn read_manifest(src: &Path) -> Result<Manifest, BackupError> {
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
    toml::from_str(&text).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// Checks every stored file of a backup against its recorded checksum (no
/// passphrase needed), and for an unencrypted backup the database's integrity.
pub fn verify(src: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(src)?;
    let encrypted = manifest.encryption.is_some();
    let db_file = manifest.kind(src)?.file();
    for name in std::iter::once(db_file).chain(FILES) {
        let stored = stored_name(name, encrypted);
        let file = src.join(&stored);
        let recorded = manifest
            .files
            .get(&stored)
            .ok_or_else(|| BackupError::Manifest {
                path: src.join(MANIFEST_FILE),
                reason: format!("{stored} is not listed"),
            })?;
        if !file.is_file() || &sha256_file(&file)? != recorded {
            return Err(BackupError::Checksum(file));
        }
    }
    if !encrypted {
        check_database(&src.join(db_file))?;
    }
    Ok(manifest)
}

/// Restores the backup in `src` into `data_dir`, which must be missing or
/// empty. The files are written (decrypted with `passphrase` for an encrypted
/// backup) into a new directory beside `data_dir` and checked there; only a
/// complete, working copy is renamed into place.
pub fn restore(
    src: &Path,
    data_dir: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Report, BackupError> {
    restore_with(src, data_dir, passphrase, |kind, staging| match kind {
        StoreKind::Sqlite => {
            // Opening puts the copy back into WAL mode and adds any tables
            // a newer collector expects; then check what landed.
            let db_path = staging.join(DB_FILE);
            drop(store::open(staging).map_err(sql(&db_path))?);
            check_database(&db_path)?;
            Ok(())
        }
        StoreKind::Postgres => Err(BackupError::NeedsPostgres(src.to_owned())),
    })
}

/// Restores the backup in `src` into `data_dir` as [`restore`] does;
/// `database` puts the database file (decrypted into the staging directory
/// it is given) where it belongs and checks it.
pub(crate) fn restore_with(
    src: &Path,
    data_dir: &Path,
    passphrase: Option<&Passphrase>,
    database: impl FnOnce(StoreKind, &Path) -> Result<(), BackupError>,
) -> Result<Report, BackupError> {
    // With a passphrase, the manifest is authenticated before anything it
    // says (checksums, counts) is trusted.
    let manifest = read_manifest(src)?;
    let key = match (&manifest.encryption, passphrase) {
        (Some(enc), Some(p)) => {
            let key = BackupKey::derive(p, enc)?;
            key.verify_manifest(&manifest, &src.join(MANIFEST_FILE))?;
            Some(key)
        }
        (Some(_), None) => return Err(BackupError::PassphraseNeeded(src.to_owned())),
        (None, Some(_)) => return Err(BackupError::NotEncrypted(src.to_owned())),
        (None, None) => None,
    };
    let manifest = verify(src)?;
    if (data_dir.exists() && !data_dir.is_dir()) || !is_empty_dir(data_dir)? {
        return Err(BackupError::RestoreOverLive(data_dir.to_owned()));
    }
    let kind = manifest.kind(src)?;
    let staging = staging_dir(data_dir)?;
    let result = restore_into(src, &staging, key.as_ref(), kind.file())
        .and_then(|()| database(kind, &staging))
        .and_then(|()| move_into_place(&staging, data_dir));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result?;
    tracing::info!(src = %src.display(), dir = %data_dir.display(), alerts = manifest.alerts, "backup restored");
    Ok(Report {
        dir: data_dir.to_owned(),
        manifest,
    })
}

fn restore_into(
    src: &Path,
    staging: &Path,
    key: Option<&BackupKey>,
    db_file: &str,
) -> Result<(), BackupError> {
    for name in std::iter::once(db_file).chain(FILES) {
        let from = src.join(stored_name(name, key.is_some()));
        let to = staging.join(name);
        match key {
            Some(key) => key.open_file(name, &from, &to)?,
            None => {
                let bytes = fs::read(&from).map_err(io(&from))?;
                secrets::write_private(&to, &bytes)?;
            }
        }
    }
    Ok(())
}
