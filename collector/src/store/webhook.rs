//! The webhook outbox and each target's cursor. A scan reads each target's
//! new alerts; the messages and the cursors' new places are written in one
//! transaction that first checks the cursors have not moved (another
//! collector's scan), and senders claim rows as in the mail outbox
//! (PostgreSQL: `FOR UPDATE SKIP LOCKED`).

use super::jobs::jobs;
use super::{Jobs, StoreError};

/// One alert as a webhook may describe it.
#[derive(Debug, Clone)]
pub struct AlertFacts {
    pub id: i64,
    pub time_ms: i64,
    pub severity: i64,
    pub category: String,
    pub term: String,
    pub user: String,
    pub station: String,
}

/// What a target is sent: its audience and lowest severity.
#[derive(Debug, Clone)]
pub struct TargetScope {
    pub name: String,
    /// Alerts about staff (else pupils' alerts).
    pub staff: bool,
    pub min_severity: i64,
    /// Only this school's alerts; '' for every school's.
    pub school: String,
}

/// A target's new alerts: above `after` up to the scan's newest alert.
#[derive(Debug, Clone)]
pub struct TargetAlerts {
    pub name: String,
    pub after: i64,
    pub alerts: Vec<AlertFacts>,
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct WebhookScan {
    pub newest: i64,
    pub targets: Vec<TargetAlerts>,
}

/// A target's message (if it has new alerts) and its cursor's move.
#[derive(Debug, Clone)]
pub struct WebhookQueued {
    pub name: String,
    /// The cursor the scan read: nothing is written if it has moved since.
    pub after: i64,
    /// The message and how many alerts it carries.
    pub message: Option<(Vec<u8>, usize)>,
}

/// A claimed row: id, target, body, attempts so far.
pub type Claimed = (i64, String, Vec<u8>, i64);

/// One outbox row, for `webhooks status`.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub target: String,
    pub alerts: i64,
    pub created_ms: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub sent_ms: Option<i64>,
    pub failed_ms: Option<i64>,
    pub last_error: String,
}

/// How a post ended.
#[derive(Debug, Clone)]
pub enum PostOutcome {
    Sent,
    Refused(String),
    Retry { next_ms: i64, error: String },
}

impl Jobs {
    /// Sets a new target's cursor to the newest alert: alerts from before a
    /// target was added are not posted to it.
    pub async fn init_webhook_cursor(&self, target: &str) -> Result<(), StoreError> {
        let target = target.to_owned();
        jobs!(self, c => super::sqlite::webhook::init_cursor(c, &target),
              p => p.init_webhook_cursor(&target).await)
    }

    /// Each target's alerts above its cursor, most severe first.
    pub async fn webhook_scan(
        &self,
        targets: Vec<TargetScope>,
        staff_pattern: &str,
    ) -> Result<WebhookScan, StoreError> {
        let pattern = staff_pattern.trim().to_lowercase();
        jobs!(self, c => super::sqlite::webhook::scan(c, &targets, &pattern),
              p => p.webhook_scan(&targets, &pattern).await)
    }

    /// Writes the messages and moves the cursors to `newest`, unless a
    /// cursor moved since the scan; returns whether it was written.
    pub async fn webhook_queue(
        &self,
        newest: i64,
        queued: Vec<WebhookQueued>,
    ) -> Result<bool, StoreError> {
        jobs!(self, c => super::sqlite::webhook::record(c, newest, &queued),
              p => p.webhook_queue(newest, &queued).await)
    }

    /// Claims the next message due at `cutoff` for `claim_ms`.
    pub async fn claim_webhook(
        &self,
        cutoff: i64,
        claim_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        jobs!(self, c => super::sqlite::webhook::claim_due(c, cutoff, claim_ms),
              p => p.claim_webhook(cutoff, claim_ms).await)
    }

    pub async fn webhook_posted(
        &self,
        id: i64,
        attempts: i64,
        outcome: PostOutcome,
    ) -> Result<(), StoreError> {
        jobs!(self, c => super::sqlite::webhook::posted(c, id, attempts, &outcome),
              p => p.webhook_posted(id, attempts, &outcome).await)
    }

    /// Deletes messages sent or refused before `before_ms`.
    pub async fn prune_webhooks(&self, before_ms: i64) -> Result<usize, StoreError> {
        jobs!(self, c => super::sqlite::webhook::prune_sent(c, before_ms),
              p => p.prune_webhooks(before_ms).await)
    }

    /// The newest `limit` rows, unsent first.
    pub async fn webhook_rows(&self, limit: i64) -> Result<Vec<Row>, StoreError> {
        jobs!(self, c => super::sqlite::webhook::rows(c, limit),
              p => p.webhook_rows(limit).await)
    }

    /// Queues again the messages a receiver refused for good; returns how many.
    pub async fn retry_failed_webhooks(&self) -> Result<usize, StoreError> {
        jobs!(self, c => super::sqlite::webhook::retry_failed(c),
              p => p.retry_failed_webhooks().await)
    }
}
