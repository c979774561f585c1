//! The webhook outbox and cursors on PostgreSQL: cursors are locked while a
//! scan's messages are written; senders claim rows with `FOR UPDATE SKIP
//! LOCKED`.

use super::jobs::Jobs;
use super::urgent::{like_pattern, staff_condition};
use crate::store::webhook::{
    AlertFacts, Claimed, PostOutcome, Row, TargetAlerts, TargetScope, WebhookQueued, WebhookScan,
};
use crate::store::{now_ms, StoreError};

impl Jobs {
    pub async fn init_webhook_cursor(&self, target: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.client()
            .execute(
                "INSERT INTO webhook_cursor (target, alert_id)
                 SELECT $1, COALESCE(MAX(id), 0) FROM alerts
                 ON CONFLICT (target) DO NOTHING",
                &[&target],
            )
            .await?;
        Ok(())
    }

    pub async fn webhook_scan(
        &self,
        targets: &[TargetScope],
        staff_pattern: &str,
    ) -> Result<WebhookScan, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .client()
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let newest: i64 = tx
            .query_one("SELECT COALESCE(MAX(id), 0)::bigint FROM alerts", &[])
            .await?
            .get(0);
        let pattern = like_pattern(staff_pattern);
        let mut out = WebhookScan {
            newest,
            targets: Vec::new(),
        };
        for target in targets {
            let after: i64 = tx
                .query_opt(
                    "SELECT alert_id FROM webhook_cursor WHERE target = $1",
                    &[&target.name],
                )
                .await?
                .map_or(0, |r| r.get(0));
            let alerts = if newest <= after {
                Vec::new()
            } else {
                let scope = if target.staff {
                    staff_condition(1)
                } else {
                    format!("NOT {}", staff_condition(1))
                };
                tx.query(
                    &format!(
                        "SELECT a.id, a.time_ms, a.severity, a.category, a.term, a.\"user\", a.station FROM alerts a
                         WHERE {scope} AND a.id > $2 AND a.id <= $3 AND a.severity >= $4 AND a.state <> 'folded'
                         AND ($5 = '' OR a.school = $5)
                         ORDER BY a.severity DESC, a.id"
                    ),
                    &[&pattern, &after, &newest, &target.min_severity, &target.school],
                )
                .await?
                .iter()
                .map(|r| AlertFacts {
                    id: r.get(0),
                    time_ms: r.get(1),
                    severity: r.get(2),
                    category: r.get(3),
                    term: r.get(4),
                    user: r.get(5),
                    station: r.get(6),
                })
                .collect()
            };
            out.targets.push(TargetAlerts {
                name: target.name.clone(),
                after,
                alerts,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn webhook_queue(
        &self,
        newest: i64,
        queued: &[WebhookQueued],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.client().transaction().await?;
        // Cursors locked in name order: two scans never wait in a cycle.
        let mut sorted: Vec<&WebhookQueued> = queued.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for q in sorted {
            tx.execute(
                "INSERT INTO webhook_cursor (target, alert_id) VALUES ($1, 0) ON CONFLICT (target) DO NOTHING",
                &[&q.name],
            )
            .await?;
            let at: i64 = tx
                .query_one(
                    "SELECT alert_id FROM webhook_cursor WHERE target = $1 FOR UPDATE",
                    &[&q.name],
                )
                .await?
                .get(0);
            if at != q.after {
                return Ok(false);
            }
            if let Some((body, alerts)) = &q.message {
                tx.execute(
                    "INSERT INTO webhook_outbox (target, body, alerts, created_ms, next_attempt_ms)
                     VALUES ($1, $2, $3, $4, $4)",
                    &[&q.name, body, &(*alerts as i64), &now_ms()],
                )
                .await?;
            }
            if newest > q.after {
                tx.execute(
                    "UPDATE webhook_cursor SET alert_id = $2 WHERE target = $1",
                    &[&q.name, &newest],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn claim_webhook(
        &self,
        cutoff: i64,
        claim_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        let mut conn = self.conn().await?;
        let row = conn
            .client()
            .query_opt(
                "UPDATE webhook_outbox SET next_attempt_ms = $2
                 WHERE id = (
                     SELECT id FROM webhook_outbox
                     WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= $1
                     ORDER BY next_attempt_ms, id
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, target, body, attempts",
                &[&cutoff, &(now_ms() + claim_ms)],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
    }

    pub async fn webhook_posted(
        &self,
        id: i64,
        attempts: i64,
        outcome: &PostOutcome,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let c = conn.client();
        match outcome {
            PostOutcome::Sent => {
                c.execute(
                    "UPDATE webhook_outbox SET sent_ms = $2, attempts = $3, last_error = '' WHERE id = $1",
                    &[&id, &now_ms(), &attempts],
                )
                .await
            }
            PostOutcome::Refused(error) => {
                c.execute(
                    "UPDATE webhook_outbox SET failed_ms = $2, attempts = $3, last_error = $4 WHERE id = $1",
                    &[&id, &now_ms(), &attempts, error],
                )
                .await
            }
            PostOutcome::Retry { next_ms, error } => {
                c.execute(
                    "UPDATE webhook_outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4 WHERE id = $1",
                    &[&id, &attempts, next_ms, error],
                )
                .await
            }
        }?;
        Ok(())
    }

    pub async fn prune_webhooks(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let n = conn
            .client()
            .execute(
                "DELETE FROM webhook_outbox WHERE sent_ms < $1 OR failed_ms < $1",
                &[&before_ms],
            )
            .await?;
        Ok(n as usize)
    }

    pub async fn webhook_rows(&self, limit: i64) -> Result<Vec<Row>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .client()
            .query(
                "SELECT id, target, alerts, created_ms, attempts, next_attempt_ms, sent_ms, failed_ms, last_error
                 FROM webhook_outbox ORDER BY sent_ms IS NOT NULL, id DESC LIMIT $1",
                &[&limit],
            )
            .await?
            .iter()
            .map(|r| Row {
                id: r.get(0),
                target: r.get(1),
                alerts: r.get(2),
                created_ms: r.get(3),
                attempts: r.get(4),
                next_attempt_ms: r.get(5),
                sent_ms: r.get(6),
                failed_ms: r.get(7),
                last_error: r.get(8),
            })
            .collect())
    }

    pub async fn retry_failed_webhooks(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let n = conn
            .client()
            .execute(
                "UPDATE webhook_outbox SET failed_ms = NULL, attempts = 0, next_attempt_ms = $1,
                    last_error = 'queued again after: ' || last_error
                 WHERE failed_ms IS NOT NULL AND sent_ms IS NULL",
                &[&now_ms()],
            )
            .await?;
        Ok(n as usize)
    }
}
