//! Browser history sensor: visits from Chromium-family and Firefox history databases.
//!
//! The profile directories are watched for changes and also re-read every `browser_poll`
//! (change notifications can miss in-place writes, and a browser started later creates its
//! profile after us). Only visits made since the sensor started are reported, each once.
//!
//! A running Chromium holds an exclusive lock on `History`, so the file is opened with
//! `immutable=1` (SQLite then takes no lock); when a write-ahead log is present (Firefox), the
//! database and its log are copied to a private temporary directory and read from there.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use rusqlite::{Connection, OpenFlags};

use super::browser_profiles::{self, Format, HistoryDb, Root};
use super::{send, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop, Wake};

/// Microseconds between 1601-01-01 (Chromium's epoch) and 1970-01-01.
const CHROMIUM_EPOCH_OFFSET_US: i64 = 11_644_473_600_000_000;

/// Starts the browser history sensor.
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let since_ms = super::now_ms();
    let mut roots: Vec<Root> = config
        .browser_profiles
        .iter()
        .map(|p| browser_profiles::configured_root(p))
        .collect();
    if config.discover_browser_profiles {
        roots.extend(browser_profiles::default_roots(&browser_profiles::homes()));
    }
    let poll = config.browser_poll.max(Duration::from_millis(100));
    let stop = Stop::default();
    let poke = stop.clone();
    // Without a watcher the poll still finds every visit, a little later.
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| e.paths.iter().any(|p| is_history_file(p))) {
            poke.poke();
        }
    })
    .map_err(
        |error| tracing::warn!(%error, "browser sensor: no change notifications, polling only"),
    )
    .ok();
    let thread_stop = stop.clone();
    SensorHandle::spawn("browser", stop, move || {
        let mut sensor = BrowserSensor {
            roots,
            since_ms,
            watcher,
            watched: HashSet::new(),
            dbs: HashMap::new(),
            tx,
        };
        loop {
            if !sensor.check() {
                return;
            }
            if thread_stop.wait(poll) == Wake::Stop {
                return;
            }
        }
    })
}

fn is_history_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("History") || n.starts_with("places.sqlite"))
}

struct BrowserSensor {
    roots: Vec<Root>,
    since_ms: i64,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    dbs: HashMap<PathBuf, DbState>,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
}

struct DbState {
    db: HistoryDb,
    /// Sizes and modification times of the database and its log at the last read.
    stamp: Option<Stamp>,
    /// Highest visit id reported.
    last_id: i64,
    failures: u32,
}

type Stamp = [(u64, Option<SystemTime>); 2];

/// A visit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visit {
    pub(crate) id: i64,
    pub(crate) url: String,
    pub(crate) title: String,
    pub(crate) time_ms: i64,
}

impl BrowserSensor {
    /// Finds new databases, reads changed ones; `false` when the receiver is gone.
    fn check(&mut self) -> bool {
        for root in &self.roots {
            for db in browser_profiles::scan(root) {
                if self.dbs.contains_key(&db.path) {
                    continue;
                }
                if let (Some(watcher), Some(dir)) = (&mut self.watcher, db.path.parent()) {
                    if self.watched.insert(dir.to_path_buf()) {
                        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                            tracing::debug!(%error, dir = %dir.display(), "browser sensor: cannot watch profile");
                        }
                    }
                }
                tracing::info!(browser = db.browser, path = %db.path.display(), "browser history found");
                self.dbs.insert(
                    db.path.clone(),
                    DbState {
                        db,
                        stamp: None,
                        last_id: 0,
                        failures: 0,
                    },
                );
            }
        }
        for state in self.dbs.values_mut() {
            let stamp = stamp(&state.db.path);
            if state.stamp == Some(stamp) {
                continue;
            }
            let batch = match read_visits(&state.db, state.last_id, self.since_ms) {
                Ok(batch) => batch,
                Err(error) => {
                    state.failures += 1;
                    // A browser mid-write or a half-copied file: try again next round.
                    if state.failures == 3 {
                        tracing::warn!(%error, path = %state.db.path.display(), "browser sensor cannot read history; retrying");
                    }
                    continue;
                }
            };
            state.failures = 0;
            state.stamp = Some(stamp);
            state.last_id = batch.after_id;
            for visit in batch.visits {
                state.last_id = state.last_id.max(visit.id);
                if !reportable(&visit.url) {
                    continue;
                }
                let event = SensorEvent::Visit {
                    url: visit.url,
                    title: visit.title,
                    browser: state.db.browser.to_owned(),
                    time_ms: visit.time_ms,
                };
                if !send(&self.tx, event) {
                    return false;
                }
            }
        }
        true
    }
}

/// Browser-internal pages are not visits.
fn reportable(url: &str) -> bool {
    const INTERNAL: [&str; 8] = [
        "about:",
        "chrome:",
        "chrome-extension:",
        "chrome-search:",
        "edge:",
        "brave:",
        "moz-extension:",
        "devtools:",
    ];
    !INTERNAL.iter().any(|p| url.starts_with(p))
}

fn stamp(db: &Path) -> Stamp {
    let of = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None))
    };
    [of(db), of(&wal_path(db))]
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Why a history database could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("copying the database with its write-ahead log failed: {0}")]
    Copy(#[from] std::io::Error),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// New visits, and the id to read after next time.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) visits: Vec<Visit>,
    /// `after_id` as used (0 when the history was cleared and ids started again).
    pub(crate) after_id: i64,
}

/// Visits with an id above `after_id` made at or after `since_ms`, oldest first.
pub(crate) fn read_visits(
    db: &HistoryDb,
    after_id: i64,
    since_ms: i64,
) -> Result<Batch, ReadError> {
    let wal = wal_path(&db.path);
    let has_wal = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    // The copy (private directory) lives as long as the connection reading it.
    let (conn, _copy) = if has_wal {
        let dir = tempfile::tempdir()?;
        let copy = dir.path().join("history.sqlite");
        std::fs::copy(&db.path, &copy)?;
        std::fs::copy(&wal, wal_path(&copy))?;
        (Connection::open(&copy)?, Some(dir))
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        (
            Connection::open_with_flags(immutable_uri(&db.path), flags)?,
            None,
        )
    };
    let (sql, since) = match db.format {
        Format::Chromium => (
            "SELECT v.id, v.visit_time, u.url, COALESCE(u.title, '') \
             FROM visits v JOIN urls u ON u.id = v.url \
             WHERE v.id > ?1 AND v.visit_time >= ?2 ORDER BY v.id",
            since_ms * 1000 + CHROMIUM_EPOCH_OFFSET_US,
        ),
        Format::Firefox => (
            "SELECT v.id, v.visit_date, p.url, COALESCE(p.title, '') \
             FROM moz_historyvisits v JOIN moz_places p ON p.id = v.place_id \
             WHERE v.id > ?1 AND v.visit_date >= ?2 ORDER BY v.id",
            since_ms * 1000,
        ),
    };
    // History cleared: ids start again from 1, the time bound keeps old visits out.
    let max_table = match db.format {
        Format::Chromium => "SELECT COALESCE(MAX(id), 0) FROM visits",
        Format::Firefox => "SELECT COALESCE(MAX(id), 0) FROM moz_historyvisits",
    };
    let max_id: i64 = conn.query_row(max_table, [], |r| r.get(0))?;
    let after_id = if max_id < after_id { 0 } else { after_id };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([after_id, since], |r| {
        let t: i64 = r.get(1)?;
        Ok(Visit {
            id: r.get(0)?,
            time_ms: match db.format {
                Format::Chromium => (t - CHROMIUM_EPOCH_OFFSET_US) / 1000,
                Format::Firefox => t / 1000,
            },
            url: r.get(2)?,
            title: r.get(3)?,
        })
    })?;
    let visits = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(Batch { visits, after_id })
}

/// `file:` URI with `immutable=1`, percent-encoding what URIs reserve.
fn immutable_uri(path: &Path) -> String {
    let raw = path.to_string_lossy();
    #[cfg(windows)]
    let raw = format!("/{}", raw.replace('\\', "/"));
    let mut uri = String::from("file:");
    for c in raw.chars() {
        match c {
            '%' | '?' | '#' | ' ' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_escape_reserved_characters() {
        assert_eq!(
            immutable_uri(Path::new("/home/a b/Profile 1/History")),
            "file:/home/a%20b/Profile%201/History?immutable=1"
        );
        assert_eq!(
            immutable_uri(Path::new("/x/100%?#")),
            "file:/x/100%25%3F%23?immutable=1"
        );
    }

    #[test]
    fn internal_pages_are_not_visits() {
        assert!(!reportable("about:blank"));
        assert!(!reportable("chrome://newtab/"));
        assert!(reportable("https://example.org/?q=x"));
    }

    #[test]
    fn firefox_visits_since_start_including_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("places.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT, title TEXT);
             CREATE TABLE moz_historyvisits (id INTEGER PRIMARY KEY, place_id INTEGER,
                 visit_date INTEGER);
             INSERT INTO moz_places VALUES (1, 'https://old.example/', 'Old');
             INSERT INTO moz_places VALUES (2, 'https://new.example/', NULL);
             INSERT INTO moz_historyvisits VALUES (1, 1, 1000000000000000);
             INSERT INTO moz_historyvisits VALUES (2, 2, 1700000000000000);",
        )
        .unwrap();
        // The connection stays open: the rows are only in the -wal file.
        assert!(wal_path(&path).metadata().unwrap().len() > 0);
        let db = HistoryDb {
            path: path.clone(),
            format: Format::Firefox,
            browser: "firefox",
        };
        let batch = read_visits(&db, 0, 1_600_000_000_000).unwrap();
        assert_eq!(
            batch.visits,
            [Visit {
                id: 2,
                url: "https://new.example/".into(),
                title: String::new(),
                time_ms: 1_700_000_000_000,
            }]
        );
        assert!(read_visits(&db, 2, 1_600_000_000_000)
            .unwrap()
            .visits
            .is_empty());
        // Cleared history: ids restart below the high-water mark and are read again.
        let batch = read_visits(&db, 9, 1_600_000_000_000).unwrap();
        assert_eq!((batch.after_id, batch.visits.len()), (0, 1));
        drop(conn);
    }
}
