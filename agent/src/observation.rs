//! What a sensor saw: the unit the matcher works on.

/// Where an observation came from. Mirrors the rule scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Text typed into a window (rolling in-memory buffer only).
    Typed,
    /// The active window's title.
    Title,
    /// A visited URL from a browser's history.
    Url,
    /// A search query pulled out of a visited URL.
    Search,
    /// A process that started.
    Process,
}

/// The application that owns the window or the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    /// Process name, e.g. `xterm` or `chromium`.
    pub name: String,
    /// Executable path, when known.
    pub path: String,
    /// Process id, when known.
    pub pid: Option<u32>,
}

/// One thing a sensor saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub source: Source,
    /// The text to match: a title, a URL, a search query, a process name, or
    /// (for typed text) the bounded buffer the typed sensor keeps.
    pub text: String,
    pub app: App,
    /// Title of the active window when the observation was made.
    pub window_title: String,
    /// X11 window id or HWND, used for per-window cooldown and typed buffers.
    pub window_id: u64,
    /// URL of a browser visit (for `Url` and `Search`).
    pub url: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}
