//! Typed matches held for a few words, so that a cue typed after a match still counts.
//!
//! A title or a URL is there whole at once; typed text is matched as the keys arrive,
//! so '... in fortnite lol' or '... of embarrassment haha', typed after the words that
//! matched, would come too late to lower them. When the pack weighs its matches, a typed
//! match of a category that a cue typed after it can lower is held (the others are
//! decided at once): its screenshot is taken at once and kept in memory, and the match waits
//! until [`HoldSettings::words`] more words are typed, [`HoldSettings::time`] passes
//! ([`HoldSettings::urgent_time`] for severity 5), or the pupil presses Enter or Tab,
//! leaves the window, erases into the match, or the agent stops. Then the held text as
//! it stands is matched again, and the match is raised only if it still alerts, with the
//! context of that moment (which shows the words that followed it) and the screenshot of
//! the moment it was typed. A match that no longer alerts is dropped with its screenshot.
//! The held text is the bounded context of the match and never leaves memory.

use std::time::{Duration, Instant};

use tutela_rules::{CaptureMode, Match, Scope};

use super::alert::screenshot;
use super::{now_ms, Monitor, Pending};
use crate::event::Evidence;
use crate::observation::App;
use crate::sensor::Key;

/// Bytes of typed text kept before the first held match, for cues typed before it.
const LOOKBACK_BYTES: usize = 300;
/// Bytes kept after the held match; typing past them decides the hold.
const AHEAD_BYTES: usize = 400;
/// Holds at once (all windows); the oldest is decided when one more comes.
const MAX_HELD: usize = 16;

/// How long a typed match waits for a cue typed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    /// Words typed after the match that end the wait (0: no hold).
    pub words: usize,
    /// Longest wait after the match (0: no hold).
    pub time: Duration,
    /// Longest wait for a match of severity 5 (suicide, self-harm, exploitation).
    pub urgent_time: Duration,
}

impl HoldSettings {
    /// Largest `words`: the widest window a cue can have.
    pub const MAX_WORDS: usize = 30;
    /// Largest `time` and `urgent_time`, in seconds.
    pub const MAX_SECS: u64 = 60;

    /// No hold: every typed match is decided the moment its last word ends.
    pub fn off() -> Self {
        Self {
            words: 0,
            time: Duration::ZERO,
            urgent_time: Duration::ZERO,
        }
    }

    fn wait(&self, severity: u8) -> Duration {
        if severity >= 5 {
            self.urgent_time.min(self.time)
        } else {
            self.time
        }
    }
}

impl Default for HoldSettings {
    /// Ten words reach every `after` window of the shipped pack's lowering cues but one
    /// (12 words of 'support and help'), and at a pupil's typing speed come within a few
    /// seconds. Eight seconds lets a pupil pause mid-sentence; a match of severity 5 (a
    /// stated wish or plan to die) waits three, long enough for '... of embarrassment'.
    fn default() -> Self {
        Self {
            words: 10,
            time: Duration::from_secs(8),
            urgent_time: Duration::from_secs(3),
        }
    }
}

/// Typed matches found by one key, waiting for what is typed next.
pub(super) struct Held {
    window_id: u64,
    /// The window's title and application when the matches were typed.
    title: String,
    app: App,
    /// The matches, with spans in `text`.
    matches: Vec<Match>,
    /// The typed text from shortly before the matches to the last key.
    text: String,
    /// End of the matches in `text`: erasing into them decides the hold.
    end: usize,
    since: Instant,
    wait: Duration,
    /// When the matches were typed: the alert's time.
    time_ms: i64,
    capture: CaptureMode,
    /// Whether a screenshot may be wanted (not every match a repeat in the cooldown).
    fresh: bool,
    /// The screenshot taken when the matches were typed; `None` until taken.
    shot: Option<Option<Evidence>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the typed text.
        f.debug_struct("Held")
            .field("window_id", &self.window_id)
            .field("matches", &self.matches.len())
            .finish_non_exhaustive()
    }
}

/// Words in `text`, counted as the pupil ends them.
fn words(text: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count()
}

fn overlaps(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Monitor {
    /// Whether typed matches are held with the live rules.
    pub(super) fn holds(&mut self) -> bool {
        let hold = self.settings.hold;
        hold.words > 0 && !hold.time.is_zero() && self.matcher().typed_match_may_be_lowered()
    }

    /// Holds `matches` just found in `buffer` (a window's typed text, spans in it).
    pub(super) fn hold(
        &mut self,
        window_id: u64,
        matches: Vec<Match>,
        buffer: &str,
    ) -> Vec<Pending> {
        let exempt = self.exempt.clone();
        let matches: Vec<Match> = matches.into_iter().filter(|m| !exempt(m)).collect();
        // A match no cue typed after it could lower (exploitation, pornography in the
        // shipped pack) is decided at once; the rest wait.
        let matcher = self.matcher();
        let (mut matches, now): (Vec<Match>, Vec<Match>) = matches
            .into_iter()
            .partition(|m| matcher.typed_category_may_be_lowered(&m.category));
        let mut pending = self.typed_matches(window_id, now);
        if matches.is_empty() {
            return pending;
        }
        let first = matches.iter().map(|m| m.span.start).min().unwrap_or(0);
        let end = matches.iter().map(|m| m.span.end).max().unwrap_or(0);
        let mut from = first.saturating_sub(LOOKBACK_BYTES);
        while !buffer.is_char_boundary(from) {
            from += 1;
        }
        // Start on a word, not inside one.
        if from > 0 {
            if let Some(i) = buffer[from..first].find(|c: char| !c.is_alphanumeric()) {
                from += i;
            }
        }
        for m in &mut matches {
            m.span = m.span.start - from..m.span.end - from;
        }
        let severity = matches.iter().map(|m| m.severity).max().unwrap_or(0);
        let cooldown = self.settings.cooldown;
        let fresh = matches.iter().any(|m| {
            self.cooldowns
                .get(&(m.rule_id.to_string(), window_id))
                .is_none_or(|c| c.started.elapsed() >= cooldown)
        });
        let capture = matches
            .iter()
            .map(|m| m.capture)
            .max()
            .unwrap_or(CaptureMode::One);
        tracing::debug!(
            window_id,
            rule_id = %matches[0].rule_id,
            "typed match held for the words typed after it"
        );
        if self.held.len() >= MAX_HELD {
            let oldest = self.held.remove(0);
            pending.extend(self.decide(oldest));
        }
        let (title, app) = match self.windows.get(&window_id) {
            Some(w) => (w.title.clone(), w.app.clone()),
            None => (String::new(), App::default()),
        };
        self.held.push(Held {
            window_id,
            title,
            app,
            matches,
            text: buffer[from..].to_owned(),
            end: end - from,
            since: Instant::now(),
            wait: self.settings.hold.wait(severity),
            time_ms: now_ms(),
            capture,
            fresh,
            shot: None,
        });
        pending
    }

    /// Follows a key typed into `window_id` in its holds; decides those it ends.
    pub(super) fn feed_held(&mut self, window_id: u64, key: Key) -> Vec<Pending> {
        let words_wanted = self.settings.hold.words;
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            let h = &mut self.held[i];
            if h.window_id != window_id {
                i += 1;
                continue;
            }
            let decide = match key {
                Key::Char(c) if h.text.len() + c.len_utf8() > h.end + AHEAD_BYTES => true,
                Key::Char(c) => {
                    h.text.push(c);
                    !c.is_alphanumeric() && words(&h.text[h.end..]) >= words_wanted
                }
                // Erasing into the match decides it on what was typed.
                Key::Backspace if h.text.len() <= h.end => true,
                Key::Backspace => {
                    h.text.pop();
                    false
                }
                Key::Enter | Key::Tab => true,
                Key::Escape => false,
            };
            if decide {
                done.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
        done.into_iter().flat_map(|h| self.decide(h)).collect()
    }

    /// Decides the holds of a window the pupil leaves.
    pub(super) fn decide_window(&mut self, window_id: u64) -> Vec<Pending> {
        self.decide_where(|h| h.window_id == window_id)
    }

    /// Decides the holds whose wait is over.
    pub(super) fn decide_expired(&mut self) -> Vec<Pending> {
        self.decide_where(|h| h.since.elapsed() >= h.wait)
    }

    /// Decides every hold (the agent stops): on the text typed so far.
    pub(super) fn decide_all(&mut self) -> Vec<Pending> {
        self.decide_where(|_| true)
    }

    fn decide_where(&mut self, f: impl Fn(&Held) -> bool) -> Vec<Pending> {
        let (done, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| f(h));
        self.held = kept;
        done.into_iter().flat_map(|h| self.decide(h)).collect()
    }

    /// Matches the held text again; raises what still alerts.
    fn decide(&mut self, mut held: Held) -> Vec<Pending> {
        let matcher = self.matcher();
        let now = matcher.find(Scope::Typed, &held.text);
        let mut kept: Vec<Match> = Vec::new();
        for h in &held.matches {
            if let Some(m) = now
                .iter()
                .find(|m| m.rule_id == h.rule_id && overlaps(&m.span, &h.span))
            {
                if !kept
                    .iter()
                    .any(|k| k.rule_id == m.rule_id && k.span == m.span)
                {
                    kept.push(m.clone());
                }
            }
        }
        if kept.is_empty() {
            tracing::info!(
                rule_id = %held.matches[0].rule_id,
                "typed match not raised: what was typed after it lowered or cancelled it"
            );
            return Vec::new();
        }
        let (title, app) = (
            std::mem::take(&mut held.title),
            std::mem::take(&mut held.app),
        );
        let at = held.since;
        let mut pending =
            self.consider_at(held.window_id, Scope::Typed, kept, &title, &app, "", "", at);
        for p in &mut pending {
            p.draft.time_ms = held.time_ms;
            p.shot = held.shot.take();
        }
        pending
    }

    /// Takes the screenshot of each new hold while its window is still in front.
    pub(super) async fn shoot_held(&mut self) {
        for i in 0..self.held.len() {
            if self.held[i].shot.is_some() {
                continue;
            }
            let h = &self.held[i];
            let window = Some(h.window_id);
            let wanted = self.settings.capture && h.capture != CaptureMode::None && h.fresh;
            let shot = if wanted && self.front.may_capture(window) {
                screenshot(window).await
            } else {
                None
            };
            self.held[i].shot = Some(shot);
        }
    }

    /// Whether a hold in `window_id` still waits with a match of `rule_id` (its repeats
    /// are not folded until it is decided).
    pub(super) fn holds_rule(&self, rule_id: &str, window_id: u64) -> bool {
        self.held
            .iter()
            .any(|h| h.window_id == window_id && h.matches.iter().any(|m| m.rule_id == rule_id))
    }

    /// Holds waiting (for tests and the shutdown log).
    pub(super) fn held_count(&self) -> usize {
        self.held.len()
    }
}
