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
    /// Its place in the group's order of issue (the signed `Notice.issue`):
    /// the version is signed again, under a new issue, for a device moved
    /// to a school showing it that holds a later-issued notice.
    pub issue: u64,
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

/// Signs version `version` of the notice as issue `issue`, at `issued_ms`.
pub type Signer<'k> = dyn Fn(u32, u64, i64) -> SignedNotice + Send + Sync + 'k;

/// A stored notice signed again under the group's next issue: same
/// version, text, mode and address.
pub type Resigner<'k> = dyn Fn(&StoredNotice, u64, i64) -> SignedNotice + Send + Sync + 'k;

/// The next issue of a group whose highest issue and version are these:
/// above both, so a notice from before issues were numbered (which agents
/// order by its version) is never after a new one.
pub fn next_issue(max_issue: Option<i64>, max_version: Option<i64>) -> u64 {
    max_issue.unwrap_or(0).max(max_version.unwrap_or(0)).max(0) as u64 + 1
}

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

    /// Every signed body of a group's notice `version`: as issued now and
    /// as issued before (an acknowledgement may name any of them).
    pub async fn notice_bodies(
        &self,
        group: &str,
        version: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        backend!(self, s => super::sqlite::notice::bodies(&s.conn(), group, version), s.notice_bodies(group, version).await)
    }

    /// Signs `group`'s notice shown at `school` (its own, else the
    /// trust's) again under the group's next issue, unless it already is
    /// the group's latest issue; the body it replaces stays valid for
    /// acknowledgements. Announced to every collector's agents. The issue
    /// given, or `None` when nothing needed it.
    pub async fn reissue_notice(
        &self,
        group: &str,
        school: &str,
        sign: &Resigner<'_>,
    ) -> Result<Option<u64>, StoreError> {
        backend!(self, s => super::sqlite::notice::reissue(&s.conn(), group, school, sign), s.reissue_notice(group, school, sign).await)
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
