//! The monitor: turns what the sensors see into alerts.
//!
//! Window titles, typed text (one rolling in-memory buffer per window),
//! browser visits and process starts go through the matcher; a match becomes
//! an event with a screenshot (per the rule's capture mode), sealed into the
//! spool. A cooldown folds repeats of one rule in one window into the first
//! alert as a count. No text is kept from sign-in or password windows, and
//! typed text never leaves memory except as the bounded context of a match.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tutela_proto::v1::{Observation as WireObservation, RuleMatch, Source as WireSource};
use tutela_rules::{CaptureMode, Match, Matcher, Scope, TypedMatcher};

use crate::event::{random_id, EventDraft, Evidence};
use crate::identity::Identity;
use crate::observation::App;
use crate::sensor::{Key, SensorEvent};
use crate::spool::Spool;

/// Most windows with a typed buffer at once; the least recently used is forgotten.
const MAX_TYPED_WINDOWS: usize = 32;
/// Typing pause after which a half-finished last word is matched anyway.
const TYPING_PAUSE: Duration = Duration::from_millis(1500);

/// Words in a window title that mark a sign-in or password prompt: nothing
/// typed there is kept.
const PRIVATE_TITLE_WORDS: &[&str] = &[
    "password",
    "passwort",
    "passcode",
    "sign in",
    "sign-in",
    "signin",
    "log in",
    "log-in",
    "login",
    "logon",
    "authenticat",
    "verification code",
    "2-step",
    "two-factor",
    "one-time code",
    "enter pin",
    "cyfrinair",
    "mewngofnodi",
];

/// Window titles of the operating system's own credential prompts
/// (Windows: CredUI, RunAs, mapped drives, Windows Hello; Microsoft sign-in).
const PRIVATE_SYSTEM_TITLES: &[&str] = &["windows security", "microsoft account", "credential"];

/// Programs that only ever ask for credentials.
const PRIVATE_APPS: &[&str] = &[
    "credentialuibroker",
    "consent",
    "logonui",
    "credentialenrollmentmanager",
    "pinentry",
    "polkit-gnome-authentication-agent-1",
    "gcr-prompter",
];

/// Whether a window title marks a sign-in or password prompt.
pub fn is_private_title(title: &str) -> bool {
    let lower = title.to_lowercase();
    PRIVATE_TITLE_WORDS.iter().any(|w| lower.contains(w))
        || PRIVATE_SYSTEM_TITLES.iter().any(|w| lower.contains(w))
}

/// Whether a window (by title or by the program that owns it) is a sign-in
/// or password prompt: nothing typed there is kept.
pub fn is_private_window(title: &str, app_name: &str) -> bool {
    let app = app_name.to_lowercase();
    let app = app.strip_suffix(".exe").unwrap_or(&app);
    is_private_title(title) || PRIVATE_APPS.contains(&app)
}

/// Settings for the monitor.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub user: String,
    pub station: String,
    pub cooldown: Duration,
    pub burst_shots: u32,
    pub burst_interval: Duration,
    /// Take screenshots at all (off where there is no display, e.g. in a service test).
    pub capture: bool,
}

/// The compiled rules the agent runs, swapped atomically on an update.
pub type LiveRules = Arc<RwLock<Arc<Matcher>>>;

/// Where sealed events go.
#[derive(Clone)]
pub struct EventSink {
    pub identity: Arc<Identity>,
    pub spool: Arc<Mutex<Spool>>,
    pub appended: Arc<Notify>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl EventSink {
    pub fn append(&self, draft: EventDraft) {
        let result = self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&self.identity, draft);
        match result {
            Ok(seq) => {
                tracing::debug!(seq, "event spooled");
                self.appended.notify_one();
            }
            Err(e) => {
                // Counted, so the next event spooled reports it as dropped.
                self.spool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .count_lost();
                tracing::error!(error = %e, "could not spool an event; it is lost and counted as dropped");
            }
        }
    }
}

struct WindowState {
    title: String,
    app: App,
    private: bool,
    typed: Option<TypedMatcher>,
    /// The shadow pack's typed buffer for this window.
    shadow_typed: Option<TypedMatcher>,
    last_key: Option<Instant>,
    used: Instant,
}

struct Cooldown {
    event_id: String,
    started: Instant,
    repeats: u32,
    template: EventDraft,
}

/// The window in front, as the window sensor last reported it; shared with
/// burst shots taken after the alert.
#[derive(Debug, Default)]
struct Front {
    window: AtomicU64,
    private: AtomicBool,
}

impl Front {
    fn set(&self, window_id: u64, private: bool) {
        self.window.store(window_id, Ordering::Relaxed);
        self.private.store(private, Ordering::Relaxed);
    }

    /// Whether a screenshot may be the evidence for a match in `window`
    /// (`None`: a match tied to no window, such as a process): never while a
    /// sign-in window is in front, and for a window's match only while that
    /// window is still in front. A match found when the pupil leaves a window
    /// (typed text is checked then) would otherwise show whatever they
    /// turned to, perhaps a password prompt.
    fn may_capture(&self, window: Option<u64>) -> bool {
        !self.private.load(Ordering::Relaxed)
            && window.is_none_or(|w| self.window.load(Ordering::Relaxed) == w)
    }
}

/// An alert about to be raised.
struct Pending {
    draft: EventDraft,
    capture: CaptureMode,
    window_id: u64,
}

pub struct Monitor {
    rules: LiveRules,
    rules_seen: usize,
    settings: MonitorSettings,
    sink: EventSink,
    windows: HashMap<u64, WindowState>,
    active: u64,
    front: Arc<Front>,
    cooldowns: HashMap<(String, u64), Cooldown>,
    /// Only what is filtered out by curriculum exemptions is dropped here.
    pub exempt: Arc<dyn Fn(&Match) -> bool + Send + Sync>,
    /// A candidate pack run beside the live one: counted, never alerted.
    pub shadow: crate::shadow::Shadow,
    shadow_seen: usize,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    crate::session::now_ms()
}

fn wire_source(scope: Scope) -> WireSource {
    match scope {
        Scope::Typed => WireSource::Typed,
        Scope::Title => WireSource::Title,
        Scope::Url => WireSource::Url,
        Scope::Search => WireSource::Search,
        Scope::Process => WireSource::Process,
    }
}

impl Monitor {
    pub fn new(rules: LiveRules, settings: MonitorSettings, sink: EventSink) -> Self {
        Self {
            rules,
            rules_seen: 0,
            settings,
            sink,
            windows: HashMap::new(),
            active: 0,
            front: Arc::default(),
            cooldowns: HashMap::new(),
            exempt: Arc::new(|_| false),
            shadow: crate::shadow::Shadow::default(),
            shadow_seen: 0,
        }
    }

    /// The shadow matcher, if one runs; typed buffers restart when it changes.
    fn shadow_matcher(&mut self) -> Option<Arc<Matcher>> {
        let m = self.shadow.matcher();
        let id = m.as_ref().map(|m| Arc::as_ptr(m) as usize).unwrap_or(0);
        if id != self.shadow_seen {
            self.shadow_seen = id;
            for w in self.windows.values_mut() {
                w.shadow_typed = None;
            }
        }
        m
    }

    /// Counts a shadow pack's would-be matches (after exemptions, like live ones).
    fn shadow_count(&self, shadow: &Matcher, matches: Vec<Match>) {
        if matches.is_empty() {
            return;
        }
        let exempt = self.exempt.clone();
        let matches: Vec<Match> = matches.into_iter().filter(|m| !exempt(m)).collect();
        self.shadow.count(shadow.version(), &matches);
    }

    fn matcher(&mut self) -> Arc<Matcher> {
        let m = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
        let id = Arc::as_ptr(&m) as usize;
        if id != self.rules_seen {
            // New rules: typed buffers restart on the new automaton.
            self.rules_seen = id;
            for w in self.windows.values_mut() {
                w.typed = None;
            }
        }
        m
    }

    /// Runs until the sensors stop.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SensorEvent>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let pending = tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.observe(e),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            };
            for p in pending {
                self.raise(p).await;
            }
        }
        tracing::info!("sensors stopped; monitor ends");
    }

    /// Handles one sensor event; returns the alerts it raises.
    fn observe(&mut self, event: SensorEvent) -> Vec<Pending> {
        let matcher = self.matcher();
        let shadow = self.shadow_matcher();
        match event {
            SensorEvent::Window {
                window_id,
                title,
                app,
            } => {
                let mut pending = self.flush_window(self.active);
                self.active = window_id;
                let private = is_private_window(&title, &app.name);
                self.front.set(window_id, private);
                let state = self.window(window_id);
                let changed = state.title != title;
                state.title = title.clone();
                state.app = app.clone();
                if private && !state.private {
                    tracing::debug!(window_id, "sign-in window: typed text is not kept");
                    state.typed = None;
                    state.shadow_typed = None;
                }
                state.private = private;
                if changed && !title.is_empty() {
                    if let Some(s) = &shadow {
                        self.shadow_count(s, s.find(Scope::Title, &title));
                    }
                    let matches = matcher.find(Scope::Title, &title);
                    pending.extend(self.consider(
                        window_id,
                        Scope::Title,
                        matches,
                        &title,
                        &app,
                        "",
                        "",
                    ));
                }
                pending
            }
            SensorEvent::Key { window_id, key } => {
                let state = self.window(window_id);
                if state.private {
                    return Vec::new();
                }
                state.last_key = Some(Instant::now());
                let shadow_matches = match &shadow {
                    Some(s) => {
                        let typed = state.shadow_typed.get_or_insert_with(|| s.typed());
                        match key {
                            Key::Char(c) => typed.push(c),
                            Key::Enter | Key::Tab => typed.push('\n'),
                            Key::Backspace => {
                                typed.backspace();
                                Vec::new()
                            }
                            Key::Escape => Vec::new(),
                        }
                    }
                    None => Vec::new(),
                };
                let typed = state.typed.get_or_insert_with(|| matcher.typed());
                let matches = match key {
                    Key::Char(c) => typed.push(c),
                    Key::Enter | Key::Tab => typed.push('\n'),
                    Key::Backspace => {
                        typed.backspace();
                        Vec::new()
                    }
                    Key::Escape => Vec::new(),
                };
                if let Some(s) = &shadow {
                    self.shadow_count(s, shadow_matches);
                }
                self.typed_matches(window_id, matches)
            }
            SensorEvent::Visit { url, title, .. } => {
                let mut matches = matcher.find_url(&url);
                if !title.is_empty() {
                    for m in matcher.find(Scope::Title, &title) {
                        if !matches.iter().any(|x| x.rule_id == m.rule_id) {
                            matches.push(m);
                        }
                    }
                }
                if let Some(s) = &shadow {
                    let mut would = s.find_url(&url);
                    if !title.is_empty() {
                        would.extend(s.find(Scope::Title, &title));
                    }
                    self.shadow_count(s, would);
                }
                let search = tutela_rules::search_query(&url).unwrap_or_default();
                let app = App {
                    name: "browser".into(),
                    ..App::default()
                };
                let window_id = self.active;
                self.consider(window_id, Scope::Url, matches, &title, &app, &url, &search)
            }
            SensorEvent::ProcessStarted { name, path, pid } => {
                if let Some(s) = &shadow {
                    self.shadow_count(s, s.find(Scope::Process, &name));
                }
                let matches = matcher.find(Scope::Process, &name);
                let app = App {
                    name: name.clone(),
                    path,
                    pid: Some(pid),
                };
                // Processes have no window: fold per process name.
                let key = process_key(&name);
                self.consider(key, Scope::Process, matches, "", &app, "", "")
            }
        }
    }

    fn window(&mut self, window_id: u64) -> &mut WindowState {
        if !self.windows.contains_key(&window_id) && self.windows.len() >= MAX_TYPED_WINDOWS {
            if let Some((&oldest, _)) = self.windows.iter().min_by_key(|(_, w)| w.used) {
                self.windows.remove(&oldest);
            }
        }
        let state = self
            .windows
            .entry(window_id)
            .or_insert_with(|| WindowState {
                title: String::new(),
                app: App::default(),
                // Unknown until the window sensor reports its title: keys
                // typed into a window not yet seen (a sign-in prompt that
                // opens with the cursor in the password box) are not kept.
                private: true,
                typed: None,
                shadow_typed: None,
                last_key: None,
                used: Instant::now(),
            });
        state.used = Instant::now();
        state
    }

    fn typed_matches(&mut self, window_id: u64, matches: Vec<Match>) -> Vec<Pending> {
        if matches.is_empty() {
            return Vec::new();
        }
        let (title, app) = match self.windows.get(&window_id) {
            Some(w) => (w.title.clone(), w.app.clone()),
            None => (String::new(), App::default()),
        };
        self.consider(window_id, Scope::Typed, matches, &title, &app, "", "")
    }

    fn flush_window(&mut self, window_id: u64) -> Vec<Pending> {
        let shadow = self.shadow_matcher();
        let (matches, shadow_matches) = match self.windows.get_mut(&window_id) {
            Some(w) if w.last_key.is_some() => {
                w.last_key = None;
                (
                    w.typed.as_mut().map(|t| t.flush()).unwrap_or_default(),
                    w.shadow_typed
                        .as_mut()
                        .map(|t| t.flush())
                        .unwrap_or_default(),
                )
            }
            _ => (Vec::new(), Vec::new()),
        };
        if let Some(s) = &shadow {
            self.shadow_count(s, shadow_matches);
        }
        self.typed_matches(window_id, matches)
    }

    fn on_tick(&mut self) -> Vec<Pending> {
        let mut pending = Vec::new();
        let paused: Vec<u64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.last_key.is_some_and(|t| t.elapsed() >= TYPING_PAUSE))
            .map(|(id, _)| *id)
            .collect();
        for id in paused {
            pending.extend(self.flush_window(id));
        }
        // Cooldowns that ended: report their folded repeats on the first alert.
        let cooldown = self.settings.cooldown;
        let ended: Vec<(String, u64)> = self
            .cooldowns
            .iter()
            .filter(|(_, c)| c.started.elapsed() >= cooldown)
            .map(|(k, _)| k.clone())
            .collect();
        // Rules that matched the same words share one first alert and count the same
        // repeats: each first alert gets one folded record, with the most any rule counted.
        let mut folds: Vec<(String, Cooldown)> = Vec::new();
        for key in ended {
            if let Some(c) = self.cooldowns.remove(&key) {
                if c.repeats == 0 {
                    continue;
                }
                match folds.iter_mut().find(|(_, f)| f.event_id == c.event_id) {
                    Some((_, f)) => f.repeats = f.repeats.max(c.repeats),
                    None => folds.push((key.0, c)),
                }
            }
        }
        for (rule_id, c) in folds {
            let mut draft = c.template;
            draft.time_ms = now_ms();
            draft.count = c.repeats;
            draft.repeat_of = c.event_id;
            draft.event_id = None;
            draft.evidence = None;
            tracing::info!(rule_id = %rule_id, repeats = c.repeats, "repeats folded into the first alert");
            self.sink.append(draft);
        }
        pending
    }

    /// Applies exemptions and the cooldown; returns the alert to raise, if any.
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &mut self,
        window_id: u64,
        scope: Scope,
        matches: Vec<Match>,
        title: &str,
        app: &App,
        url: &str,
        search: &str,
    ) -> Vec<Pending> {
        let exempt = self.exempt.clone();
        let matches: Vec<Match> = matches.into_iter().filter(|m| !exempt(m)).collect();
        if matches.is_empty() {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for m in matches {
            match self.cooldowns.get_mut(&(m.rule_id.clone(), window_id)) {
                Some(c) if c.started.elapsed() < self.settings.cooldown => {
                    c.repeats += 1;
                    tracing::debug!(rule_id = %m.rule_id, repeats = c.repeats, "repeat within the cooldown");
                }
                _ => fresh.push(m),
            }
        }
        if fresh.is_empty() {
            return Vec::new();
        }
        fresh.sort_by_key(|m| std::cmp::Reverse(m.severity));
        let lead = &fresh[0];
        let context = lead.context.clone();
        let rules_version = self.matcher().version();
        let matches: Vec<RuleMatch> = fresh
            .iter()
            .map(|m| {
                let (start, end) = if m.context == context {
                    (m.context_span.start as u32, m.context_span.end as u32)
                } else {
                    (0, 0)
                };
                RuleMatch {
                    rule_id: m.rule_id.clone(),
                    category: m.category.clone(),
                    severity: u32::from(m.severity),
                    term: m.term.clone(),
                    start,
                    end,
                }
            })
            .collect();
        let source = match (scope, lead.scope) {
            (Scope::Url, Scope::Search) => WireSource::Search,
            (s, _) => wire_source(s),
        };
        let event_id = random_id();
        let draft = EventDraft {
            time_ms: now_ms(),
            user: self.settings.user.clone(),
            station: self.settings.station.clone(),
            observation: WireObservation {
                source: source as i32,
                context,
                app: app.name.clone(),
                app_path: app.path.clone(),
                window_title: title.to_owned(),
                url: url.to_owned(),
                search_query: search.to_owned(),
            },
            matches,
            evidence: None,
            rules_version,
            count: 1,
            event_id: Some(event_id.clone()),
            repeat_of: String::new(),
        };
        let capture = fresh
            .iter()
            .map(|m| m.capture)
            .max_by_key(|c| match c {
                CaptureMode::None => 0,
                CaptureMode::One => 1,
                CaptureMode::Burst => 2,
            })
            .unwrap_or(CaptureMode::One);
        for m in &fresh {
            self.cooldowns.insert(
                (m.rule_id.clone(), window_id),
                Cooldown {
                    event_id: event_id.clone(),
                    started: Instant::now(),
                    repeats: 0,
                    template: draft.clone(),
                },
            );
        }
        tracing::info!(
            source = ?source,
            rule_id = %fresh[0].rule_id,
            category = %fresh[0].category,
            severity = fresh[0].severity,
            "rule matched"
        );
        vec![Pending {
            draft,
            capture,
            window_id,
        }]
    }

    async fn raise(&self, pending: Pending) {
        let Pending {
            mut draft,
            capture,
            window_id,
        } = pending;
        let window = (window_id >> 63 == 0 && window_id != 0).then_some(window_id);
        let wanted = self.settings.capture && capture != CaptureMode::None;
        let shoot = wanted && self.front.may_capture(window);
        if shoot {
            draft.evidence = screenshot(window).await;
        } else if wanted {
            tracing::info!(
                rule_id = draft
                    .matches
                    .first()
                    .map(|m| m.rule_id.as_str())
                    .unwrap_or(""),
                "no screenshot: the matched window is no longer in front, or a sign-in window is"
            );
        }
        let first_id = draft.event_id.clone().unwrap_or_default();
        let template = draft.clone();
        self.sink.append(draft);
        if shoot && capture == CaptureMode::Burst && self.settings.burst_shots > 1 {
            let sink = self.sink.clone();
            let shots = self.settings.burst_shots - 1;
            let interval = self.settings.burst_interval;
            let front = self.front.clone();
            tokio::spawn(async move {
                for _ in 0..shots {
                    tokio::time::sleep(interval).await;
                    if !front.may_capture(window) {
                        // The rest of the burst would show something else.
                        break;
                    }
                    let mut extra = template.clone();
                    extra.evidence = screenshot(window).await;
                    extra.time_ms = now_ms();
                    extra.count = 0;
                    extra.event_id = None;
                    extra.repeat_of = first_id.clone();
                    sink.append(extra);
                }
            });
        }
    }
}

/// The cooldown key of a process name: a hash with the top bit set, so it
/// never names a window (and no window is captured for it).
fn process_key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish() | (1 << 63)
}

async fn screenshot(window: Option<u64>) -> Option<Evidence> {
    let shot = tokio::task::spawn_blocking(move || crate::capture::capture_screen(window)).await;
    match shot {
        Ok(Ok(c)) => Some(Evidence {
            jpeg: c.jpeg,
            width: c.width,
            height: c.height,
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no screenshot for this alert");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(version: u32, weapons: &str) -> Matcher {
        let text = format!(
            "[pack]\nid = \"t\"\nname = \"T\"\nversion = {version}\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
             [categories.weapons]\nseverity = 4\ndescription = \"W\"\n\n\
             [categories.drugs]\nseverity = 3\ndescription = \"D\"\n\n\
             [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [{weapons}]\n\n\
             [[terms]]\ncategory = \"drugs\"\nkind = \"phrase\"\nterms = [\"cannabis\"]\n"
        );
        let pack = tutela_rules::Pack::parse(&text, "test").unwrap();
        Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap()
    }

    fn monitor(dir: &std::path::Path) -> Monitor {
        let identity = Arc::new(Identity::generate());
        let spool = Spool::open(
            &dir.join("spool.db"),
            "ag-test",
            crate::spool::SpoolConfig::default(),
        )
        .unwrap();
        let live: LiveRules = Arc::new(RwLock::new(Arc::new(compile(1, "\"pipe bomb\""))));
        let settings = MonitorSettings {
            user: "pupil".into(),
            station: "PC".into(),
            cooldown: Duration::from_secs(60),
            burst_shots: 1,
            burst_interval: Duration::from_millis(10),
            capture: false,
        };
        let sink = EventSink {
            identity,
            spool: Arc::new(Mutex::new(spool)),
            appended: Arc::new(Notify::new()),
        };
        Monitor::new(live, settings, sink)
    }

    fn typed(m: &mut Monitor, text: &str) -> Vec<Pending> {
        // The window sensor reports the window before keys are kept there.
        let mut out = m.observe(SensorEvent::Window {
            window_id: 7,
            title: "Untitled document - Writer".into(),
            app: App::default(),
        });
        for c in text.chars() {
            out.extend(m.observe(SensorEvent::Key {
                window_id: 7,
                key: Key::Char(c),
            }));
        }
        out.extend(m.observe(SensorEvent::Key {
            window_id: 7,
            key: Key::Enter,
        }));
        out
    }

    #[test]
    fn shadow_rules_count_typed_matches_and_raise_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        m.shadow.set(compile(2, "\"pipe bomb\", \"zip gun\""));
        assert!(typed(&mut m, "a zip gun and a zip gun").is_empty());
        let raised = typed(&mut m, "pipe bomb");
        assert_eq!(raised.len(), 1, "the live rule still alerts");
        assert_eq!(raised[0].draft.matches[0].rule_id, "weapons/pipe bomb");
        let (version, counts) = m.shadow.snapshot();
        assert_eq!(version, 2);
        assert_eq!(counts.get("weapons/zip gun"), Some(&2));
        assert_eq!(counts.get("weapons/pipe bomb"), Some(&1));
    }

    #[test]
    fn exempt_matches_raise_nothing_and_are_not_counted_in_shadow() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        m.shadow.set(compile(2, "\"pipe bomb\""));
        m.exempt = Arc::new(|x: &Match| x.category == "drugs");
        assert!(typed(&mut m, "cannabis").is_empty());
        assert_eq!(typed(&mut m, "pipe bomb").len(), 1);
        let (_, counts) = m.shadow.snapshot();
        assert_eq!(counts.get("drugs/cannabis"), None);
        assert_eq!(counts.get("weapons/pipe bomb"), Some(&1));
    }

    #[test]
    fn evidence_is_shot_only_of_the_matched_window_with_no_sign_in_window_in_front() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        let window = |id: u64, title: &str| SensorEvent::Window {
            window_id: id,
            title: title.into(),
            app: App::default(),
        };
        m.observe(window(7, "Untitled document - Writer"));
        for c in "pipe bomb".chars() {
            m.observe(SensorEvent::Key {
                window_id: 7,
                key: Key::Char(c),
            });
        }
        assert!(m.front.may_capture(Some(7)));
        // The pupil turns to a sign-in prompt: the typed match is found as
        // they leave, and the screen now shows the prompt.
        let raised = m.observe(window(8, "Sign in - Google Accounts - Chromium"));
        assert_eq!(raised.len(), 1, "the match is raised on leaving");
        assert_eq!(raised[0].window_id, 7);
        assert!(!m.front.may_capture(Some(7)));
        assert!(!m.front.may_capture(Some(8)), "never a sign-in window");
        assert!(!m.front.may_capture(None), "nothing while one is in front");
        // An ordinary window in front: only its own matches are shot.
        m.observe(window(9, "Year 9 History - The Blitz"));
        assert!(!m.front.may_capture(Some(7)));
        assert!(m.front.may_capture(Some(9)));
        assert!(m.front.may_capture(None));
    }

    #[test]
    fn keys_in_a_window_not_yet_reported_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        for c in "pipe bomb".chars() {
            assert!(m
                .observe(SensorEvent::Key {
                    window_id: 9,
                    key: Key::Char(c),
                })
                .is_empty());
        }
        let raised = m.observe(SensorEvent::Key {
            window_id: 9,
            key: Key::Enter,
        });
        assert!(raised.is_empty(), "nothing typed before the title is known");
        assert!(m.windows.get(&9).is_none_or(|w| w.typed.is_none()));
    }

    #[test]
    fn an_event_that_cannot_be_spooled_is_counted_as_dropped_on_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        let draft = typed(&mut m, "pipe bomb").pop().unwrap().draft;
        let spool = m.sink.spool.clone();
        m.sink.append(draft.clone());
        spool.lock().unwrap().refuse_writes(true);
        m.sink.append(draft.clone());
        m.sink.append(draft.clone());
        spool.lock().unwrap().refuse_writes(false);
        assert_eq!(spool.lock().unwrap().stats().unwrap().dropped, 2);
        m.sink.append(draft);
        let events = spool.lock().unwrap().pending_after(0, 10).unwrap();
        let dropped: Vec<u64> = events
            .iter()
            .map(|e| {
                <tutela_proto::v1::EventBody as prost::Message>::decode(e.body.as_slice())
                    .unwrap()
                    .dropped_before
            })
            .collect();
        assert_eq!(
            dropped,
            vec![0, 2],
            "the lost events are reported with the next"
        );
        assert_eq!(spool.lock().unwrap().stats().unwrap().dropped, 2);
    }

    #[test]
    fn repeats_matched_by_two_rules_fold_into_one_record_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        // Two rules match the same words: a phrase and the word inside it.
        *m.rules.write().unwrap() = Arc::new(compile(2, "\"pipe bomb\", \"bomb\""));
        let first = typed(&mut m, "a pipe bomb ");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].draft.matches.len(), 2);
        let event_id = first[0].draft.event_id.clone().unwrap();
        for _ in 0..2 {
            assert!(typed(&mut m, "a pipe bomb ").is_empty());
        }
        m.settings.cooldown = Duration::ZERO;
        m.on_tick();
        let spool = m.sink.spool.lock().unwrap();
        let folded: Vec<EventDraft> = spool
            .drafts_from(1)
            .unwrap()
            .into_iter()
            .filter(|d| d.repeat_of == event_id)
            .collect();
        assert_eq!(folded.len(), 1, "one folded record: {folded:?}");
        assert_eq!(folded[0].count, 2, "two repeats, not two per rule");
    }

    #[test]
    fn repeated_process_starts_fold_per_name_not_per_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        let text = "[pack]\nid = \"t\"\nname = \"T\"\nversion = 2\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
             [categories.illegal]\nseverity = 3\ndescription = \"E\"\n\n\
             [[terms]]\ncategory = \"illegal\"\nkind = \"phrase\"\nscope = [\"process\"]\nterms = [\"torbrowser\", \"psiphon\"]\n";
        let pack = tutela_rules::Pack::parse(text, "test").unwrap();
        let matcher = Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap();
        *m.rules.write().unwrap() = Arc::new(matcher);
        let start = |m: &mut Monitor, name: &str, pid: u32| {
            m.observe(SensorEvent::ProcessStarted {
                name: name.into(),
                path: format!("/opt/{name}"),
                pid,
            })
        };
        let first = start(&mut m, "torbrowser", 100);
        assert_eq!(first.len(), 1);
        assert!(first[0].window_id >> 63 == 1, "never a window");
        // Relaunched with a new pid (or one per tab): a repeat, not a new alert.
        assert!(start(&mut m, "torbrowser", 101).is_empty());
        assert!(start(&mut m, "torbrowser", 102).is_empty());
        let key = (
            first[0].draft.matches[0].rule_id.clone(),
            first[0].window_id,
        );
        assert_eq!(m.cooldowns[&key].repeats, 2);
        // Another program matching is its own alert.
        assert_eq!(start(&mut m, "psiphon", 100).len(), 1);
    }

    #[test]
    fn sign_in_titles_are_private() {
        assert!(is_private_title("Sign in - Google Accounts - Chromium"));
        assert!(is_private_title("Enter your password"));
        assert!(!is_private_title("Year 9 History - The Blitz"));
        assert!(is_private_title("Windows Security"));
        assert!(is_private_title("Microsoft account"));
        assert!(is_private_window("", "CredentialUIBroker.exe"));
        assert!(is_private_window("Authentication", "pinentry"));
        assert!(!is_private_window("Untitled - Notepad", "notepad.exe"));
    }
}
