//! The mail outbox: every email is written here before any attempt to send
//! it, and a sender claims a due row for a while before sending it. On a
//! shared store two collectors' senders never claim the same row
//! (PostgreSQL: `FOR UPDATE SKIP LOCKED`).

use super::jobs::jobs;
use super::{Jobs, StoreError};

/// An email to queue.
#[derive(Debug, Clone)]
pub struct NewEmail {
    /// `urgent` (sent first) or `summary`.
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub envelope_from: String,
    /// The whole MIME message.
    pub message: Vec<u8>,
}

/// A row claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: i64,
    pub recipient: String,
    pub envelope_from: String,
    pub message: Vec<u8>,
    /// Attempts before this one.
    pub attempts: i64,
}

/// One row of the outbox, for `summary --status`.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub created_ms: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: String,
    /// When the server refused it for good.
    pub failed_ms: Option<i64>,
}

/// What happened to a claimed email.
#[derive(Debug, Clone)]
pub enum EmailOutcome {
    Sent,
    /// Refused for good: never retried.
    Refused(String),
    /// Tried again at `next_ms`.
    Retry {
        next_ms: i64,
        error: String,
    },
}

impl Jobs {
    /// Claims the next email due at `cutoff` for `claim_ms` (urgent ones
    /// first); another sender skips it meanwhile.
    pub async fn claim_email(
        &self,
        cutoff: i64,
        claim_ms: i64,
    ) -> Result<Option<ClaimedEmail>, StoreError> {
        jobs!(self, c => super::sqlite::mail::claim_due(c, cutoff, claim_ms),
              p => p.claim_email(cutoff, claim_ms).await)
    }

    /// Records how an attempt ended; `attempts` counts it.
    pub async fn email_attempted(
        &self,
        id: i64,
        attempts: i64,
        outcome: EmailOutcome,
    ) -> Result<(), StoreError> {
        jobs!(self, c => super::sqlite::mail::attempted(c, id, attempts, &outcome),
              p => p.email_attempted(id, attempts, &outcome).await)
    }

    /// Puts off every email still due at `cutoff` to `next_ms` (the server
    /// cannot be reached: the rest of the pass would fail the same way);
    /// returns how many.
    pub async fn defer_due_emails(
        &self,
        cutoff: i64,
        next_ms: i64,
        error: String,
    ) -> Result<usize, StoreError> {
        jobs!(self, c => super::sqlite::mail::defer_due(c, cutoff, next_ms, &error),
              p => p.defer_due_emails(cutoff, next_ms, &error).await)
    }

    /// Deletes emails sent or refused before `before_ms`; unsent ones stay.
    pub async fn prune_sent_emails(&self, before_ms: i64) -> Result<usize, StoreError> {
        jobs!(self, c => super::sqlite::mail::prune_sent(c, before_ms),
              p => p.prune_sent_emails(before_ms).await)
    }

    /// The newest `limit` outbox rows, unsent first.
    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        jobs!(self, c => super::sqlite::mail::outbox(c, limit),
              p => p.outbox(limit).await)
    }

    /// Queues again the emails refused for good; returns how many.
    pub async fn retry_failed_emails(&self) -> Result<usize, StoreError> {
        jobs!(self, c => super::sqlite::mail::retry_failed(c),
              p => p.retry_failed_emails().await)
    }
}
