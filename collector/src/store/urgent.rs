//! Urgent notifications' records: which urgent alerts were emailed to which
//! audience, and the floor below which every one was. The scan reads what
//! is pending; the emails, the records and the new floor are written in one
//! transaction that first checks the floor has not moved (another
//! collector's scan), so an alert is never notified twice.

use super::jobs::jobs;
use super::mail::NewEmail;
use super::{Jobs, StoreError};

/// The lowest severity that is urgent.
pub const URGENT_SEVERITY: i64 = 4;

/// An urgent alert not yet notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrgentAlert {
    pub id: i64,
    pub time_ms: i64,
    pub severity: i64,
    /// About staff (by the staff list or `staff_pattern`): for the head.
    pub staff: bool,
    /// Its school: its recipients hear of it beside the trust's.
    pub school: String,
}

/// What a scan found: urgent alerts above `floor` up to `newest` not yet
/// notified, most severe first.
#[derive(Debug, Clone, Default)]
pub struct UrgentScan {
    pub floor: i64,
    pub newest: i64,
    pub pending: Vec<UrgentAlert>,
}

/// What a scan decided.
#[derive(Debug, Clone)]
pub struct UrgentQueue {
    /// The floor the scan read: nothing is written if it has moved since.
    pub floor_was: i64,
    pub floor: i64,
    pub emails: Vec<NewEmail>,
    /// (alert id, audience) notified by these emails.
    pub notified: Vec<(i64, &'static str)>,
    pub now_ms: i64,
}

impl Jobs {
    /// Sets the floor, the first time, to the newest alert received before
    /// `started_ms`: alerts from before mail was set up are not notified.
    pub async fn init_urgent(&self, started_ms: i64) -> Result<(), StoreError> {
        jobs!(self, c => super::sqlite::urgent::init_cursor(c, started_ms),
              p => p.init_urgent(started_ms).await)
    }

    /// The urgent alerts not yet notified; `staff_pattern` as in
    /// `[console] staff_pattern`.
    pub async fn urgent_scan(&self, staff_pattern: &str) -> Result<UrgentScan, StoreError> {
        let pattern = staff_pattern.trim().to_lowercase();
        jobs!(self, c => super::sqlite::urgent::scan(c, &pattern),
              p => p.urgent_scan(&pattern).await)
    }

    /// Writes the emails and records, and raises the floor, unless the
    /// floor moved since the scan; returns whether it was written.
    pub async fn urgent_queue(&self, queue: UrgentQueue) -> Result<bool, StoreError> {
        jobs!(self, c => super::sqlite::urgent::record(c, &queue),
              p => p.urgent_queue(&queue).await)
    }
}
