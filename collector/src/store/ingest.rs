//! Events (alerts) and their chains: the rows both backends store.

use tutela_proto::v1::{EventBody, RuleMatch};

/// Where an agent's chain stands, read (and, on a shared store, locked)
/// in the transaction that stores its next events.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub revoked: bool,
    pub last_seq: u64,
    pub last_hash: [u8; 32],
}

impl Standing {
    pub(crate) fn from_row(revoked: bool, last_seq: i64, last_hash: Option<Vec<u8>>) -> Self {
        Self {
            revoked,
            last_seq: last_seq.max(0) as u64,
            last_hash: last_hash
                .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                .unwrap_or([0; 32]),
        }
    }
}

/// A verified event as stored.
#[derive(Debug)]
pub struct AlertRow<'a> {
    pub event: &'a EventBody,
    pub body: &'a [u8],
    pub signature: &'a [u8],
    pub body_hash: &'a [u8; 32],
    /// The capture, already encrypted.
    pub sealed_capture: Option<&'a [u8]>,
    /// The object holding the sealed capture, when it is in object storage
    /// (`sealed_capture` is then empty).
    pub capture_key: Option<&'a str>,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub chain_ok: bool,
}

/// The columns derived from an event, shared by both backends.
#[derive(Debug)]
pub(crate) struct Derived<'a> {
    pub source: &'static str,
    pub context: &'a str,
    pub app: &'a str,
    pub app_path: &'a str,
    pub window_title: &'a str,
    pub url: &'a str,
    pub search_query: &'a str,
    pub category: &'a str,
    pub severity: i64,
    pub rule_id: &'a str,
    pub term: &'a str,
    /// Every match, as JSON.
    pub matches: String,
    pub state: &'static str,
}

static EMPTY: std::sync::LazyLock<tutela_proto::v1::Observation> =
    std::sync::LazyLock::new(Default::default);

impl<'a> AlertRow<'a> {
    pub(crate) fn derived(&self) -> Derived<'a> {
        let e = self.event;
        let obs = e.observation.as_ref().unwrap_or(&EMPTY);
        let top = e.matches.iter().max_by_key(|m| m.severity);
        Derived {
            source: crate::source_name(obs.source),
            context: &obs.context,
            app: &obs.app,
            app_path: &obs.app_path,
            window_title: &obs.window_title,
            url: &obs.url,
            search_query: &obs.search_query,
            category: top.map(|m| m.category.as_str()).unwrap_or(""),
            severity: top.map(|m| m.severity as i64).unwrap_or(0),
            rule_id: top.map(|m| m.rule_id.as_str()).unwrap_or(""),
            term: top.map(|m| m.term.as_str()).unwrap_or(""),
            matches: serde_json::to_string(
                &e.matches.iter().map(MatchRow::from).collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            state: if e.repeat_of.is_empty() {
                "new"
            } else {
                "folded"
            },
        }
    }
}

/// One match as the `matches` column stores it (JSON).
#[derive(serde::Serialize)]
struct MatchRow<'a> {
    rule_id: &'a str,
    category: &'a str,
    severity: u32,
    term: &'a str,
    start: u32,
    end: u32,
}

impl<'a> From<&'a RuleMatch> for MatchRow<'a> {
    fn from(m: &'a RuleMatch) -> Self {
        Self {
            rule_id: &m.rule_id,
            category: &m.category,
            severity: m.severity,
            term: &m.term,
            start: m.start,
            end: m.end,
        }
    }
}
