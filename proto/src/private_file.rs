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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn write_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("key.pem");
        write(&target, b"first").unwrap();
        write(&target, b"second").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only: {mode:o}");
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target is left");
    }

    #[cfg(unix)]
    #[test]
    fn write_never_follows_a_planted_temp_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("key.pem");
        // An old fixed temporary name, planted as a symlink to a file the writer must not touch.
        std::os::unix::fs::symlink(&victim, target.with_extension("tmp")).unwrap();
        write(&target, b"secret").unwrap();
        write(&target, b"secret2").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&target).unwrap(), b"secret2");
        assert!(!fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        // No temporary file is left behind when the rename fails either, and the error names
        // the path that failed.
        let into_dir = dir.path().join("a-directory");
        fs::create_dir(&into_dir).unwrap();
        fs::write(into_dir.join("x"), b"").unwrap();
        let (at, _) = write(&into_dir, b"secret").unwrap_err();
        assert_eq!(at, into_dir);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".tmp") && n != "key.tmp"),
            "{names:?}"
        );
    }
}
