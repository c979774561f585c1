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
