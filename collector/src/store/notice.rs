//! Monitoring notices and pupils' acknowledgements as stored: the rows both
//! backends read and write. Validation and signing live in `crate::notice`;
//! the SQL in `sqlite/notice.rs` and `postgres/notice.rs`. A new version is
//! audited in the transaction that stores it, and announced to every
//! collector's agents.

use tutela_proto::v1::SignedNotice;

use super::exemption::AuditNote;
use super::{Store, StoreError};

/// A stored version of a group's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotice {
    pub grp: String,
    pub version: u32,
    pub text: String,
    pub mode: String,
    pub concern_url: String,
    pub created_by: String,
    pub created_ms: i64,
    pub signed: SignedNotice,
    /// The school whose stations show it ('': every school without one of
    /// its own for the group).
    pub school: String,
}

/// A validated notice being stored; its version is the group's next
/// across every school, so a station that changes from the trust's notice
/// to its school's (or back, the newer one) takes it as newer.
#[derive(Debug, Clone)]
pub struct NewNoticeRow<'a> {
    pub group: &'a str,
    pub text: &'a str,
    pub mode: &'a str,
    pub concern_url: &'a str,
    pub created_by: &'a str,
    pub created_ms: i64,
    /// The school whose stations show it ('': the trust's).
    pub school: &'a str,
}

/// A verified acknowledgement being stored.
#[derive(Debug, Clone)]
pub struct AckRow<'a> {
    pub agent_id: &'a str,
    pub ack_id: &'a str,
    pub user: &'a str,
    pub station: &'a str,
    pub group: &'a str,
    pub version: u32,
    pub time_ms: i64,
    pub received_ms: i64,
    pub body: &'a [u8],
    pub signature: &'a [u8],
}

/// One pupil's standing against a group's current notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Standing {
    pub user: String,
    /// Newest version they acknowledged in this group (0: none).
    pub version: u32,
    /// When (agent clock) and where they last acknowledged, if ever.
    pub time_ms: Option<i64>,
    pub station: String,
}

/// One acknowledgement, for a subject-access export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AckRecord {
    pub time_ms: i64,
    pub station: String,
    pub group: String,
    pub version: u32,
}

/// Of `current` (every (group, school)'s current notice, by group), the
/// one each group's stations at `school` show: the school's own, else the
/// trust's. For '' (the trust), the trust's notice of each group.
pub fn shown_at(current: Vec<StoredNotice>, school: &str) -> Vec<StoredNotice> {
    let mut shown: Vec<StoredNotice> = Vec::new();
    for n in current {
        if !n.school.is_empty() && n.school != school {
            continue;
        }
        match shown.iter_mut().find(|s| s.grp == n.grp) {
            Some(s) if s.school.is_empty() => *s = n,
            Some(_) => {}
            None => shown.push(n),
        }
    }
    shown
}

/// Signs version `version` of the notice, issued at `issued_ms`.
pub type Signer<'k> = dyn Fn(u32, i64) -> SignedNotice + Send + Sync + 'k;

impl Store {
    /// Stores the next version of a group's notice, signed by `sign`, and
    /// its audit entry (`audit` is given the version), in one transaction.
    pub async fn set_notice(
        &self,
        row: &NewNoticeRow<'_>,
        sign: &Signer<'_>,
        audit: impl FnOnce(u32) -> AuditNote + Send,
    ) -> Result<u32, StoreError> {
        backend!(self, s => super::sqlite::notice::set(&s.conn(), row, sign, audit), s.set_notice(row, sign, audit).await)
    }

    /// The current notice of every (group, school) that has one, by group
    /// then school ('' first).
    pub async fn current_notices(&self) -> Result<Vec<StoredNotice>, StoreError> {
        backend!(self, s => super::sqlite::notice::current_all(&s.conn()), s.current_notices().await)
    }

    /// The signed body of a group's notice `version`.
    pub async fn notice_body(
        &self,
        group: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        backend!(self, s => super::sqlite::notice::body(&s.conn(), group, version), s.notice_body(group, version).await)
    }

    /// Stores an acknowledgement; false when it was already stored (a resend).
    pub async fn insert_ack(&self, ack: &AckRow<'_>) -> Result<bool, StoreError> {
        backend!(self, s => super::sqlite::notice::insert_ack(&s.conn(), ack), s.insert_ack(ack).await)
    }

    /// Every acknowledgement `user` gave (case-insensitive), oldest first.
    /// `user`'s acknowledgements on the agents of the schools `scope` allows.
    pub async fn acks_of(
        &self,
        scope: &super::schools::Scope,
        user: &str,
    ) -> Result<Vec<AckRecord>, StoreError> {
        backend!(self, s => super::sqlite::notice::acks_in(&s.conn(), scope.json().as_deref(), user), s.acks_of(scope.list(), user).await)
    }

    /// As [`Store::notice_standings`], on the stations of `school` only
    /// ('' for every school), against the notices of `notice_school` (the
    /// ones those stations show; '' for the trust's).
    pub async fn notice_standings_at(
        &self,
        group: &str,
        school: &str,
        notice_school: &str,
    ) -> Result<Vec<Standing>, StoreError> {
        backend!(self, s => super::sqlite::notice::standings_in(&s.conn(), group, school, notice_school), s.notice_standings_at(group, school, notice_school).await)
    }

    /// The pupils known in `group` with the newest version each acknowledged.
    pub async fn notice_standings(&self, group: &str) -> Result<Vec<Standing>, StoreError> {
        backend!(self, s => super::sqlite::notice::standings(&s.conn(), group), s.notice_standings(group).await)
    }
}
