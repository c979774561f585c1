//! Writing a secret (key, certificate, enrolment record) owner-only and
//! atomically, shared by the agent and the collector: the bytes go to a new
//! temporary file beside the target (created exclusively, never through a
//! symlink, mode 0600 on Unix), are synced, then renamed over the target.
//! A file or symlink planted at a predictable name cannot redirect the write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` as described above. On failure returns the path
/// that failed (the temporary file or the target) with the error; the
/// temporary file is removed.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = temporary_name(path);
    let mut file = create_new(&tmp).map_err(|e| (tmp.clone(), e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| (tmp.clone(), e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| (path.to_owned(), e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates a new owner-only file for writing: never an existing file, never
/// through a symlink (mode 0600 on Unix).
pub fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// `<name>.<unique>.tmp` beside `path`: unique per process, time and call,
/// so concurrent writers never share one (and `create_new` refuses a clash).
fn temporary_name(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(
        ".{:x}-{nanos:x}-{:x}.tmp",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}
