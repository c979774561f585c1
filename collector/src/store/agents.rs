//! Agents, enrolment tokens and heartbeats: the rows both backends read and
//! write. The rules (who may enrol, re-key, report) live in `enrolment` and
//! `ingest`; the SQL in `sqlite/agents.rs` and `postgres/agents.rs`.

/// An enrolled agent's stored key, whether it is revoked, and its group.
#[derive(Debug, Clone)]
pub struct AgentKeyRow {
    pub public_key: Vec<u8>,
    pub revoked: bool,
    pub group: String,
    pub school: String,
}

/// An enrolled agent as enrolment and re-keying see it.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub agent_id: String,
    pub public_key: Vec<u8>,
    pub revoked: bool,
    pub group: String,
    pub school: String,
}

/// A new identity.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    pub agent_id: &'a str,
    pub public_key: &'a [u8],
    pub station: &'a str,
    pub group: &'a str,
    pub agent_version: &'a str,
    pub enrolled_ms: i64,
    /// The identity this one replaces by re-keying, or ''.
    pub rekeyed_from: &'a str,
    /// The school (its token's); a re-keyed identity keeps its parent's.
    pub school: &'a str,
}

/// A token being made: only the hash of its secret is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret_hash: Vec<u8>,
    pub label: String,
    pub group: String,
    /// The school the agents enrolled with it belong to.
    pub school: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub max_uses: i64,
}

/// A token as an enrolment reads it (locked until the enrolment commits
/// where several collectors share the store).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub expires_ms: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub revoked: bool,
    pub group: String,
    pub school: String,
}

/// A token as technicians see it (never its secret).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The first 12 hex digits of the secret's hash.
    pub id: String,
    pub label: String,
    pub group: String,
    pub school: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub revoked: bool,
}

impl TokenInfo {
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.expires_ms <= now_ms {
            "expired"
        } else if self.uses >= self.max_uses {
            "used up"
        } else {
            "valid"
        }
    }
}

/// What a verified heartbeat records.
#[derive(Debug, Clone)]
pub struct HeartbeatRow<'a> {
    pub agent_id: &'a str,
    pub seen_ms: i64,
    pub agent_version: &'a str,
    pub rules_version: i64,
    pub spool_backlog: i64,
    pub spool_dropped: i64,
    /// The agent's own time: recorded only when later than the last one.
    pub agent_ms: i64,
    /// What the agent reports is wrong with its set-up, one per line (the
    /// browser extension's configuration problems); empty when none.
    pub problems: &'a str,
}

/// Why a heartbeat was not recorded: the agent's standing.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatStanding {
    pub revoked: bool,
    pub last_heartbeat_ms: i64,
}

/// An agent's flag collects notes joined with "; "; once it is longer than
/// this many bytes, further notes are dropped.
pub const FLAG_LIMIT: usize = 1000;
