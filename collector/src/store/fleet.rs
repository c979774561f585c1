//! Stations as the console's Fleet page lists and changes them.

/// One enrolled, unrevoked station.
#[derive(Debug, Clone)]
pub struct Station {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
    pub agent_version: String,
    pub rules_version: i64,
    pub spool_backlog: i64,
    pub spool_dropped: i64,
    pub flag: String,
    /// Quiet for longer than the school allows (worked out by the caller).
    pub silent: bool,
    /// What the agent's last heartbeat reported wrong with it, one per line.
    pub problems: String,
}

/// What the console does to a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationChange {
    ClearFlag,
    Revoke,
}

/// An enrolled agent as `agents list` shows it, revoked ones included.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub revoked: bool,
    pub last_seq: i64,
    /// 0 before its first heartbeat.
    pub last_seen_ms: i64,
    pub flag: String,
    pub problems: String,
}

/// A recorded sequence gap: events `from_seq..=to_seq` of `agent_id` were
/// numbered but never delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub agent_id: String,
    pub from_seq: i64,
    pub to_seq: i64,
}

/// Which of a revoked identity's re-keyed descendants go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Refuse when there are descendants (the caller must choose).
    Ask,
    /// The identity and everything re-keyed from it.
    WithDescendants,
    /// The identity alone.
    Only,
}

/// What a family revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// These identities were revoked (the first is the one asked for).
    Done(Vec<String>),
    /// Nothing changed: the identity has these descendants and the caller
    /// did not say whether they go too.
    HasDescendants(Vec<String>),
    /// Nothing changed: no such agent.
    NoAgent,
}
