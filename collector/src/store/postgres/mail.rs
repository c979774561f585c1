//! The mail outbox on PostgreSQL. Several collectors send from it: a row is
//! claimed with `FOR UPDATE SKIP LOCKED`, so two senders never take the
//! same email, and the claim (a later `next_attempt_ms`) keeps others off
//! it while it is sent.

use tokio_postgres::GenericClient;

use super::jobs::Jobs;
use crate::store::mail::{ClaimedEmail, EmailOutcome, NewEmail, OutboxRow};
use crate::store::{now_ms, StoreError};

/// Writes `email` to the outbox in the caller's transaction.
pub async fn enqueue(tx: &impl GenericClient, email: &NewEmail) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO mail_outbox (kind, recipient, subject, envelope_from, message, created_ms, next_attempt_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[
            &email.kind,
            &email.recipient,
            &email.subject,
            &email.envelope_from,
            &email.message,
            &now_ms(),
        ],
    )
    .await?;
    Ok(())
}

impl Jobs {
    pub async fn claim_email(
        &self,
        cutoff: i64,
        claim_ms: i64,
    ) -> Result<Option<ClaimedEmail>, StoreError> {
        let mut conn = self.conn().await?;
        let row = conn
            .client()
            .query_opt(
                "UPDATE mail_outbox SET next_attempt_ms = $2
                 WHERE id = (
                     SELECT id FROM mail_outbox
                     WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= $1
                     ORDER BY kind <> 'urgent', next_attempt_ms, id
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, recipient, envelope_from, message, attempts",
                &[&cutoff, &(now_ms() + claim_ms)],
            )
            .await?;
        Ok(row.map(|r| ClaimedEmail {
            id: r.get(0),
            recipient: r.get(1),
            envelope_from: r.get(2),
            message: r.get(3),
            attempts: r.get(4),
        }))
    }

    pub async fn email_attempted(
        &self,
        id: i64,
        attempts: i64,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let c = conn.client();
        match outcome {
            EmailOutcome::Sent => {
                c.execute(
                    "UPDATE mail_outbox SET sent_ms = $2, attempts = $3, last_error = '' WHERE id = $1",
                    &[&id, &now_ms(), &attempts],
                )
                .await
            }
            EmailOutcome::Refused(error) => {
                c.execute(
                    "UPDATE mail_outbox SET failed_ms = $2, attempts = $3, last_error = $4 WHERE id = $1",
                    &[&id, &now_ms(), &attempts, error],
                )
                .await
            }
            EmailOutcome::Retry { next_ms, error } => {
                c.execute(
                    "UPDATE mail_outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4 WHERE id = $1",
                    &[&id, &attempts, next_ms, error],
                )
                .await
            }
        }?;
        Ok(())
    }

    pub async fn defer_due_emails(
        &self,
        cutoff: i64,
        next_ms: i64,
        error: &str,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        // Rows another collector is sending are locked: skipped, not waited for.
        let n = conn
            .client()
            .execute(
                "UPDATE mail_outbox SET next_attempt_ms = $1, last_error = 'not tried: ' || $2
                 WHERE id IN (
                     SELECT id FROM mail_outbox
                     WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= $3
                     FOR UPDATE SKIP LOCKED)",
                &[&next_ms, &error, &cutoff],
            )
            .await?;
        Ok(n as usize)
    }

    pub async fn prune_sent_emails(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let n = conn
            .client()
            .execute(
                "DELETE FROM mail_outbox WHERE sent_ms < $1 OR failed_ms < $1",
                &[&before_ms],
            )
            .await?;
        Ok(n as usize)
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = conn
            .client()
            .query(
                "SELECT id, kind, recipient, subject, created_ms, attempts, next_attempt_ms, sent_ms, last_error, failed_ms
                 FROM mail_outbox ORDER BY sent_ms IS NOT NULL, id DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                kind: r.get(1),
                recipient: r.get(2),
                subject: r.get(3),
                created_ms: r.get(4),
                attempts: r.get(5),
                next_attempt_ms: r.get(6),
                sent_ms: r.get(7),
                last_error: r.get(8),
                failed_ms: r.get(9),
            })
            .collect())
    }

    pub async fn retry_failed_emails(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let n = conn
            .client()
            .execute(
                "UPDATE mail_outbox SET failed_ms = NULL, attempts = 0, next_attempt_ms = $1,
                    last_error = 'queued again after: ' || last_error
                 WHERE failed_ms IS NOT NULL AND sent_ms IS NULL",
                &[&now_ms()],
            )
            .await?;
        Ok(n as usize)
    }
}
