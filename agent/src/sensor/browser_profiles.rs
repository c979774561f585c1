//! Where browsers keep their history: default locations for every home directory, and the
//! history databases inside a user-data or profile directory.

use std::path::{Path, PathBuf};

/// The two history database formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// `History`: `urls` + `visits`, `visit_time` in microseconds since 1601.
    Chromium,
    /// `places.sqlite`: `moz_places` + `moz_historyvisits`, `visit_date` in microseconds since
    /// 1970.
    Firefox,
}

/// A place to look for history databases, and the browser it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    pub(crate) browser: &'static str,
}

/// One history database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HistoryDb {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) browser: &'static str,
}

/// User-data directories relative to a home directory, per platform.
#[cfg(all(unix, not(target_os = "macos")))]
const LOCATIONS: &[(&str, &str)] = &[
    (".config/chromium", "chromium"),
    ("snap/chromium/common/chromium", "chromium"),
    (".var/app/org.chromium.Chromium/config/chromium", "chromium"),
    (".config/google-chrome", "chrome"),
    (".config/google-chrome-beta", "chrome"),
    (".config/google-chrome-unstable", "chrome"),
    (".var/app/com.google.Chrome/config/google-chrome", "chrome"),
    (".config/microsoft-edge", "edge"),
    (".config/microsoft-edge-beta", "edge"),
    (".var/app/com.microsoft.Edge/config/microsoft-edge", "edge"),
    (".config/BraveSoftware/Brave-Browser", "brave"),
    (
        ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser",
        "brave",
    ),
    (".mozilla/firefox", "firefox"),
    ("snap/firefox/common/.mozilla/firefox", "firefox"),
    (".var/app/org.mozilla.firefox/.mozilla/firefox", "firefox"),
];

#[cfg(target_os = "macos")]
const LOCATIONS: &[(&str, &str)] = &[
    ("Library/Application Support/Chromium", "chromium"),
    ("Library/Application Support/Google/Chrome", "chrome"),
    ("Library/Application Support/Microsoft Edge", "edge"),
    (
        "Library/Application Support/BraveSoftware/Brave-Browser",
        "brave",
    ),
    ("Library/Application Support/Firefox/Profiles", "firefox"),
];

#[cfg(windows)]
const LOCATIONS: &[(&str, &str)] = &[
    (r"AppData\Local\Chromium\User Data", "chromium"),
    (r"AppData\Local\Google\Chrome\User Data", "chrome"),
    (r"AppData\Local\Microsoft\Edge\User Data", "edge"),
    (
        r"AppData\Local\BraveSoftware\Brave-Browser\User Data",
        "brave",
    ),
    (r"AppData\Roaming\Mozilla\Firefox\Profiles", "firefox"),
];

/// Home directories of every user (the agent may run as a service for all of them).
pub(crate) fn homes() -> Vec<PathBuf> {
    let mut homes = Vec::new();
    #[cfg(all(unix, not(target_os = "macos")))]
    let parents = ["/home"];
    #[cfg(target_os = "macos")]
    let parents = ["/Users"];
    #[cfg(windows)]
    let parents = [std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into()) + r"\Users"];
    for parent in parents {
        if let Ok(entries) = std::fs::read_dir(parent) {
            homes.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    #[cfg(unix)]
    homes.push(PathBuf::from("/root"));
    for var in ["HOME", "USERPROFILE"] {
        if let Some(home) = std::env::var_os(var) {
            homes.push(PathBuf::from(home));
        }
    }
    // Windows paths ignore case: C:\Users\pupil (listed) is USERPROFILE's C:\users\pupil.
    #[cfg(windows)]
    {
        homes.sort_by_key(|h| h.to_string_lossy().to_lowercase());
        homes.dedup_by(|a, b| {
            a.to_string_lossy()
                .eq_ignore_ascii_case(&b.to_string_lossy())
        });
    }
    #[cfg(not(windows))]
    {
        homes.sort();
        homes.dedup();
    }
    homes
}

/// Default browser locations under `homes`.
pub(crate) fn default_roots(homes: &[PathBuf]) -> Vec<Root> {
    homes
        .iter()
        .flat_map(|home| {
            LOCATIONS.iter().map(|(rel, browser)| Root {
                path: home.join(rel),
                browser,
            })
        })
        .collect()
}

/// A configured location: the browser is guessed from the path.
pub(crate) fn configured_root(path: &Path) -> Root {
    Root {
        path: path.to_path_buf(),
        browser: guess_browser(path),
    }
}

fn guess_browser(path: &Path) -> &'static str {
    let p = path.to_string_lossy().to_lowercase();
    if p.contains("brave") {
        "brave"
    } else if p.contains("edge") {
        "edge"
    } else if p.contains("chrome") && !p.contains("chromium") {
        "chrome"
    } else if p.contains("firefox") || p.contains("mozilla") || p.ends_with("places.sqlite") {
        "firefox"
    } else {
        "chromium"
    }
}

/// History databases at `root`: the file itself, a profile directory, or a user-data directory
/// holding profiles (`Default`, `Profile 1`, `abcd.default-release`, ...).
pub(crate) fn scan(root: &Root) -> Vec<HistoryDb> {
    let mut found = Vec::new();
    let db = |path: PathBuf| {
        let format = match path.file_name().and_then(|n| n.to_str()) {
            Some("History") => Format::Chromium,
            Some("places.sqlite") => Format::Firefox,
            _ => return None,
        };
        let browser = if format == Format::Firefox {
            "firefox"
        } else {
            root.browser
        };
        path.is_file().then_some(HistoryDb {
            path,
            format,
            browser,
        })
    };
    // Most default locations do not exist: one look, not one per file name.
    let Ok(meta) = std::fs::metadata(&root.path) else {
        return found;
    };
    if meta.is_file() {
        found.extend(db(root.path.clone()));
        return found;
    }
    let in_dir = |dir: &Path, found: &mut Vec<HistoryDb>| {
        found.extend(db(dir.join("History")));
        found.extend(db(dir.join("places.sqlite")));
    };
    in_dir(&root.path, &mut found);
    if let Ok(entries) = std::fs::read_dir(&root.path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                in_dir(&entry.path(), &mut found);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_profiles_in_user_data_and_profile_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let chrome = dir.path().join("google-chrome");
        for profile in ["Default", "Profile 1", "Crashpad"] {
            std::fs::create_dir_all(chrome.join(profile)).unwrap();
        }
        std::fs::write(chrome.join("Default/History"), b"").unwrap();
        std::fs::write(chrome.join("Profile 1/History"), b"").unwrap();
        let mut dbs = scan(&configured_root(&chrome));
        dbs.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(dbs.len(), 2);
        assert!(dbs
            .iter()
            .all(|d| d.browser == "chrome" && d.format == Format::Chromium));

        let fx = dir.path().join("firefox/abcd.default-release");
        std::fs::create_dir_all(&fx).unwrap();
        std::fs::write(fx.join("places.sqlite"), b"").unwrap();
        let dbs = scan(&configured_root(&fx.join("places.sqlite")));
        assert_eq!(dbs.len(), 1);
        assert_eq!(
            (dbs[0].format, dbs[0].browser),
            (Format::Firefox, "firefox")
        );
        assert!(scan(&configured_root(&dir.path().join("missing"))).is_empty());
        assert!(!default_roots(&[PathBuf::from("/home/pupil")]).is_empty());
    }
}
