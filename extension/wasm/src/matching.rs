//! The rules the extension runs: signed bundles and exemption sets checked
//! exactly as the native agent checks them (strict RFC 8032 signatures with
//! the bundle key given at enrolment), and the page and typed-text matching
//! that turns an observation into an alert's content. A shadow (candidate)
//! bundle runs beside the live one and only counts its would-be matches for
//! the heartbeat; it never makes an alert.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{json, Value};
use tutela_proto::v1::{rules_update, ExemptionSet, RulesUpdate, Source};
use tutela_rules::{CompileOptions, Match, Matcher, Scope, TypedMatcher};

use crate::wire::{bytes, int, text};
use crate::Failure;

/// Matches at or above this severity are alerted whatever the exemptions say.
const NEVER_EXEMPT_SEVERITY: u8 = 5;
/// The longest exemption honoured (the collector allows no longer).
const MAX_EXEMPTION_MS: i64 = 16 * 7 * 86_400_000;
/// Most shadow rules reported in a heartbeat (the noisiest), as the native agent.
const MAX_REPORTED_SHADOW_RULES: usize = 1000;

/// One exemption in force for this device's group.
#[derive(Debug, Clone)]
struct Exemption {
    category: String,
    term: String,
    starts_ms: i64,
    ends_ms: i64,
}

/// The live rules, the exemptions and the typed-text buffers, one per tab.
#[derive(Default)]
pub struct Engine {
    live: Option<Arc<Matcher>>,
    exemptions: Vec<Exemption>,
    exemptions_issued_ms: i64,
    typed: HashMap<i64, TypedMatcher>,
    shadow: Option<Arc<Matcher>>,
    shadow_typed: HashMap<i64, TypedMatcher>,
    /// Would-be matches of the shadow pack per rule id, since it was applied.
    shadow_counts: BTreeMap<String, u64>,
    /// The monitoring notice held (0: none).
    pub(crate) notice_version: u32,
    /// The held notice's place in its group's order of issue (replays are refused).
    pub(crate) notice_issue: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version())
            .field("tabs", &self.typed.len())
            .finish_non_exhaustive()
    }
}

fn verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, signature)
        .is_ok()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Backspaces, then each character, then (at a pause) what is pending.
fn feed(typed: &mut TypedMatcher, backspaces: i64, text: &str, flush: bool) -> Vec<Match> {
    for _ in 0..backspaces {
        typed.backspace();
    }
    let mut matches = Vec::new();
    for c in text.chars() {
        matches.extend(typed.push(c));
    }
    if flush {
        matches.extend(typed.flush());
    }
    matches
}

impl Engine {
    /// The live rules' version (0: none yet).
    pub fn version(&self) -> u32 {
        self.live.as_ref().map_or(0, |m| m.version())
    }

    /// The shadow rules' version (0: none).
    pub fn shadow_version(&self) -> u32 {
        self.shadow.as_ref().map_or(0, |m| m.version())
    }

    /// The shadow version and its counts per rule for the heartbeat: the
    /// noisiest rules when there are many.
    pub fn shadow_report(&self) -> Value {
        let mut counts: Vec<(&String, &u64)> = self.shadow_counts.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        counts.truncate(MAX_REPORTED_SHADOW_RULES);
        let counts: serde_json::Map<String, Value> = counts
            .into_iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({"version": self.shadow_version(), "counts": counts})
    }

    /// Counts one observation's shadow matches, each rule once, after the
    /// exemptions (as the native agent counts).
    fn shadow_count(&mut self, matches: Vec<Match>, now_ms: i64) {
        let mut seen: Vec<String> = Vec::new();
        for m in matches {
            if self.exempt(&m, now_ms) || seen.iter().any(|s| m.rule_id == *s) {
                continue;
            }
            *self.shadow_counts.entry(m.rule_id.to_string()).or_default() += 1;
            seen.push(m.rule_id.into());
        }
    }

    pub fn status(&self) -> Value {
        json!({
            "shadow_version": self.shadow_version(),
            "notice_version": self.notice_version,
            "rules_version": self.version(),
            "pack_id": self.live.as_ref().map(|m| m.pack_id().to_owned()),
            "terms": self.live.as_ref().map_or(0, |m| m.term_count()),
            "exemptions": self.exemptions.len(),
        })
    }

    /// Applies a `RulesUpdate` from `Rules/Subscribe`: `{bytes, bundle_key,
    /// group, now_ms}`. A refused update leaves the rules in force and says why.
    pub fn rules_update(&mut self, request: &Value) -> Result<Value, Failure> {
        let key = bytes(request, "bundle_key")?;
        if key.len() != 32 {
            return Err("the bundle key must be 32 bytes".into());
        }
        let update = RulesUpdate::decode(bytes(request, "bytes")?.as_slice())
            .map_err(|_| "the collector's rules update is not a RulesUpdate".to_owned())?;
        match update.update {
            Some(rules_update::Update::Bundle(bundle)) => {
                let refused =
                    |why: String| Ok(json!({"kind": "bundle", "applied": false, "reason": why}));
                let release = tutela_proto::release_message(
                    &sha256(&bundle.bundle),
                    bundle.version,
                    bundle.shadow,
                );
                if !verify(&key, &release, &bundle.release_signature) {
                    return refused(
                        "its release signature does not verify with the collector's bundle key"
                            .into(),
                    );
                }
                // A shadow bundle must be newer than the shadow and the live rules.
                let current = if bundle.shadow {
                    Some(self.version().max(self.shadow_version()))
                } else {
                    self.live.as_ref().map(|m| m.version())
                };
                let verified = match tutela_rules::bundle::verify(&bundle.bundle, &key, current) {
                    Ok(v) => v,
                    Err(e) => return refused(e.to_string()),
                };
                if verified.version != bundle.version {
                    return refused(format!(
                        "it is released as version {} but holds version {}",
                        bundle.version, verified.version
                    ));
                }
                let matcher = match Matcher::compile(&verified.pack, &CompileOptions::default()) {
                    Ok(m) => Arc::new(m),
                    Err(e) => return refused(e.to_string()),
                };
                let kind = if bundle.shadow { "shadow" } else { "bundle" };
                if bundle.shadow {
                    self.shadow_typed.clear();
                    self.shadow_counts.clear();
                    self.shadow = Some(matcher);
                } else {
                    self.typed.clear();
                    self.live = Some(matcher);
                    // The candidate went live (or was passed): shadow mode ends.
                    if self.shadow_version() <= verified.version {
                        self.shadow = None;
                        self.shadow_typed.clear();
                        self.shadow_counts.clear();
                    }
                }
                Ok(
                    json!({"kind": kind, "applied": true, "version": verified.version, "pack_id": verified.pack_id}),
                )
            }
            Some(rules_update::Update::Exemptions(signed)) => {
                let refused =
                    |why: &str| Ok(json!({"kind": "exemptions", "applied": false, "reason": why}));
                let message = tutela_proto::exemptions_message(&signed.body);
                if !verify(&key, &message, &signed.signature) {
                    return refused(
                        "its signature does not verify with the collector's bundle key",
                    );
                }
                let Ok(set) = ExemptionSet::decode(signed.body.as_slice()) else {
                    return refused("it is not an ExemptionSet");
                };
                let group = text(request, "group");
                if set.group != group {
                    return refused("it is for another group");
                }
                if set.issued_ms < self.exemptions_issued_ms {
                    return refused("it is older than the set held");
                }
                let now = int(request, "now_ms");
                self.exemptions_issued_ms = set.issued_ms;
                self.exemptions = set
                    .exemptions
                    .into_iter()
                    .filter_map(|e| {
                        let category = e.category.trim().to_lowercase();
                        let term = e.term.trim().to_lowercase();
                        let valid = !group.is_empty()
                            && e.group == group
                            && category.is_empty() != term.is_empty()
                            && e.ends_ms
                                .checked_sub(e.starts_ms)
                                .is_some_and(|d| d > 0 && d <= MAX_EXEMPTION_MS)
                            && e.ends_ms <= now.saturating_add(MAX_EXEMPTION_MS);
                        valid.then_some(Exemption {
                            category,
                            term,
                            starts_ms: e.starts_ms,
                            ends_ms: e.ends_ms,
                        })
                    })
                    .collect();
                Ok(json!({"kind": "exemptions", "applied": true, "count": self.exemptions.len()}))
            }
            Some(rules_update::Update::Notice(signed)) => Ok(crate::notice::apply(
                self,
                &signed,
                &key,
                &text(request, "group"),
            )),
            Some(rules_update::Update::Group(_)) => Ok(
                json!({"kind": "group", "applied": false, "reason": "the extension does not follow group moves yet; enrol it again with a token of the new group"}),
            ),
            None => Ok(
                json!({"kind": "unknown", "applied": false, "reason": "an update of a kind this extension does not know"}),
            ),
        }
    }

    fn exempt(&self, m: &Match, now_ms: i64) -> bool {
        m.severity < NEVER_EXEMPT_SEVERITY
            && self.exemptions.iter().any(|e| {
                now_ms >= e.starts_ms
                    && now_ms < e.ends_ms
                    && if e.category.is_empty() {
                        m.term.to_lowercase() == e.term
                    } else {
                        m.category == e.category
                    }
            })
    }

    /// A visited page: `{url, title, now_ms}`. The URL (its host, the URL
    /// terms and a search engine's query) and the title are matched as the
    /// native agent matches a browser visit.
    pub fn observe_page(&mut self, request: &Value) -> Result<Value, Failure> {
        let Some(matcher) = self.live.clone() else {
            return Ok(Value::Null);
        };
        let url = text(request, "url");
        let title = text(request, "title");
        let mut matches = if url.is_empty() {
            Vec::new()
        } else {
            matcher.find_url(&url)
        };
        if !title.is_empty() {
            for m in matcher.find(Scope::Title, &title) {
                if !matches.iter().any(|x| x.rule_id == m.rule_id) {
                    matches.push(m);
                }
            }
        }
        let now_ms = int(request, "now_ms");
        if let Some(shadow) = self.shadow.clone() {
            let mut would = if url.is_empty() {
                Vec::new()
            } else {
                shadow.find_url(&url)
            };
            if !title.is_empty() {
                would.extend(shadow.find(Scope::Title, &title));
            }
            self.shadow_count(would, now_ms);
        }
        let search = tutela_rules::search_query(&url).unwrap_or_default();
        Ok(self.draft(matches, now_ms, &title, &url, &search))
    }

    /// Typed text in a tab: `{tab, text, backspaces, flush, title, url,
    /// now_ms}`. `backspaces` come first, then each character of `text`;
    /// `flush` reports what is pending at the end (the pupil paused).
    pub fn typed(&mut self, request: &Value) -> Result<Value, Failure> {
        let Some(matcher) = self.live.clone() else {
            return Ok(Value::Null);
        };
        let tab = int(request, "tab");
        let (backspaces, typed_text) = (
            int(request, "backspaces").clamp(0, 4096),
            text(request, "text"),
        );
        let flush = request["flush"].as_bool().unwrap_or(false);
        let typed = self.typed.entry(tab).or_insert_with(|| matcher.typed());
        let matches = feed(typed, backspaces, &typed_text, flush);
        let now_ms = int(request, "now_ms");
        if let Some(shadow) = self.shadow.clone() {
            let typed = self
                .shadow_typed
                .entry(tab)
                .or_insert_with(|| shadow.typed());
            let would = feed(typed, backspaces, &typed_text, flush);
            self.shadow_count(would, now_ms);
        }
        let (title, url) = (text(request, "title"), text(request, "url"));
        Ok(self.draft(matches, now_ms, &title, &url, ""))
    }

    /// Forgets a tab's typed text (closed, navigated, or a sign-in page).
    pub fn typed_reset(&mut self, request: &Value) -> Result<Value, Failure> {
        self.typed.remove(&int(request, "tab"));
        self.shadow_typed.remove(&int(request, "tab"));
        Ok(Value::Null)
    }

    /// An alert's content from `matches` (none left after exemptions: null):
    /// the lead (most severe) match's context, every match's span in it,
    /// the source and how much evidence to capture.
    fn draft(
        &self,
        matches: Vec<Match>,
        now_ms: i64,
        title: &str,
        url: &str,
        search: &str,
    ) -> Value {
        let mut matches: Vec<Match> = matches
            .into_iter()
            .filter(|m| !self.exempt(m, now_ms))
            .collect();
        if matches.is_empty() {
            return Value::Null;
        }
        matches.sort_by_key(|m| std::cmp::Reverse(m.severity));
        let lead = &matches[0];
        let source = match lead.scope {
            Scope::Typed => Source::Typed,
            Scope::Title => Source::Title,
            Scope::Url => Source::Url,
            Scope::Search => Source::Search,
            Scope::Process => Source::Process,
        };
        let capture = matches.iter().map(|m| m.capture).max().unwrap_or_default();
        let listed: Vec<Value> = matches
            .iter()
            .map(|m| {
                let (start, end) = if m.context == lead.context {
                    (m.context_span.start, m.context_span.end)
                } else {
                    (0, 0)
                };
                json!({"rule_id": m.rule_id, "category": m.category, "severity": m.severity,
                       "term": m.term, "start": start, "end": end})
            })
            .collect();
        json!({
            "source": source as i32,
            "context": lead.context,
            "window_title": title,
            "url": url,
            "search_query": search,
            "matches": listed,
            "severity": lead.severity,
            "capture": capture.as_str(),
            "rules_version": self.version(),
        })
    }
}
