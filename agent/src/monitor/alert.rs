//! Raising an alert: exemptions and the cooldown, the event drafted, its
//! screenshot (and burst) while the matched window is still in front.

use std::time::Instant;

use tutela_proto::v1::{Observation as WireObservation, RuleMatch, Source as WireSource};
use tutela_rules::{CaptureMode, Match, Scope};

use super::{now_ms, Cooldown, Monitor, Pending};
use crate::event::{random_id, EventDraft, Evidence};
use crate::observation::App;

impl Monitor {
    /// Applies exemptions and the cooldown to matches seen now; returns the alert to
    /// raise, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consider(
        &mut self,
        window_id: u64,
        scope: Scope,
        matches: Vec<Match>,
        title: &str,
        app: &App,
        url: &str,
        search: &str,
    ) -> Vec<Pending> {
        let now = Instant::now();
        self.consider_at(window_id, scope, matches, title, app, url, search, now)
    }

    /// [`Self::consider`] for matches seen `at` (when a held typed match was typed: a repeat
    /// typed within the cooldown stays a repeat however late it is decided).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consider_at(
        &mut self,
        window_id: u64,
        scope: Scope,
        matches: Vec<Match>,
        title: &str,
        app: &App,
        url: &str,
        search: &str,
        at: Instant,
    ) -> Vec<Pending> {
        let exempt = self.exempt.clone();
        let matches: Vec<Match> = matches.into_iter().filter(|m| !exempt(m)).collect();
        if matches.is_empty() {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for m in matches {
            match self.cooldowns.get_mut(&(m.rule_id.to_string(), window_id)) {
                Some(c) if at.saturating_duration_since(c.started) < self.settings.cooldown => {
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
                    rule_id: m.rule_id.to_string(),
                    category: m.category.to_string(),
                    severity: u32::from(m.severity),
                    term: m.term.to_string(),
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
                context: context.to_string(),
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
            .max()
            .unwrap_or(CaptureMode::One);
        // A cooldown this alert replaces (ended, its fold not yet reported: a held match
        // decided late) reports its repeats first, once per first alert.
        let mut replaced: Vec<(String, Cooldown)> = Vec::new();
        for m in &fresh {
            let old = self.cooldowns.insert(
                (m.rule_id.to_string(), window_id),
                Cooldown {
                    event_id: event_id.clone(),
                    started: Instant::now(),
                    repeats: 0,
                    template: draft.clone(),
                },
            );
            if let Some(c) = old.filter(|c| c.repeats > 0) {
                match replaced.iter_mut().find(|(_, r)| r.event_id == c.event_id) {
                    Some((_, r)) => r.repeats = r.repeats.max(c.repeats),
                    None => replaced.push((m.rule_id.to_string(), c)),
                }
            }
        }
        for (rule_id, c) in replaced {
            self.fold(&rule_id, c);
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
            shot: None,
        }]
    }

    pub(super) async fn raise(&self, pending: Pending) {
        let Pending {
            mut draft,
            capture,
            window_id,
            shot,
        } = pending;
        let window = (window_id >> 63 == 0 && window_id != 0).then_some(window_id);
        let wanted = self.settings.capture && capture != CaptureMode::None;
        let shoot = wanted && self.front.may_capture(window);
        if let Some(taken) = shot {
            // A held typed match: shot when it was typed (a burst goes on only
            // if its window is still in front).
            let burst_on = taken.is_some() && shoot;
            draft.evidence = taken;
            return self.spool_alert(draft, capture, window, burst_on);
        }
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
        self.spool_alert(draft, capture, window, shoot);
    }

    /// Spools the alert; for a burst, the rest of the shots follow a second apart.
    fn spool_alert(
        &self,
        draft: EventDraft,
        capture: CaptureMode,
        window: Option<u64>,
        shoot: bool,
    ) {
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

fn wire_source(scope: Scope) -> WireSource {
    match scope {
        Scope::Typed => WireSource::Typed,
        Scope::Title => WireSource::Title,
        Scope::Url => WireSource::Url,
        Scope::Search => WireSource::Search,
        Scope::Process => WireSource::Process,
    }
}

pub(super) async fn screenshot(window: Option<u64>) -> Option<Evidence> {
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
