//! Curriculum exemptions on the agent: the collector sends the exemptions
//! for this device's group (e.g. Year 10 PSHE on drugs this week); a match
//! of an exempt category or term raises no alert while the exemption runs.
//!
//! Exemptions silence alerts, so they are trusted like rule bundles: a set is
//! applied only when signed by the collector's bundle key, for this device's
//! group, and no older than the set held. It is kept on disk as the signed
//! bytes (checked again on load) with each end time, so it lapses on time by
//! itself even when the collector cannot be reached. Severity 5 matches
//! (immediate risk to life) are never silenced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use tutela_proto::v1::{ExemptionSet, SignedExemptions};
use tutela_rules::Match;

use crate::identity::write_private;

const FILE: &str = "exemptions.toml";

/// Matches at or above this severity are alerted whatever the exemptions say.
pub const NEVER_EXEMPT_SEVERITY: u8 = 5;

/// The longest exemption an agent honours (the collector allows no longer).
pub const MAX_DURATION_MS: i64 = 16 * 7 * 86_400_000;

/// Why a set from the collector was refused; the set held stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ExemptionError {
    #[error("the exemption set's signature does not verify against the collector's bundle key")]
    BadSignature,
    #[error("the exemption set is not a valid tutela.v1.ExemptionSet")]
    Malformed,
    #[error("the exemption set is for group {offered:?}, not this device's group {own:?}")]
    OtherGroup { offered: String, own: String },
    #[error("the exemption set was issued at {offered} ms, before the set held ({held} ms)")]
    Older { offered: i64, held: i64 },
}

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
        if now_ms < self.starts_ms || now_ms >= self.ends_ms || m.severity >= NEVER_EXEMPT_SEVERITY
        {
            return false;
        }
        if !self.category.is_empty() {
            m.category.eq_ignore_ascii_case(&self.category)
        } else {
            !self.term.is_empty() && m.term.to_lowercase() == self.term
        }
    }

    /// Exactly one of category or term, for `group`, and no longer than the
    /// collector allows; anything else is dropped (fail closed).
    fn valid_for(&self, group: &str, now_ms: i64) -> bool {
        !group.is_empty()
            && self.group == group
            && (self.category.is_empty() != self.term.is_empty())
            && self
                .ends_ms
                .checked_sub(self.starts_ms)
                .is_some_and(|d| d > 0 && d <= MAX_DURATION_MS)
            && self.ends_ms <= now_ms.saturating_add(MAX_DURATION_MS)
    }
}

/// What is kept on disk: the signed set, as received.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    body: String,
    signature: String,
}

#[derive(Debug, Default)]
struct Held {
    issued_ms: i64,
    list: Vec<Exemption>,
}

/// The exemptions this agent holds, shared with the monitor.
#[derive(Debug, Clone)]
pub struct Exemptions {
    /// This device's group: set at enrolment, changed when the collector
    /// sends a signed group assignment (see `rules_sync`).
    group: Arc<RwLock<String>>,
    path: PathBuf,
    /// The collector's bundle key (Ed25519 public key).
    key: Vec<u8>,
    held: Arc<RwLock<Held>>,
}

impl Exemptions {
    /// Loads the saved set for `group` from `data_dir`, checking its
    /// signature with `bundle_key` (empty if none or if it does not verify).
    pub fn load(data_dir: &Path, group: &str, bundle_key: &[u8]) -> Self {
        let this = Self {
            group: Arc::new(RwLock::new(group.to_owned())),
            path: data_dir.join(FILE),
            key: bundle_key.to_vec(),
            held: Arc::default(),
        };
        let saved = std::fs::read_to_string(&this.path)
            .ok()
            .and_then(|text| toml::from_str::<Saved>(&text).ok())
            .and_then(|s| {
                Some(SignedExemptions {
                    body: hex::decode(s.body).ok()?,
                    signature: hex::decode(s.signature).ok()?,
                })
            });
        if let Some(signed) = saved {
            match this.check(&signed) {
                Ok(set) => this.set(set),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the saved exemptions; the collector sends them again")
                }
            }
        }
        this
    }

    /// Verifies a signed set and decodes it; it must be for this group and
    /// no older than the set held.
    fn check(&self, signed: &SignedExemptions) -> Result<ExemptionSet, ExemptionError> {
        let mut message = tutela_proto::EXEMPTIONS_DOMAIN.to_vec();
        message.extend_from_slice(&signed.body);
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&message, &signed.signature)
            .map_err(|_| ExemptionError::BadSignature)?;
        let set =
            ExemptionSet::decode(signed.body.as_slice()).map_err(|_| ExemptionError::Malformed)?;
        // (A device without a group receives an empty set; entries are only
        // ever applied for a named group, see `valid_for`.)
        let own = self.group();
        if set.group != own {
            return Err(ExemptionError::OtherGroup {
                offered: set.group,
                own,
            });
        }
        let held = self
            .held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .issued_ms;
        if set.issued_ms < held {
            return Err(ExemptionError::Older {
                offered: set.issued_ms,
                held,
            });
        }
        Ok(set)
    }

    /// This device's group.
    pub fn group(&self) -> String {
        self.group.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The device moved to `group`: the exemptions held (the old group's)
    /// stop applying at once, and the new group's set is accepted from now.
    pub fn move_to(&self, group: &str) {
        *self.group.write().unwrap_or_else(|p| p.into_inner()) = group.to_owned();
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = Held::default();
        let _ = std::fs::remove_file(&self.path);
        tracing::info!(group, "curriculum exemptions now follow the new group");
    }

    fn set(&self, set: ExemptionSet) {
        let now = crate::session::now_ms();
        let group = self.group();
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
            .filter(|e| {
                let ok = e.valid_for(&group, now);
                if !ok {
                    tracing::warn!(id = e.id, "dropping a malformed or over-long exemption");
                }
                ok && e.ends_ms > now
            })
            .collect();
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = Held {
            issued_ms: set.issued_ms,
            list,
        };
    }

    /// Applies a set the collector sent, if it verifies, and keeps it on disk.
    /// A refused set leaves the held one in force.
    pub fn accept(&self, signed: SignedExemptions) -> Result<(), ExemptionError> {
        let set = self.check(&signed)?;
        self.set(set);
        let held = self
            .held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .clone();
        for e in &held {
            tracing::info!(id = e.id, group = %e.group, category = %e.category, starts_ms = e.starts_ms, ends_ms = e.ends_ms, "curriculum exemption held");
        }
        let text = toml::to_string(&Saved {
            body: hex::encode(&signed.body),
            signature: hex::encode(&signed.signature),
        })
        .expect("exemptions serialise");
        if let Err(e) = write_private(&self.path, text.as_bytes()) {
            tracing::warn!(error = %e, "could not keep the exemptions on disk");
        }
        tracing::info!(count = held.len(), "curriculum exemptions updated");
        Ok(())
    }

    /// The exemption covering `m` now, if any.
    pub fn covering(&self, m: &Match, now_ms: i64) -> Option<i64> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
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
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use tutela_proto::v1::Exemption as Wire;

    fn matched(category: &str, term: &str, severity: u8) -> Match {
        Match {
            rule_id: format!("{category}/{term}").into(),
            category: category.into(),
            severity,
            term: term.into(),
            scope: tutela_rules::Scope::Title,
            span: 0..1,
            context: "".into(),
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

    fn signed(
        key: &Identity,
        group: &str,
        issued_ms: i64,
        exemptions: Vec<Wire>,
    ) -> SignedExemptions {
        let body = ExemptionSet {
            exemptions,
            group: group.into(),
            issued_ms,
        }
        .encode_to_vec();
        let mut message = tutela_proto::EXEMPTIONS_DOMAIN.to_vec();
        message.extend_from_slice(&body);
        SignedExemptions {
            signature: key.sign(&message),
            body,
        }
    }

    #[test]
    fn a_window_whose_length_overflows_is_refused() {
        let now = 1_767_000_000_000;
        let e = |starts_ms: i64, ends_ms: i64| Exemption {
            id: 1,
            group: "year-9".into(),
            category: "drugs".into(),
            term: String::new(),
            starts_ms,
            ends_ms,
        };
        assert!(e(now, now + 3_600_000).valid_for("year-9", now));
        // ends - starts does not fit in an i64: wrapped, it would look short.
        assert!(!e(i64::MIN, now).valid_for("year-9", now));
        assert!(!e(i64::MIN + 1, now + 3_600_000).valid_for("year-9", now));
        assert!(!e(now, now).valid_for("year-9", now));
        assert!(!e(now, now - 1).valid_for("year-9", now));
    }

    #[test]
    fn applies_to_its_group_and_window_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Identity::generate();
        let key = collector.public_key().to_vec();
        let now = crate::session::now_ms();
        let held = Exemptions::load(dir.path(), "year-10", &key);
        held.accept(signed(
            &collector,
            "year-10",
            now,
            vec![
                wire(1, "year-10", "Drugs", "", now - 1000, now + 60_000),
                wire(2, "year-10", "", "Zip Gun", now - 1000, now + 60_000),
                wire(3, "year-11", "weapons", "", now - 1000, now + 60_000),
                wire(4, "year-10", "selfharm", "", now - 2000, now - 1000),
                // Both a category and a term: malformed, dropped (fail closed).
                wire(5, "year-10", "gambling", "poker", now - 1000, now + 60_000),
                // Longer than the collector allows: dropped.
                wire(
                    6,
                    "year-10",
                    "violence",
                    "",
                    now - 1000,
                    now + MAX_DURATION_MS + 1,
                ),
            ],
        ))
        .unwrap();
        assert_eq!(
            held.len(),
            2,
            "other groups', ended, malformed and over-long exemptions are not held"
        );
        assert_eq!(
            held.covering(&matched("drugs", "cannabis", 3), now),
            Some(1)
        );
        assert_eq!(
            held.covering(&matched("weapons", "zip gun", 4), now),
            Some(2)
        );
        assert_eq!(
            held.covering(&matched("weapons", "pipe bomb", 4), now),
            None
        );
        assert_eq!(held.covering(&matched("gambling", "poker", 2), now), None);
        // Immediate risk is never silenced.
        assert_eq!(held.covering(&matched("drugs", "overdose", 5), now), None);
        // It lapses by itself at its end, and does not apply before its start.
        assert_eq!(
            held.covering(&matched("drugs", "cannabis", 3), now + 60_000),
            None
        );
        assert_eq!(
            held.covering(&matched("drugs", "cannabis", 3), now - 1001),
            None
        );
        let reloaded = Exemptions::load(dir.path(), "year-10", &key);
        assert_eq!(
            reloaded.covering(&matched("drugs", "cannabis", 3), now),
            Some(1)
        );
        assert!(Exemptions::load(dir.path(), "year-11", &key).is_empty());
        // A saved set that no longer verifies (another key) is not applied.
        let other = Identity::generate();
        assert!(Exemptions::load(dir.path(), "year-10", other.public_key()).is_empty());
    }

    #[test]
    fn refuses_forged_foreign_and_older_sets_and_keeps_the_held_one() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Identity::generate();
        let now = crate::session::now_ms();
        let held = Exemptions::load(dir.path(), "year-10", collector.public_key());
        let drugs = || vec![wire(1, "year-10", "drugs", "", now - 1000, now + 60_000)];
        held.accept(signed(&collector, "year-10", now, drugs()))
            .unwrap();

        let forger = Identity::generate();
        let forged = signed(&forger, "year-10", now + 1, vec![]);
        assert!(matches!(
            held.accept(forged),
            Err(ExemptionError::BadSignature)
        ));

        let mut tampered = signed(&collector, "year-10", now + 1, vec![]);
        tampered.body.push(0);
        assert!(matches!(
            held.accept(tampered),
            Err(ExemptionError::BadSignature)
        ));

        let foreign = signed(&collector, "year-11", now + 1, vec![]);
        assert!(matches!(
            held.accept(foreign),
            Err(ExemptionError::OtherGroup { .. })
        ));

        let older = signed(&collector, "year-10", now - 1, vec![]);
        assert!(matches!(
            held.accept(older),
            Err(ExemptionError::Older { .. })
        ));

        assert_eq!(
            held.covering(&matched("drugs", "cannabis", 3), now),
            Some(1)
        );
        // A newer signed set (here: the exemption revoked) replaces it.
        held.accept(signed(&collector, "year-10", now + 1, vec![]))
            .unwrap();
        assert!(held.is_empty());
    }
}
