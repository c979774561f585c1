//! Rule publication: signed bundles (live and shadow), the rule ids of each
//! shadow candidate and the would-be-match counts agents report for it, and
//! what every agent should hold right now (read by `subscription`). The
//! rules (linting, versions, limits on what an agent may make us store)
//! live in `publish`; the SQL in `sqlite/publication.rs` and
//! `postgres/publication.rs`.

use std::collections::{HashMap, HashSet};

use tutela_proto::v1::SignedNotice;

use super::exemption::{AuditNote, Exemption};
use super::{Store, StoreError};

/// The PostgreSQL channel every change agents must hear of (a publication,
/// an exemption, a notice) is announced on, in the transaction that makes it.
pub const CHANNEL: &str = "tutela_publication";

/// A published bundle: its version, signed bytes and the pack's text.
#[derive(Debug, Clone)]
pub struct BundleRow {
    pub version: u32,
    pub bundle: Vec<u8>,
    pub pack_toml: String,
}

/// A bundle being published.
#[derive(Debug, Clone)]
pub struct NewBundle<'a> {
    pub pack_id: &'a str,
    pub version: u32,
    pub shadow: bool,
    pub bundle: &'a [u8],
    pub pack_toml: &'a str,
    pub published_ms: i64,
    /// For a shadow candidate: the rule ids its agents may report counts for.
    pub shadow_rule_ids: &'a [String],
}

/// Why a bundle was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored,
    /// A version at or above it is published (checked again under the
    /// store's lock: another collector may have published meanwhile).
    NotNewerThan(u32),
}

/// Per-rule would-be matches of a shadow version across agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowTotal {
    pub rule_id: String,
    pub count: i64,
    pub agents: i64,
}

/// The rules version an agent last reported.
#[derive(Debug, Clone)]
pub struct AgentRules {
    pub agent_id: String,
    pub station: String,
    pub rules_version: i64,
}

/// What agents should hold, as the subscription reader compares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublicationState {
    pub live: Option<u32>,
    pub shadow: Option<u32>,
    /// Exemptions in force or still to come (not revoked, not ended).
    pub exemptions: Vec<Exemption>,
    pub revoked: HashSet<String>,
    /// The current notice of each (group, school) that has one, as
    /// signed: (group, school ('': the trust's), notice).
    pub notices: Vec<(String, String, SignedNotice)>,
    /// Agents moved to another group or school, with (group, school).
    pub moves: HashMap<String, (String, String)>,
}

/// Most shadow rule ids recorded per heartbeat (a bound on what an agent can make us store).
pub const MAX_SHADOW_RULES: usize = 2000;
/// Most runs (agent starts) recorded per agent and shadow version.
pub const MAX_SHADOW_RUNS: i64 = 50;
/// Distinct rule ids kept per agent and shadow version (a pack has a few
/// thousand rules at most), and the largest count believed for one.
pub const MAX_SHADOW_RULE_IDS: i64 = 5000;
pub const MAX_SHADOW_COUNT: i64 = 1_000_000_000;
/// Longest run id accepted (agents send 16 hex digits).
pub const MAX_RUN_ID_LEN: usize = 64;

impl Store {
    /// The newest published bundle of a kind (live or shadow).
    pub async fn latest_bundle(&self, shadow: bool) -> Result<Option<BundleRow>, StoreError> {
        backend!(self, s => super::sqlite::publication::latest(&s.conn(), shadow), s.latest_bundle(shadow).await)
    }

    /// The signed bytes of bundle `version` of a kind.
    pub async fn bundle(&self, shadow: bool, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        backend!(self, s => super::sqlite::publication::bundle(&s.conn(), shadow, version), s.bundle(shadow, version).await)
    }

    /// Stores a bundle (with a shadow candidate's rule ids), drops what
    /// older candidates left, and tells every collector's agents.
    pub async fn publish_bundle(&self, new: &NewBundle<'_>) -> Result<Published, StoreError> {
        backend!(self, s => super::sqlite::publication::insert(&s.conn(), new, None), s.publish_bundle(new, None).await)
    }

    /// As [`Store::publish_bundle`], with `note` written to the audit log in
    /// the same transaction (nothing is written when the bundle is refused).
    pub async fn publish_bundle_audited(
        &self,
        new: &NewBundle<'_>,
        note: &AuditNote,
    ) -> Result<Published, StoreError> {
        backend!(self, s => super::sqlite::publication::insert(&s.conn(), new, Some(note)), s.publish_bundle(new, Some(note)).await)
    }

    /// Shadow `version`'s counts per rule, noisiest first, and how many agents report it.
    pub async fn shadow_totals(&self, version: u32) -> Result<(Vec<ShadowTotal>, i64), StoreError> {
        backend!(self, s => super::sqlite::publication::shadow_totals(&s.conn(), version), s.shadow_totals(version).await)
    }

    /// Every agent's reported rules version, by station.
    pub async fn agents_rules(&self) -> Result<Vec<AgentRules>, StoreError> {
        backend!(self, s => super::sqlite::publication::agents_rules(&s.conn()), s.agents_rules().await)
    }

    /// What agents should hold at `now_ms`.
    pub async fn publication_state(&self, now_ms: i64) -> Result<PublicationState, StoreError> {
        backend!(self, s => super::sqlite::publication::state(&s.conn(), now_ms), s.publication_state(now_ms).await)
    }
}

impl Store {
    /// A counter that moves whenever another collector (or this one)
    /// announces a change, and when the listening connection is made again
    /// (notifications may have been missed meanwhile). `None` on the
    /// embedded store, where only this process and the CLI write. Starts a
    /// task on the current runtime.
    pub fn announcements(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            Self::Sqlite(_) => None,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => Some(s.listen()),
        }
    }
}
