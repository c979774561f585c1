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
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tutela_rules::{CaptureMode, Match, Matcher, Scope, TypedMatcher};

use crate::event::EventDraft;
use crate::observation::App;
use crate::sensor::{Key, SensorEvent};

/// Most windows with a typed buffer at once; the least recently used is forgotten.
const MAX_TYPED_WINDOWS: usize = 32;
/// Typing pause after which a half-finished last word is matched anyway.
const TYPING_PAUSE: Duration = Duration::from_millis(1500);

mod alert;
mod hold;
#[cfg(test)]
mod hold_tests;
mod privacy;
mod sink;
#[cfg(test)]
mod tests;

pub use hold::HoldSettings;
pub use privacy::{is_private_title, is_private_window};
pub use sink::EventSink;

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
    /// How long a typed match waits for a cue typed after it.
    pub hold: HoldSettings,
}

/// The compiled rules the agent runs, swapped atomically on an update.
pub type LiveRules = Arc<RwLock<Arc<Matcher>>>;

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
    /// A held typed match's screenshot, taken when it was typed (`None`: shoot now).
    shot: Option<Option<crate::event::Evidence>>,
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
    /// Typed matches waiting for the words typed after them (see `hold`).
    held: Vec<hold::Held>,
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
            held: Vec::new(),
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
            // The tick runs only while it has something to time: an idle
            // desktop then wakes the monitor only for sensor events.
            let timed = self.has_timed_work();
            let pending = tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.observe(e),
                    None => break,
                },
                _ = tick.tick(), if timed => self.on_tick(),
            };
            self.shoot_held().await;
            for p in pending {
                self.raise(p).await;
            }
        }
        // Nothing held is lost: half-finished words are matched, and held
        // matches decided, on the text typed so far.
        let typing: Vec<u64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.last_key.is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut pending = Vec::new();
        for id in typing {
            pending.extend(self.flush_window(id, true));
        }
        let held = self.held_count();
        pending.extend(self.decide_all());
        for p in pending {
            self.raise(p).await;
        }
        tracing::info!(held, "sensors stopped; monitor ends");
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
                let mut pending = self.flush_window(self.active, true);
                pending.extend(self.decide_window(self.active));
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
                // Held only while the pupil may type on; Enter or Tab decides at once.
                let buffer = (!matches.is_empty() && matches!(key, Key::Char(_)))
                    .then(|| typed.text().to_owned());
                if let Some(s) = &shadow {
                    self.shadow_count(s, shadow_matches);
                }
                let mut pending = self.feed_held(window_id, key);
                match buffer {
                    Some(buffer) if self.holds() => {
                        pending.extend(self.hold(window_id, matches, &buffer))
                    }
                    _ => pending.extend(self.typed_matches(window_id, matches)),
                }
                pending
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

    /// Matches a window's half-finished last word: when the pupil leaves it
    /// (`leaving`: raised at once) or pauses (held, as they may type on).
    fn flush_window(&mut self, window_id: u64, leaving: bool) -> Vec<Pending> {
        let shadow = self.shadow_matcher();
        let (matches, shadow_matches, buffer) = match self.windows.get_mut(&window_id) {
            Some(w) if w.last_key.is_some() => {
                w.last_key = None;
                let matches: Vec<Match> = w.typed.as_mut().map(|t| t.flush()).unwrap_or_default();
                let buffer = (!matches.is_empty() && !leaving)
                    .then(|| w.typed.as_ref().map(|t| t.text().to_owned()))
                    .flatten();
                (
                    matches,
                    w.shadow_typed
                        .as_mut()
                        .map(|t| t.flush())
                        .unwrap_or_default(),
                    buffer,
                )
            }
            _ => (Vec::new(), Vec::new(), None),
        };
        if let Some(s) = &shadow {
            self.shadow_count(s, shadow_matches);
        }
        match buffer {
            Some(buffer) if self.holds() => self.hold(window_id, matches, &buffer),
            _ => self.typed_matches(window_id, matches),
        }
    }

    /// Whether [`Self::on_tick`] has anything to do: a typing pause to
    /// notice, a held match to decide or a cooldown to end.
    fn has_timed_work(&self) -> bool {
        !self.held.is_empty()
            || !self.cooldowns.is_empty()
            || self.windows.values().any(|w| w.last_key.is_some())
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
            pending.extend(self.flush_window(id, false));
        }
        pending.extend(self.decide_expired());
        // Cooldowns that ended: report their folded repeats on the first alert.
        let cooldown = self.settings.cooldown;
        let ended: Vec<(String, u64)> = self
            .cooldowns
            .iter()
            .filter(|((rule_id, window_id), c)| {
                c.started.elapsed() >= cooldown && !self.holds_rule(rule_id, *window_id)
            })
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
            self.fold(&rule_id, c);
        }
        pending
    }

    /// Reports a cooldown's repeats on its first alert.
    fn fold(&self, rule_id: &str, c: Cooldown) {
        let mut draft = c.template;
        draft.time_ms = now_ms();
        draft.count = c.repeats;
        draft.repeat_of = c.event_id;
        draft.event_id = None;
        draft.evidence = None;
        tracing::info!(rule_id = %rule_id, repeats = c.repeats, "repeats folded into the first alert");
        self.sink.append(draft);
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
