//! Shadow mode: a candidate pack runs beside the live one on the same
//! observations. Its would-be matches are counted per rule id and reported
//! in the heartbeat — counts only, never text — and it never raises an alert,
//! so the technician sees the predicted alert volume and the noisiest rules
//! before publishing the pack live.

use std::collections::HashMap;
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
#[derive(Debug, Clone, Default)]
pub struct Shadow {
    matcher: Arc<RwLock<Option<Arc<Matcher>>>>,
    counts: Arc<Mutex<Counts>>,
}

impl Shadow {
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
            *counts.by_rule.entry(m.rule_id.clone()).or_default() += 1;
        }
        tracing::debug!(
            version,
            rules = seen.len(),
            "shadow pack would have matched"
        );
    }

    /// (version, counts per rule id) for the heartbeat.
    pub fn snapshot(&self) -> (u32, HashMap<String, u64>) {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (counts.version, counts.by_rule.clone())
    }
}
