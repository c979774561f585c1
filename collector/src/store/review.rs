//! Alerts as the review console reads them, and their review: state
//! changes with their history, assignment, notes and capture reveals.
//! Every change is one unit of work with its audit entry.

/// Review states in workflow order, with their labels.
pub const STATES: [(&str, &str); 6] = [
    ("new", "New"),
    ("in_review", "In review"),
    ("escalated", "Escalated"),
    ("actioned", "Actioned"),
    ("closed", "Closed"),
    ("false_positive", "False positive"),
];

/// The states a queue counts as open.
pub const OPEN_STATES: [&str; 4] = ["new", "in_review", "escalated", "actioned"];

/// Which alerts a viewer may see: those of the schools their grant covers
/// (`school`); of those, alerts about staff accounts go to the head teacher
/// only, everyone else sees alerts about pupils. An account is staff when it
/// is in the imported staff list or its name matches `pattern` (a glob,
/// lower case; empty: none). Pupils' reports are never staff alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub staff: bool,
    pub pattern: String,
    pub school: super::schools::Scope,
}

/// Which review states a queue shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFilter {
    Open,
    All,
    /// One of [`STATES`].
    One(&'static str),
}

impl StateFilter {
    /// `open`, `all` or a state's name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "all" => Some(Self::All),
            s => STATES
                .iter()
                .find(|(k, _)| *k == s)
                .map(|(k, _)| Self::One(k)),
        }
    }
}

/// The queue's filters. Empty strings and `None` filter nothing.
#[derive(Debug, Clone)]
pub struct AlertFilter {
    pub scope: Scope,
    pub category: String,
    /// Minimum severity, 0 for any.
    pub min_severity: i64,
    /// Account name, any case.
    pub pupil: String,
    /// Station name, any case.
    pub station: String,
    pub from_ms: Option<i64>,
    pub before_ms: Option<i64>,
    /// Text anywhere in who, where and what (literal, any case).
    pub search: String,
    pub state: StateFilter,
}

/// A position in the queue's order: severity, then time, then id, all
/// descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub severity: i64,
    pub time_ms: i64,
    pub id: i64,
}

/// Which way a keyset query walks from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Rows after the cursor, in queue order.
    Forward,
    /// Rows before the cursor, nearest first (reverse queue order).
    Backward,
}

/// One row of the queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: i64,
    pub time_ms: i64,
    pub user: String,
    pub station: String,
    pub source: String,
    pub category: String,
    pub severity: i64,
    pub rule_id: String,
    pub term: String,
    pub state: String,
    pub repeats: i64,
    pub has_capture: bool,
    /// The first 160 characters.
    pub context: String,
    pub assignee: String,
    /// The school it belongs to (its time is shown in that school's zone).
    pub school: String,
}

/// A stored alert with everything the console shows.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: i64,
    pub event_id: String,
    pub agent_id: String,
    pub seq: i64,
    pub time_ms: i64,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub chain_ok: bool,
    pub user: String,
    pub station: String,
    pub source: String,
    pub context: String,
    pub app: String,
    pub window_title: String,
    pub url: String,
    pub search_query: String,
    pub category: String,
    pub severity: i64,
    pub rule_id: String,
    pub term: String,
    pub matches: String,
    pub rules_version: i64,
    pub repeats: i64,
    pub has_capture: bool,
    pub state: String,
    pub repeat_of: String,
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub body_hash: Vec<u8>,
    pub assignee: String,
    pub fp_reason: String,
    /// Protocol version the signature was made under (1: over the bare
    /// body; 2: over the event domain and the body).
    pub signed_as: i64,
    /// The school it belongs to (its agent's, or its report form's).
    pub school: String,
}

/// Which alerts `alerts list` shows: every viewer scope at once (the
/// command line is the operator's), oldest first.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub agent_id: Option<String>,
    /// Include folded repeats and extra burst shots (normally shown within their alert).
    pub include_folded: bool,
    pub limit: Option<u64>,
}

/// An alert in a pupil's timeline.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    pub id: i64,
    pub time_ms: i64,
    pub category: String,
    pub severity: i64,
    pub state: String,
    /// The alert's school (its time shows in that school's zone).
    pub school: String,
}

/// A rule's alerts and false positives.
#[derive(Debug, Clone)]
pub struct RuleRate {
    pub rule_id: String,
    pub category: String,
    pub total: i64,
    pub false_positives: i64,
}

/// (time, author, text)
pub type Note = (i64, String, String);

/// (time, actor, from state, to state, reason)
pub type HistoryEntry = (i64, String, String, String, String);

/// A move of one alert from one state to another, checked by the console's
/// workflow; the store applies it only if the alert is still in `from`.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub alert_id: i64,
    pub from: &'a str,
    pub to: &'a str,
    /// Trimmed; kept as the false-positive reason when `to` is one.
    pub reason: &'a str,
}

/// The audit detail of a state change.
pub fn transition_detail(t: &Transition<'_>) -> String {
    format!(
        "{} -> {}{}",
        t.from,
        t.to,
        if t.reason.is_empty() {
            String::new()
        } else {
            format!("; reason: {}", t.reason)
        }
    )
}
