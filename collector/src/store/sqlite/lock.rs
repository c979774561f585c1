//! The data directory's lock: `serve` holds it while it uses the SQLite
//! store, and `migrate` takes it before copying that store, so a store is
//! never copied while a collector still writes to it.

use std::fs::File;
use std::path::Path;

/// The lock file, beside the database.
pub const LOCK_FILE: &str = "collector.lock";

/// A held lock; released when dropped (or when the process ends, however).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another tutela-collector is using the store in {0} (serve or migrate): stop it first"
    )]
    InUse(String),
    #[error(
        "cannot open the lock file in {dir}: {source}; check the data directory's permissions"
    )]
    Io { dir: String, source: std::io::Error },
}

impl DirLock {
    /// Takes the lock at once, or says the directory is in use.
    pub fn take(dir: &Path) -> Result<Self, LockError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|source| LockError::Io {
                dir: dir.display().to_string(),
                source,
            })?;
        if !try_exclusive(&file) {
            return Err(LockError::InUse(dir.display().to_string()));
        }
        Ok(Self { _file: file })
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn try_exclusive(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function's caller owns; it does
    // not touch memory.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Elsewhere the collector runs only for development: no lock.
#[cfg(not(target_os = "linux"))]
fn try_exclusive(_file: &File) -> bool {
    true
}
