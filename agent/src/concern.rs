//! 'Report a concern', one click from the pupil's desktop.
//!
//! The address of the school's concern page arrives with the signed
//! monitoring notice the agent holds. The agent publishes it, and only it, in
//! a small world-readable file (the agent's own data directory is closed to
//! pupils); `tutela-agent concern`, which the desktop entry "Report a concern"
//! (Linux) and the Start menu shortcut (Windows) run as the pupil, reads that
//! file and opens the page in the pupil's browser. The file says nothing about
//! the pupil or the station, and nothing the pupil does with it is recorded
//! here.

use std::path::{Path, PathBuf};

use tutela_proto::limits::MAX_NOTICE_URL_BYTES;

/// Where the agent publishes the address unless `[notice] concern_link_file`
/// says otherwise (that setting is for tests and unusual layouts: the desktop
/// entry reads this default).
pub fn default_link_file() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\Tutela\concern-url.txt")
    } else {
        PathBuf::from("/var/lib/tutela-agent-public/concern-url")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConcernError {
    #[error(
        "this computer has no 'Report a concern' address yet ({0} is missing): it comes with \
         the school's monitoring notice once the computer has reached the school's server; \
         tell a member of staff you trust, or try again later"
    )]
    NoLink(PathBuf),
    #[error("{0} holds no valid web address; ask the school's technician to check the agent")]
    Invalid(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not open a browser ({reason}); open this address yourself: {url}")]
    Open { url: String, reason: String },
}

/// An address the desktop may open: `http://` or `https://`, within the
/// notice's limit, with no spaces, quotes or control characters (it is passed
/// to the desktop's opener, never to a shell).
pub fn is_valid(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    // A host comes first.
    !rest.is_empty()
        && !rest.starts_with('/')
        && url.len() <= MAX_NOTICE_URL_BYTES
        && !url.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`')
        })
}

/// Publishes `url` (or removes the file when there is none), replacing the
/// file whole so a reader never sees half an address.
pub fn publish(file: &Path, url: &str) {
    let result = if url.is_empty() || !is_valid(url) {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        write_public(file, url)
    };
    match result {
        Ok(()) => tracing::debug!(file = %file.display(), "'Report a concern' address published"),
        Err(e) => tracing::warn!(
            file = %file.display(),
            error = %e,
            "cannot publish the 'Report a concern' address; the desktop entry will say it has none"
        ),
    }
}

fn write_public(file: &Path, url: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let partial = file.with_extension("partial");
    std::fs::write(&partial, format!("{url}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::rename(&partial, file)
}

/// The published address, checked again: the file is outside the agent's
/// closed directory, so it is treated as untrusted input.
pub fn read(file: &Path) -> Result<String, ConcernError> {
    let text = match std::fs::read(file) {
        Ok(bytes) if bytes.len() <= MAX_NOTICE_URL_BYTES + 2 => bytes,
        Ok(_) => return Err(ConcernError::Invalid(file.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConcernError::NoLink(file.to_owned()))
        }
        Err(source) => {
            return Err(ConcernError::Read {
                path: file.to_owned(),
                source,
            })
        }
    };
    let url = String::from_utf8(text)
        .map_err(|_| ConcernError::Invalid(file.to_owned()))?
        .trim()
        .to_owned();
    if is_valid(&url) {
        Ok(url)
    } else {
        Err(ConcernError::Invalid(file.to_owned()))
    }
}

/// Opens `url` in the pupil's browser: `xdg-open` on Linux (which honours the
/// desktop's choice, or `BROWSER`), the shell's "open" on Windows.
pub fn open(url: &str) -> Result<(), ConcernError> {
    let failed = |reason: String| ConcernError::Open {
        url: url.to_owned(),
        reason,
    };
    #[cfg(windows)]
    {
        open_windows(url).map_err(failed)
    }
    #[cfg(not(windows))]
    {
        let status = std::process::Command::new("xdg-open")
            .arg(url)
            .status()
            .map_err(|e| failed(format!("xdg-open: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(format!("xdg-open {status}")))
        }
    }
}

#[cfg(windows)]
#[allow(unsafe_code)] // One Win32 call; its block states why it is sound.
fn open_windows(url: &str) -> Result<(), String> {
    use windows_sys::Win32::UI::Shell::ShellExecuteW;
    use windows_sys::Win32::UI::WindowsAndMessaging::SW_SHOWNORMAL;
    let wide = |s: &str| -> Vec<u16> { s.encode_utf16().chain(std::iter::once(0)).collect() };
    let (verb, target) = (wide("open"), wide(url));
    // SAFETY: both strings are NUL-terminated UTF-16 buffers that live across
    // the call; null owner window, parameters and directory are allowed.
    let code = unsafe {
        ShellExecuteW(
            std::ptr::null_mut(),
            verb.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            SW_SHOWNORMAL,
        )
    } as isize;
    // ShellExecuteW returns a value above 32 on success.
    if code > 32 {
        Ok(())
    } else {
        Err(format!("ShellExecute error {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_web_addresses_are_published_and_opened() {
        assert!(is_valid("https://school.test/concern"));
        assert!(is_valid("http://10.0.0.5:8443/concern"));
        for bad in [
            "",
            "https://",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://school.test/a b",
            "https://school.test/\"x",
            "https://school.test/\n",
            "--help",
        ] {
            assert!(!is_valid(bad), "{bad:?} accepted");
        }
        assert!(!is_valid(&format!(
            "https://school.test/{}",
            "a".repeat(MAX_NOTICE_URL_BYTES)
        )));
    }

    #[test]
    fn the_published_file_is_read_back_checked_and_removed_when_there_is_none() {
        let dir = std::env::temp_dir().join(format!("tutela-concern-{}", std::process::id()));
        let file = dir.join("public").join("concern-url");
        assert!(matches!(read(&file), Err(ConcernError::NoLink(_))));
        publish(&file, "https://school.test/concern");
        assert_eq!(read(&file).unwrap(), "https://school.test/concern");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o644,
                "readable by the pupil, written by the agent"
            );
        }
        // Something else wrote there: refused, not opened.
        std::fs::write(&file, "file:///etc/shadow\n").unwrap();
        assert!(matches!(read(&file), Err(ConcernError::Invalid(_))));
        publish(&file, "");
        assert!(matches!(read(&file), Err(ConcernError::NoLink(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
