//! Curriculum exemptions on the agent: the collector sends the exemptions
//! for this device's group (e.g. Year 10 PSHE on drugs this week); a match
//! of an exempt category or term raises no alert while the exemption runs.
//! Each exemption is kept on disk with its end time, so it lapses on time by
//! itself even when the collector cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tutela_proto::v1::ExemptionSet;
use tutela_rules::Match;

use crate::identity::write_private;

const FILE: &str = "exemptions.toml";

/// One exemption as the agent applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    pub id: i64,
    pub group: String,
    /// Exempt category (lower case), or empty when a term is exempt.
    pub category: String,
    /// Exempt term (lower case), or empty when a category is exempt.
    pub term: String,
    pub starts_ms: i64,
    pub ends_ms: i64,
}

impl Exemption {
    /// Whether this exemption covers `m` at `now_ms`.
    pub fn covers(&self, m: &Match, now_ms: i64) -> bool {
        if now_ms < self.starts_ms || now_ms >= self.ends_ms {
            return false;
        }
        if !self.category.is_empty() {
            m.category.eq_ignore_ascii_case(&self.category)
        } else {
            !self.term.is_empty() && m.term.to_lowercase() == self.term
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    exemption: Vec<Exemption>,
}

/// The exemptions this agent holds, shared with the monitor.
#[derive(Debug, Clone)]
pub struct Exemptions {
    group: String,
    path: PathBuf,
    list: Arc<RwLock<Vec<Exemption>>>,
}

impl Exemptions {
    /// Loads the saved set for `group` from `data_dir` (empty if none).
    pub fn load(data_dir: &Path, group: &str) -> Self {
        let path = data_dir.join(FILE);
        let list = match std::fs::read_to_string(&path) {
            Ok(text) => match toml::from_str::<Saved>(&text) {
                Ok(s) => s.exemption,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable exemptions file; the collector sends it again");
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        let this = Self {
            group: group.to_owned(),
            path,
            list: Arc::new(RwLock::new(Vec::new())),
        };
        this.set(list);
        this
    }

    fn set(&self, list: Vec<Exemption>) {
        let now = crate::session::now_ms();
        let list: Vec<Exemption> = list
            .into_iter()
            .filter(|e| e.group == self.group && !self.group.is_empty() && e.ends_ms > now)
            .collect();
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// Replaces the set with the one the collector sent, and keeps it on disk.
    pub fn replace(&self, set: ExemptionSet) {
        let list: Vec<Exemption> = set
            .exemptions
            .into_iter()
            .map(|e| Exemption {
                id: e.id,
                group: e.group,
                category: e.category.trim().to_lowercase(),
                term: e.term.trim().to_lowercase(),
                starts_ms: e.starts_ms,
                ends_ms: e.ends_ms,
            })
            .collect();
        self.set(list);
        let held = self.list.read().unwrap_or_else(|p| p.into_inner()).clone();
        for e in &held {
            tracing::info!(id = e.id, group = %e.group, category = %e.category, starts_ms = e.starts_ms, ends_ms = e.ends_ms, "curriculum exemption held");
        }
        let text = toml::to_string(&Saved {
            exemption: held.clone(),
        })
        .expect("exemptions serialise");
        if let Err(e) = write_private(&self.path, text.as_bytes()) {
            tracing::warn!(error = %e, "could not keep the exemptions on disk");
        }
        tracing::info!(count = held.len(), "curriculum exemptions updated");
    }

    /// The exemption covering `m` now, if any.
    pub fn covering(&self, m: &Match, now_ms: i64) -> Option<i64> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| e.covers(m, now_ms))
            .map(|e| e.id)
    }

    /// The monitor's exemption hook: true drops the match (logged, without content).
    pub fn hook(&self) -> Arc<dyn Fn(&Match) -> bool + Send + Sync> {
        let this = self.clone();
        Arc::new(
            move |m: &Match| match this.covering(m, crate::session::now_ms()) {
                Some(id) => {
                    tracing::info!(exemption = id, rule_id = %m.rule_id, "match not alerted: curriculum exemption");
                    true
                }
                None => false,
            },
        )
    }

    pub fn len(&self) -> usize {
        self.list.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutela_proto::v1::Exemption as Wire;

    fn matched(category: &str, term: &str) -> Match {
        Match {
            rule_id: format!("{category}/{term}"),
            category: category.into(),
            severity: 3,
            term: term.into(),
            scope: tutela_rules::Scope::Title,
            span: 0..1,
            context: String::new(),
            context_span: 0..1,
            capture: tutela_rules::CaptureMode::None,
        }
    }

    fn wire(id: i64, group: &str, category: &str, term: &str, starts: i64, ends: i64) -> Wire {
        Wire {
            id,
            group: group.into(),
            category: category.into(),
            term: term.into(),
            starts_ms: starts,
            ends_ms: ends,
        }
    }

    #[test]
    fn applies_to_its_group_and_window_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::session::now_ms();
        let held = Exemptions::load(dir.path(), "year-10");
        held.replace(ExemptionSet {
            exemptions: vec![
                wire(1, "year-10", "Drugs", "", now - 1000, now + 60_000),
                wire(2, "year-10", "", "Zip Gun", now - 1000, now + 60_000),
                wire(3, "year-11", "weapons", "", now - 1000, now + 60_000),
                wire(4, "year-10", "selfharm", "", now - 2000, now - 1000),
            ],
        });
        assert_eq!(
            held.len(),
            2,
            "other groups' and ended exemptions are not held"
        );
        assert_eq!(held.covering(&matched("drugs", "cannabis"), now), Some(1));
        assert_eq!(held.covering(&matched("weapons", "zip gun"), now), Some(2));
        assert_eq!(held.covering(&matched("weapons", "pipe bomb"), now), None);
        // It lapses by itself at its end, and does not apply before its start.
        assert_eq!(
            held.covering(&matched("drugs", "cannabis"), now + 60_000),
            None
        );
        assert_eq!(
            held.covering(&matched("drugs", "cannabis"), now - 1001),
            None
        );
        let reloaded = Exemptions::load(dir.path(), "year-10");
        assert_eq!(
            reloaded.covering(&matched("drugs", "cannabis"), now),
            Some(1)
        );
        assert!(Exemptions::load(dir.path(), "year-11").is_empty());
    }
}
