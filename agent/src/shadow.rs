//! Shadow mode: a candidate pack runs beside the live one on the same
//! observations. Its would-be matches are counted per rule id and reported
//! in the heartbeat — counts only, never text — and it never raises an alert,
//! so the technician sees the predicted alert volume and the noisiest rules
//! before publishing the pack live.
//!
//! Counts live in memory and start from zero when the agent starts, so each
//! run of the agent tags its counts with a run id, random at start: the
//! collector keeps the latest figure per (agent, shadow version, run) and
//! adds the runs up, so a restart never loses what was already reported.

use std::collections::HashMap;

/// Most rules one heartbeat reports shadow counts for.
pub const MAX_REPORTED_RULES: usize = 1000;
use std::sync::{Arc, Mutex, RwLock};

use tutela_rules::{Match, Matcher};

/// File keeping the last applied shadow bundle.
pub const SHADOW_BUNDLE_FILE: &str = "rules-shadow.bundle";

#[derive(Debug, Default)]
struct Counts {
    version: u32,
    by_rule: HashMap<String, u64>,
}

/// The shadow matcher (if any) and its counts, shared by the rules sync,
/// the monitor and the heartbeat.
#[derive(Debug, Clone)]
pub struct Shadow {
    matcher: Arc<RwLock<Option<Arc<Matcher>>>>,
    counts: Arc<Mutex<Counts>>,
    /// This run of the agent (random, made at start; shared by clones).
    run: Arc<str>,
}

impl Default for Shadow {
    fn default() -> Self {
        Self {
            matcher: Arc::default(),
            counts: Arc::default(),
            run: new_run_id().into(),
        }
    }
}

/// 8 random bytes as hex: unique per agent start.
fn new_run_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

impl Shadow {
    /// This run's id, sent with the counts so that the collector adds up
    /// the counts of successive runs instead of mistaking a restart's
    /// smaller figures for old news.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The shadow matcher in force, if any.
    pub fn matcher(&self) -> Option<Arc<Matcher>> {
        self.matcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Version of the shadow pack in force (0: none).
    pub fn version(&self) -> u32 {
        self.matcher().map(|m| m.version()).unwrap_or(0)
    }

    /// Starts running `matcher` in shadow; counts start from zero.
    pub fn set(&self, matcher: Matcher) {
        let version = matcher.version();
        *self.matcher.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(matcher));
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = Counts {
            version,
            by_rule: HashMap::new(),
        };
    }

    /// Stops shadow mode (the candidate went live, or was superseded).
    pub fn clear(&self) {
        *self.matcher.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = Counts::default();
    }

    /// Counts the would-be matches of one observation (each rule once).
    pub fn count(&self, version: u32, matches: &[Match]) {
        if matches.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.version != version {
            return;
        }
        let mut seen: Vec<&str> = Vec::with_capacity(matches.len());
        for m in matches {
            if seen.contains(&m.rule_id.as_str()) {
                continue;
            }
            seen.push(&m.rule_id);
            *counts.by_rule.entry(m.rule_id.to_string()).or_default() += 1;
        }
        tracing::debug!(
            version,
            rules = seen.len(),
            "shadow pack would have matched"
        );
    }

    /// (version, counts per rule id) for the heartbeat.
    /// The shadow version and its counts per rule, for the heartbeat: at
    /// most `MAX_REPORTED_RULES` rules, the noisiest, so the heartbeat stays
    /// well inside the collector's size limit.
    pub fn snapshot(&self) -> (u32, HashMap<String, u64>) {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.by_rule.len() <= MAX_REPORTED_RULES {
            return (counts.version, counts.by_rule.clone());
        }
        let mut all: Vec<(&String, &u64)> = counts.by_rule.iter().collect();
        all.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        tracing::warn!(
            rules = all.len(),
            reported = MAX_REPORTED_RULES,
            "shadow pack matched more rules than a heartbeat reports; sending the noisiest"
        );
        let top = all
            .into_iter()
            .take(MAX_REPORTED_RULES)
            .map(|(rule, n)| (rule.clone(), *n))
            .collect();
        (counts.version, top)
    }
}
