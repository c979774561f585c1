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
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::secrets::{self, CAPTURE_KEY_FILE, CERT_FILE, CERT_KEY_FILE, SIGNING_KEY_FILE};
use crate::store::{self, DB_FILE};

/// The configuration file, beside the database.
pub const CONFIG_FILE: &str = "collector.toml";
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
    #[error("the backup manifest {0} does not match the passphrase: wrong passphrase file, or the manifest was altered or replaced; use the right passphrase file or another backup")]
    ManifestForged(PathBuf),
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

/// How the files of a backup are encrypted, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `argon2id-aes256gcm-stream1`: Argon2id derives a 32-byte key; each file
    /// is a 7-byte random prefix, then 1 MiB chunks sealed with AES-256-GCM
    /// (nonce = prefix, chunk number, last-chunk flag; the file name as AAD).
    pub scheme: String,
    /// Argon2id salt (hex).
    pub salt: String,
    /// Argon2id memory in KiB.
    pub m_cost: u32,
    /// Argon2id passes.
    pub t_cost: u32,
    /// Argon2id lanes.
    pub p_cost: u32,
}

const SCHEME: &str = "argon2id-aes256gcm-stream1";

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
}

impl Manifest {
    /// The bytes the MAC covers: the manifest without its MAC, as JSON
    /// (fields in declaration order, files sorted by name).
    fn mac_input(&self) -> Vec<u8> {
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

/// The operator's passphrase, read from a file kept off the server.
pub struct Passphrase(Vec<u8>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// Reads a passphrase file: its content with surrounding whitespace
    /// trimmed, at least [`MIN_PASSPHRASE_BYTES`] long.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let bad = |reason: String| BackupError::BadPassphrase {
            path: path.to_owned(),
            reason,
        };
        let bytes = fs::read(path).map_err(|e| bad(e.to_string()))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_PASSPHRASE_BYTES {
            return Err(bad(format!(
                "it holds {} bytes, fewer than {MIN_PASSPHRASE_BYTES}; make one with: head -c 32 /dev/urandom | base64 > FILE",
                trimmed.len()
            )));
        }
        Ok(Self(trimmed.to_vec()))
    }
}

/// The key sealing one backup's files, and the key authenticating its manifest.
struct BackupKey(LessSafeKey, ring::hmac::Key);

/// Bounds on the Argon2 parameters a restore accepts from a manifest: new
/// backups use 64 MiB, 3 passes, 1 lane.
const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
const ARGON2_MIN_M_KIB: u32 = 8 * 1024;
const ARGON2_MAX_T: u32 = 16;
const ARGON2_MAX_P: u32 = 8;
/// The context the manifest key is derived for.
const MANIFEST_MAC_CONTEXT: &[u8] = b"tutela backup manifest hmac-sha256 v1";

const CHUNK: usize = 1 << 20;
const PREFIX: usize = 7;

impl BackupKey {
    fn derive(passphrase: &Passphrase, enc: &Encryption) -> Result<Self, BackupError> {
        if enc.scheme != SCHEME {
            return Err(BackupError::Kdf(format!(
                "unknown encryption scheme {:?}; restore with the collector version that made the backup",
                enc.scheme
            )));
        }
        let salt = hex::decode(&enc.salt).map_err(|e| BackupError::Kdf(e.to_string()))?;
        if !(ARGON2_MIN_M_KIB..=ARGON2_MAX_M_KIB).contains(&enc.m_cost)
            || !(1..=ARGON2_MAX_T).contains(&enc.t_cost)
            || !(1..=ARGON2_MAX_P).contains(&enc.p_cost)
            || !(16..=64).contains(&salt.len())
        {
            return Err(BackupError::Kdf(format!(
                "the manifest asks for Argon2 memory {} KiB, {} passes, {} lanes and a {}-byte salt, outside the accepted bounds ({ARGON2_MIN_M_KIB}-{ARGON2_MAX_M_KIB} KiB, 1-{ARGON2_MAX_T} passes, 1-{ARGON2_MAX_P} lanes, 16-64 bytes); the manifest is damaged or was not made by Tutela",
                enc.m_cost,
                enc.t_cost,
                enc.p_cost,
                salt.len()
            )));
        }
        let params = argon2::Params::new(enc.m_cost, enc.t_cost, enc.p_cost, Some(32))
            .map_err(|e| BackupError::Kdf(e.to_string()))?;
        let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        kdf.hash_password_into(&passphrase.0, &salt, &mut key)
            .map_err(|e| BackupError::Kdf(e.to_string()))?;
        let unbound = UnboundKey::new(&aead::AES_256_GCM, &key)
            .map_err(|_| BackupError::Kdf("AES-256-GCM key rejected".into()))?;
        // A separate key for the manifest: HMAC-SHA256 of a fixed context
        // under the derived key.
        let mac_key = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            MANIFEST_MAC_CONTEXT,
        );
        key.fill(0);
        Ok(Self(
            LessSafeKey::new(unbound),
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mac_key.as_ref()),
        ))
    }

    /// The MAC of `manifest` (hex).
    fn sign_manifest(&self, manifest: &Manifest) -> String {
        hex::encode(ring::hmac::sign(&self.1, &manifest.mac_input()))
    }

    /// Checks the MAC of `manifest` read from `path`.
    fn verify_manifest(&self, manifest: &Manifest, path: &Path) -> Result<(), BackupError> {
        let forged = || BackupError::ManifestForged(path.to_owned());
        let mac = hex::decode(manifest.mac.as_deref().ok_or_else(forged)?).map_err(|_| forged())?;
        ring::hmac::verify(&self.1, &manifest.mac_input(), &mac).map_err(|_| forged())
    }

    fn nonce(prefix: &[u8; PREFIX], chunk: u32, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[..PREFIX].copy_from_slice(prefix);
        n[PREFIX..11].copy_from_slice(&chunk.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `from` into the new file `to`, bound to the name `name`.
    #[cfg(test)]
    fn seal_file(&self, name: &str, from: &Path, to: &Path) -> Result<(), BackupError> {
        let mut input = fs::File::open(from).map_err(io(from))?;
        self.seal(name, &mut input, from, to)
    }

    /// Encrypts what `input` (read from `from`) holds into the new file `to`,
    /// bound to the name `name`. A failed write removes `to`.
    fn seal(
        &self,
        name: &str,
        input: &mut impl Read,
        from: &Path,
        to: &Path,
    ) -> Result<(), BackupError> {
        let mut out = create_private(to)?;
        let sealed = self.seal_into(name, input, from, &mut out, to);
        if sealed.is_err() {
            let _ = fs::remove_file(to);
        }
        sealed
    }

    fn seal_into(
        &self,
        name: &str,
        input: &mut impl Read,
        from: &Path,
        out: &mut fs::File,
        to: &Path,
    ) -> Result<(), BackupError> {
        let mut prefix = [0u8; PREFIX];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| BackupError::Kdf("no randomness for a nonce".into()))?;
        out.write_all(&prefix).map_err(io(to))?;
        let mut buf = vec![0u8; CHUNK];
        for chunk in 0u32.. {
            let n = read_full(input, &mut buf).map_err(io(from))?;
            let last = n < CHUNK;
            let mut block = buf[..n].to_vec();
            self.0
                .seal_in_place_append_tag(
                    Self::nonce(&prefix, chunk, last),
                    Aad::from(name.as_bytes()),
                    &mut block,
                )
                .map_err(|_| BackupError::Kdf("encryption failed".into()))?;
            out.write_all(&block).map_err(io(to))?;
            if last {
                break;
            }
        }
        out.sync_all().map_err(io(to))
    }

    /// Decrypts `from` (made by [`seal_file`](Self::seal_file) for `name`) into the new file `to`.
    fn open_file(&self, name: &str, from: &Path, to: &Path) -> Result<(), BackupError> {
        let mut input = fs::File::open(from).map_err(io(from))?;
        let mut prefix = [0u8; PREFIX];
        input
            .read_exact(&mut prefix)
            .map_err(|_| BackupError::Decrypt(from.to_owned()))?;
        let mut out = create_private(to)?;
        let tag = aead::AES_256_GCM.tag_len();
        let mut buf = vec![0u8; CHUNK + tag];
        for chunk in 0u32.. {
            let n = read_full(&mut input, &mut buf).map_err(io(from))?;
            let last = n < CHUNK + tag;
            let plain = self
                .0
                .open_in_place(
                    Self::nonce(&prefix, chunk, last),
                    Aad::from(name.as_bytes()),
                    &mut buf[..n],
                )
                .map_err(|_| BackupError::Decrypt(from.to_owned()))?;
            out.write_all(plain).map_err(io(to))?;
            if last {
                break;
            }
        }
        out.sync_all().map_err(io(to))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A new owner-only file (never an existing one, never through a symlink).
fn create_private(path: &Path) -> Result<fs::File, BackupError> {
    tutela_proto::private_file::create_new(path).map_err(io(path))
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
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

/// Argon2id parameters for new backups: 64 MiB, 3 passes, 1 lane.
fn new_encryption() -> Result<Encryption, BackupError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| BackupError::Kdf("no randomness for a salt".into()))?;
    Ok(Encryption {
        scheme: SCHEME.to_owned(),
        salt: hex::encode(salt),
        m_cost: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    })
}

/// The name a file has inside a backup.
fn stored_name(name: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{name}{SEALED_SUFFIX}")
    } else {
        name.to_owned()
    }
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
    let source = store::open(data_dir).map_err(sql(&db_path))?;
    // An encrypted backup's database is copied in the clear beside the live
    // one (same owner, same protection), sealed into the backup, then removed.
    let partial = if key.is_some() {
        let mut suffix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut suffix)
            .map_err(|_| BackupError::Kdf("no randomness for a file name".into()))?;
        data_dir.join(format!(".backup-{}.{DB_FILE}.partial", hex::encode(suffix)))
    } else {
        dest.join(format!("{DB_FILE}.partial"))
    };
    let copied = copy_database(&source, &partial);
    drop(source);
    if let Err(e) = copied {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    let sealed = seal_database(&partial, dest, key.as_ref());
    if sealed.is_err() || key.is_some() {
        let _ = fs::remove_file(&partial);
    }
    let (alerts, captures, db_copy) = sealed?;

    let mut files = std::collections::BTreeMap::new();
    files.insert(stored_name(DB_FILE, key.is_some()), sha256_file(&db_copy)?);
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
    };
    manifest.mac = key.as_ref().map(|key| key.sign_manifest(&manifest));
    write_manifest(dest, &manifest)?;
    tracing::info!(dest = %dest.display(), alerts, captures, encrypted = manifest.encryption.is_some(), "backup written");
    Ok(Report {
        dir: dest.to_owned(),
        manifest,
    })
}

/// Removes plain database copies left beside the live one by a backup that
/// was killed before it could clean up (older than an hour, so a backup
/// running at the same time keeps its own).
fn remove_stale_partials(data_dir: &Path) {
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
fn copy_database(source: &Connection, partial: &Path) -> Result<(), BackupError> {
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

/// Checks the copy in `partial` and puts it into the backup in `dest`
/// (sealed with `key`, or renamed as it is); returns its alert and capture
/// counts and where it landed.
fn seal_database(
    partial: &Path,
    dest: &Path,
    key: Option<&BackupKey>,
) -> Result<(i64, i64, PathBuf), BackupError> {
    let (alerts, captures) = check_database(partial)?;
    let db_copy = dest.join(stored_name(DB_FILE, key.is_some()));
    match key {
        Some(key) => {
            let mut input = fs::File::open(partial).map_err(io(partial))?;
            key.seal(DB_FILE, &mut input, partial, &db_copy)?;
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
    for name in std::iter::once(DB_FILE).chain(FILES) {
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
        check_database(&src.join(DB_FILE))?;
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
    let staging = staging_dir(data_dir)?;
    let result = restore_into(src, &staging, key.as_ref());
    let result = result.and_then(|()| move_into_place(&staging, data_dir));
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

/// A new private directory beside `data_dir` for a restore in progress.
fn staging_dir(data_dir: &Path) -> Result<PathBuf, BackupError> {
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

fn restore_into(src: &Path, staging: &Path, key: Option<&BackupKey>) -> Result<(), BackupError> {
    for name in std::iter::once(DB_FILE).chain(FILES) {
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
    // Opening puts the copy back into WAL mode and adds any tables a newer
    // collector expects; then check what landed.
    let db_path = staging.join(DB_FILE);
    drop(store::open(staging).map_err(sql(&db_path))?);
    check_database(&db_path)?;
    Ok(())
}

/// Renames the checked copy onto `data_dir` (missing or an empty directory).
fn move_into_place(staging: &Path, data_dir: &Path) -> Result<(), BackupError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_copies_left_by_an_interrupted_backup_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".backup-00aa.tutela.db.partial");
        let running = dir.path().join(".backup-00bb.tutela.db.partial");
        let live = dir.path().join("tutela.db");
        for f in [&stale, &running, &live] {
            fs::write(f, b"x").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for f in [&stale, &live] {
            fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
        remove_stale_partials(dir.path());
        assert!(!stale.exists(), "an old plain copy is removed");
        assert!(running.exists(), "a backup running now keeps its copy");
        assert!(live.exists(), "nothing else is touched");
    }

    fn collector() -> tempfile::TempDir {
        let data = tempfile::tempdir().unwrap();
        crate::secrets::create_missing(data.path(), &[]).unwrap();
        fs::write(data.path().join(CONFIG_FILE), "").unwrap();
        store::open(data.path()).unwrap();
        data
    }

    fn passphrase(dir: &Path, text: &str) -> Passphrase {
        let path = dir.join(format!("pass-{}", text.len()));
        fs::write(&path, format!("{text}\n")).unwrap();
        Passphrase::read(&path).unwrap()
    }

    #[test]
    fn a_damaged_backup_is_refused() {
        let data = collector();
        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("b");
        let report = backup(data.path(), &copy, None).unwrap();
        assert_eq!(report.manifest.alerts, 0);
        assert!(verify(&copy).is_ok());
        assert!(matches!(
            backup(data.path(), &copy, None),
            Err(BackupError::DestinationNotEmpty(_))
        ));
        fs::write(copy.join(CAPTURE_KEY_FILE), b"not the key").unwrap();
        assert!(matches!(verify(&copy), Err(BackupError::Checksum(_))));
        let target = dest.path().join("restored");
        assert!(matches!(
            restore(&copy, &target, None),
            Err(BackupError::Checksum(_))
        ));
        assert!(!target.join(DB_FILE).exists());
    }

    #[test]
    fn an_encrypted_backup_holds_nothing_in_the_clear_and_needs_its_passphrase() {
        let data = collector();
        let scratch = tempfile::tempdir().unwrap();
        let right = passphrase(scratch.path(), "correct horse battery staple");
        let wrong = passphrase(scratch.path(), "not the passphrase at all");
        let copy = scratch.path().join("b");
        backup(data.path(), &copy, Some(&right)).unwrap();
        let key = fs::read(data.path().join(CAPTURE_KEY_FILE)).unwrap();
        for entry in fs::read_dir(&copy).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MANIFEST_FILE {
                continue;
            }
            assert!(name.ends_with(SEALED_SUFFIX), "{name} stored in the clear");
            let bytes = fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_slice()),
                "{name} holds the capture key"
            );
            assert!(!bytes.starts_with(b"SQLite format 3"), "{name}");
        }
        verify(&copy).unwrap();
        let target = scratch.path().join("restored");
        assert!(matches!(
            restore(&copy, &target, None),
            Err(BackupError::PassphraseNeeded(_))
        ));
        assert!(matches!(
            restore(&copy, &target, Some(&wrong)),
            Err(BackupError::ManifestForged(_))
        ));
        assert!(!target.exists());
        // An unencrypted backup put in its place is refused when a passphrase is given.
        let plain = scratch.path().join("plain");
        backup(data.path(), &plain, None).unwrap();
        assert!(matches!(
            restore(&plain, &target, Some(&right)),
            Err(BackupError::NotEncrypted(_))
        ));
        // Argon2 parameters outside the bounds are refused before deriving.
        let mut manifest = read_manifest(&copy).unwrap();
        let enc = manifest.encryption.as_mut().unwrap();
        enc.m_cost = u32::MAX;
        assert!(matches!(
            BackupKey::derive(&right, enc),
            Err(BackupError::Kdf(e)) if e.contains("outside the accepted bounds")
        ));
        let leftovers: Vec<_> = fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".restore-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        restore(&copy, &target, Some(&right)).unwrap();
        for name in FILES {
            assert_eq!(
                fs::read(data.path().join(name)).unwrap(),
                fs::read(target.join(name)).unwrap(),
                "{name}"
            );
        }
        check_database(&target.join(DB_FILE)).unwrap();
        // A short passphrase is refused outright.
        let short = scratch.path().join("short");
        fs::write(&short, "abc\n").unwrap();
        assert!(matches!(
            Passphrase::read(&short),
            Err(BackupError::BadPassphrase { .. })
        ));
    }

    #[test]
    fn a_large_database_round_trips_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let pass = passphrase(dir.path(), "a passphrase long enough");
        let enc = new_encryption().unwrap();
        let key = BackupKey::derive(&pass, &enc).unwrap();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17] {
            let plain = dir.path().join(format!("p{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            fs::write(&plain, &data).unwrap();
            let sealed = dir.path().join(format!("s{len}"));
            key.seal_file("x", &plain, &sealed).unwrap();
            let back = dir.path().join(format!("o{len}"));
            key.open_file("x", &sealed, &back).unwrap();
            assert_eq!(fs::read(&back).unwrap(), data, "{len}");
            // Bound to its name, and cut short it fails.
            assert!(key
                .open_file("y", &sealed, &dir.path().join(format!("y{len}")))
                .is_err());
            let bytes = fs::read(&sealed).unwrap();
            if len >= CHUNK {
                fs::write(&sealed, &bytes[..PREFIX + CHUNK + 16]).unwrap();
                assert!(key
                    .open_file("x", &sealed, &dir.path().join(format!("t{len}")))
                    .is_err());
            }
        }
    }

    #[test]
    fn restore_refuses_a_target_with_a_leftover_wal() {
        let data = collector();
        let scratch = tempfile::tempdir().unwrap();
        let copy = scratch.path().join("b");
        backup(data.path(), &copy, None).unwrap();
        let target = scratch.path().join("restored");
        fs::create_dir(&target).unwrap();
        fs::write(target.join(format!("{DB_FILE}-wal")), b"stale wal").unwrap();
        assert!(matches!(
            restore(&copy, &target, None),
            Err(BackupError::RestoreOverLive(_))
        ));
        assert_eq!(
            fs::read(target.join(format!("{DB_FILE}-wal"))).unwrap(),
            b"stale wal"
        );
        assert!(!target.join(DB_FILE).exists());
        // An empty existing directory is fine, and ends up owner-only.
        fs::remove_file(target.join(format!("{DB_FILE}-wal"))).unwrap();
        restore(&copy, &target, None).unwrap();
        check_database(&target.join(DB_FILE)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
