//! Pupils' reports ('Report a concern'): each is stored as an alert of the
//! report's own source with its audit entry, in one transaction (the rules
//! are in `reports`).

use super::exemption::AuditNote;
use super::{Store, StoreError};

/// A report being stored.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub event_id: &'a str,
    /// The pseudo-agent reports are filed under.
    pub agent_id: &'a str,
    pub time_ms: i64,
    /// The name the pupil gave, or empty.
    pub user: &'a str,
    pub source: &'a str,
    pub text: &'a str,
    pub category: &'a str,
    pub severity: i64,
    pub rule_id: &'a str,
    pub school: &'a str,
}

impl Store {
    /// Stores `report` and `note` in one transaction; returns the alert's id.
    pub async fn store_report(
        &self,
        report: &NewReport<'_>,
        note: impl FnOnce(i64) -> AuditNote + Send,
    ) -> Result<i64, StoreError> {
        backend!(self, s => super::sqlite::reports::insert(&s.conn(), report, note), s.store_report(report, note).await)
    }
}
