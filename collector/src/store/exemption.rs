//! Curriculum exemptions as stored: the rows both backends read and write.
//! Validation and the wire form live in `crate::exemption`; the SQL in
//! `sqlite/exemption.rs` and `postgres/exemption.rs`. Every add and revoke
//! is audited in the transaction that makes it, and announced to every
//! collector's agents.

use super::schools::Scope;
use super::{Store, StoreError};

/// A stored exemption.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exemption {
    pub id: i64,
    pub grp: String,
    pub category: String,
    pub term: String,
    pub reason: String,
    pub created_by: String,
    pub created_ms: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The school it holds for ('': every school of the trust).
    pub school: String,
}

/// A validated exemption being stored.
#[derive(Debug, Clone)]
pub struct NewExemptionRow<'a> {
    pub group: &'a str,
    pub category: &'a str,
    pub term: &'a str,
    pub reason: &'a str,
    pub created_by: &'a str,
    pub created_ms: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// The school it holds for ('': every school of the trust).
    pub school: &'a str,
}

/// What the audit log says of a change (made once the row's id is known).
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub detail: String,
}

/// How a revocation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Done,
    NotFound,
    Already,
    /// It holds for every school, and the account's grant is one school's
    /// (or several): it may be seen, not changed.
    TrustWide,
}

/// How many unrevoked agents are in a group, and the groups that have any.
#[derive(Debug, Clone, Default)]
pub struct GroupAgents {
    pub in_group: i64,
    pub groups: Vec<String>,
}

/// Whether an account over `schools` (`None`: the trust) sees an
/// exemption or notice of `school` ('': trust-wide, seen by everyone).
pub fn visible(schools: Option<&[String]>, school: &str) -> bool {
    school.is_empty() || schools.is_none_or(|ids| ids.iter().any(|id| id == school))
}

impl Store {
    /// Stores an exemption and its audit entry (`audit` is given its id), in one transaction.
    pub async fn add_exemption(
        &self,
        row: &NewExemptionRow<'_>,
        audit: impl FnOnce(i64) -> AuditNote + Send,
    ) -> Result<i64, StoreError> {
        backend!(self, s => super::sqlite::exemption::add(&s.conn(), row, audit), s.add_exemption(row, audit).await)
    }

    /// Revokes exemption `id` at `now_ms` and audits it (`audit` is given
    /// the exemption), if `scope` may change it: another school's answers
    /// `NotFound`, a trust-wide one `TrustWide` unless `scope` is the trust.
    pub async fn revoke_exemption(
        &self,
        scope: &Scope,
        id: i64,
        now_ms: i64,
        audit: impl FnOnce(&Exemption) -> AuditNote + Send,
    ) -> Result<Revoked, StoreError> {
        backend!(self, s => super::sqlite::exemption::revoke(&s.conn(), scope.schools(), id, now_ms, audit), s.revoke_exemption(scope.schools(), id, now_ms, audit).await)
    }

    /// Every exemption `scope` sees, newest first: the trust every one, a
    /// school's account its schools' and the trust-wide ones.
    pub async fn exemptions(&self, scope: &Scope) -> Result<Vec<Exemption>, StoreError> {
        backend!(self, s => super::sqlite::exemption::list_in(&s.conn(), scope.json().as_deref()), s.exemptions(scope.list()).await)
    }

    /// Moves an enrolled, unrevoked agent to `group` and audits it; false
    /// when there is no such agent.
    pub async fn move_agent(
        &self,
        agent_id: &str,
        group: &str,
        now_ms: i64,
        note: AuditNote,
    ) -> Result<bool, StoreError> {
        backend!(self, s => super::sqlite::exemption::move_agent(&s.conn(), agent_id, group, now_ms, &note), s.move_agent(agent_id, group, now_ms, &note).await)
    }

    pub async fn group_agents(&self, group: &str) -> Result<GroupAgents, StoreError> {
        backend!(self, s => super::sqlite::exemption::group_agents(&s.conn(), group), s.group_agents(group).await)
    }
}
