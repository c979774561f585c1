//! Sensors: what the pupil's session shows and does, as a stream of [`SensorEvent`]s.
//!
//! Each sensor runs on its own thread and sends into a tokio channel. [`start`] starts every
//! sensor this platform has; the per-sensor modules ([`window`], [`keys`], [`browser`],
//! [`process`]) each have their own `start` with the same shape. A [`SensorHandle`] stops its
//! sensors when dropped.
//!
//! Typed keys are the most sensitive thing the agent sees: they travel only through the channel,
//! are never logged and never written anywhere.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::observation::App;

pub mod browser;
mod browser_profiles;
pub mod keys;
pub mod process;
pub mod window;

#[cfg(target_os = "linux")]
mod keys_x11;
#[cfg(target_os = "linux")]
mod process_table;
#[cfg(target_os = "linux")]
mod window_x11;
#[cfg(target_os = "linux")]
mod x11;

#[cfg(windows)]
mod keys_windows;
#[cfg(windows)]
mod window_windows;

/// One thing a sensor saw.
#[derive(Clone, PartialEq, Eq)]
pub enum SensorEvent {
    /// The active window changed, or its title changed (deduplicated: no repeat of an identical
    /// (window, title)).
    Window {
        window_id: u64,
        title: String,
        app: App,
    },
    /// A key typed into the window with focus. NEVER logged, never written anywhere.
    Key { window_id: u64, key: Key },
    /// A browser visit (only visits newer than sensor start).
    Visit {
        url: String,
        title: String,
        browser: String,
        time_ms: i64,
    },
    /// A process started after sensor start.
    ProcessStarted {
        name: String,
        path: String,
        pid: u32,
    },
}

// Hand-written so that a stray `{:?}` can never print a typed key.
impl fmt::Debug for SensorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Window {
                window_id,
                title,
                app,
            } => f
                .debug_struct("Window")
                .field("window_id", window_id)
                .field("title", title)
                .field("app", app)
                .finish(),
            Self::Key { window_id, .. } => f
                .debug_struct("Key")
                .field("window_id", window_id)
                .finish_non_exhaustive(),
            Self::Visit {
                url,
                title,
                browser,
                time_ms,
            } => f
                .debug_struct("Visit")
                .field("url", url)
                .field("title", title)
                .field("browser", browser)
                .field("time_ms", time_ms)
                .finish(),
            Self::ProcessStarted { name, path, pid } => f
                .debug_struct("ProcessStarted")
                .field("name", name)
                .field("path", path)
                .field("pid", pid)
                .finish(),
        }
    }
}

/// A typed key. Other keys (arrows, function keys, shortcuts with Ctrl or Alt) are not reported.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Backspace,
    Enter,
    Tab,
    Escape,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What the sensors watch and how often they poll where they must.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Extra browser history locations: a `History` / `places.sqlite` file, a profile directory
    /// or a browser's user-data directory. The default locations of every home directory are
    /// always watched as well.
    pub browser_profiles: Vec<PathBuf>,
    /// Whether to watch the default browser locations of every home directory.
    pub discover_browser_profiles: bool,
    /// How often browser history is re-read even without a file-change notification.
    pub browser_poll: Duration,
    /// How often the process table is read.
    pub process_poll: Duration,
    /// X11 display to watch (Linux); `None` means the `DISPLAY` environment variable.
    pub display: Option<String>,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            browser_profiles: Vec::new(),
            discover_browser_profiles: true,
            browser_poll: Duration::from_secs(3),
            process_poll: Duration::from_secs(2),
            display: None,
        }
    }
}

/// Why a sensor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "cannot connect to the X display {display:?}: {reason}; run the agent inside the \
         pupil's X session or set DISPLAY and XAUTHORITY to that session's values"
    )]
    NoDisplay { display: String, reason: String },
    #[error(
        "the X server lacks the {extension} extension needed by the {sensor} sensor; \
         use an X server with {extension} (Xorg and Xvfb have it)"
    )]
    MissingExtension {
        sensor: &'static str,
        extension: &'static str,
    },
    #[error("X11 request failed while starting the {sensor} sensor: {reason}")]
    X11 {
        sensor: &'static str,
        reason: String,
    },
    #[error("the {sensor} sensor is not yet supported on this platform ({platform})")]
    Unsupported {
        sensor: &'static str,
        platform: &'static str,
    },
    #[error(
        "cannot start the {sensor} sensor: {reason}; run the agent in the pupil's desktop \
         session (a service in session 0 sees no keyboard)"
    )]
    Hook {
        sensor: &'static str,
        reason: String,
    },
    /// The platform is too old for the sensor to work without harming the pupil's typing.
    #[error("the {sensor} sensor does not run on this system: {reason}")]
    TooOld {
        sensor: &'static str,
        reason: String,
    },
    #[error("cannot read the process table: {0}")]
    ProcessTable(String),
    #[error("cannot start the {sensor} sensor thread: {source}")]
    Thread {
        sensor: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no sensor could start on this machine; see the warnings above for each sensor")]
    NoneStarted,
    #[error(
        "refusing XAUTHORITY={path}: {reason}; it must be a regular file (not a symlink, FIFO \
         or device). The session helper copies the session's cookie into /run/tutela-agent; \
         when starting the agent by hand, point XAUTHORITY at the X server's own authority file"
    )]
    UnsafeXauthority { path: String, reason: String },
}

/// Checks the `XAUTHORITY` file before any X library opens it: the agent runs as root and the
/// path may come from the pupil's session, where a FIFO would block the start forever and a
/// symlink could point anywhere. Opened without following a symlink and without blocking, it
/// must be a regular file. A missing file is fine (the X library then sends no cookie).
#[cfg(target_os = "linux")]
pub fn check_xauthority() -> Result<(), SensorError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = std::env::var_os("XAUTHORITY").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let unsafe_file = |reason: String| SensorError::UnsafeXauthority {
        path: PathBuf::from(&path).display().to_string(),
        reason,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file("it is a symbolic link".into()))
        }
        Err(e) => return Err(unsafe_file(format!("cannot open it ({e})"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| unsafe_file(format!("cannot read its metadata ({e})")))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(unsafe_file(format!("it is {what}")));
    }
    Ok(())
}

/// Starts all sensors available on this platform. Sensors that cannot start are logged with a
/// hint and skipped; it fails only when none starts.
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    type Starter = fn(
        &SensorConfig,
        tokio::sync::mpsc::Sender<SensorEvent>,
    ) -> Result<SensorHandle, SensorError>;
    let starters: [(&str, Starter); 4] = [
        ("window", window::start),
        ("keys", keys::start),
        ("browser", browser::start),
        ("process", process::start),
    ];
    #[cfg(target_os = "linux")]
    check_xauthority()?;
    let mut handle = SensorHandle::default();
    for (name, start) in starters {
        match start(config, tx.clone()) {
            Ok(h) => handle.merge(h),
            Err(error) => tracing::warn!(sensor = name, %error, "sensor not started"),
        }
    }
    if handle.tasks.is_empty() {
        return Err(SensorError::NoneStarted);
    }
    tracing::info!(sensors = ?handle.sensors(), "sensors started");
    Ok(handle)
}

/// Running sensors; dropping it stops them and waits for their threads.
#[derive(Default)]
pub struct SensorHandle {
    tasks: Vec<Task>,
}

impl fmt::Debug for SensorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SensorHandle")
            .field("sensors", &self.sensors())
            .finish()
    }
}

struct Task {
    name: &'static str,
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

impl SensorHandle {
    /// Names of the running sensors, e.g. `["window", "keys", "browser", "process"]`.
    pub fn sensors(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|t| t.name).collect()
    }

    /// Takes over the sensors of `other`.
    pub fn merge(&mut self, mut other: SensorHandle) {
        self.tasks.append(&mut other.tasks);
    }

    /// Stops all sensors and waits for their threads to end.
    pub fn stop(self) {
        drop(self);
    }

    pub(crate) fn spawn<F>(
        name: &'static str,
        stop: Stop,
        body: F,
    ) -> Result<SensorHandle, SensorError>
    where
        F: FnOnce() + Send + 'static,
    {
        let thread = std::thread::Builder::new()
            .name(format!("sensor-{name}"))
            .spawn(body)
            .map_err(|source| SensorError::Thread {
                sensor: name,
                source,
            })?;
        Ok(SensorHandle {
            tasks: vec![Task {
                name,
                stop,
                thread: Some(thread),
            }],
        })
    }
}

impl Drop for SensorHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.stop.request();
        }
        // A sensor blocked on a full channel nobody reads cannot notice the stop: wait a
        // little, then leave it detached rather than hang the caller.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self
            .tasks
            .iter()
            .any(|t| t.thread.as_ref().is_some_and(|h| !h.is_finished()))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        for task in &mut self.tasks {
            let Some(thread) = task.thread.take() else {
                continue;
            };
            if !thread.is_finished() {
                tracing::warn!(
                    sensor = task.name,
                    "sensor thread did not stop within 2 s (is the event channel drained?)"
                );
            } else if thread.join().is_err() {
                tracing::error!(sensor = task.name, "sensor thread panicked");
            }
        }
    }
}

/// A stop request shared between a sensor thread and its handle, with an optional way to wake a
/// thread that blocks on something other than [`Stop::wait`] (an X connection).
#[derive(Clone, Default)]
pub(crate) struct Stop {
    inner: Arc<StopInner>,
}

#[derive(Default)]
struct StopInner {
    state: Mutex<StopState>,
    cv: Condvar,
    waker: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

#[derive(Default)]
struct StopState {
    stopped: bool,
    poked: bool,
}

/// Why [`Stop::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Stop,
    Poke,
    Timeout,
}

impl Stop {
    pub(crate) fn request(&self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped = true;
        self.inner.cv.notify_all();
        if let Some(waker) = &*self.inner.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            waker();
        }
    }

    // Used by the X11 sensors, which block on their connection rather than in `wait`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn is_requested(&self) -> bool {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped
    }

    /// Wakes a thread sleeping in [`Stop::wait`] early (new data to look at).
    pub(crate) fn poke(&self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poked = true;
        self.inner.cv.notify_all();
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.inner.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(waker));
    }

    /// Sleeps up to `timeout`, returning early on a stop request or a poke.
    pub(crate) fn wait(&self, timeout: Duration) -> Wake {
        let guard = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut state, _) = self
            .inner
            .cv
            .wait_timeout_while(guard, timeout, |s| !s.stopped && !s.poked)
            .unwrap_or_else(|e| e.into_inner());
        if state.stopped {
            Wake::Stop
        } else if std::mem::take(&mut state.poked) {
            Wake::Poke
        } else {
            Wake::Timeout
        }
    }
}

/// Sends from a sensor thread; `false` when the receiver is gone and the sensor should end.
pub(crate) fn send(tx: &tokio::sync::mpsc::Sender<SensorEvent>, event: SensorEvent) -> bool {
    tx.blocking_send(event).is_ok()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Process name and executable path of `pid` (Linux: `/proc/<pid>/comm` and `/proc/<pid>/exe`).
#[cfg(target_os = "linux")]
pub(crate) fn app_of_pid(pid: u32) -> App {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default();
    app_with_comm(pid, name)
}

/// [`app_of_pid`] when the command name (`comm`) is known already.
#[cfg(target_os = "linux")]
pub(crate) fn app_with_comm(pid: u32, comm: String) -> App {
    let mut name = comm;
    let path = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // comm is cut at 15 bytes; the executable's file name is the full name then.
    if name.len() == 15 {
        if let Some(file) = std::path::Path::new(&path).file_name() {
            let file = file.to_string_lossy();
            if file.starts_with(&name) {
                name = file.into_owned();
            }
        }
    }
    App {
        name,
        path,
        pid: Some(pid),
    }
}
