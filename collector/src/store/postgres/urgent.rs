//! Urgent notifications' records on PostgreSQL. The floor's row is locked
//! while a scan's emails are written, and a record per alert is unique, so
//! two collectors' scans never notify an alert twice (the urgent scan also
//! runs under a lease: only one collector scans at a time).

use super::jobs::Jobs;
use crate::store::urgent::{UrgentAlert, UrgentQueue, UrgentScan, URGENT_SEVERITY};
use crate::store::StoreError;

const FLOOR: &str = "urgent_floor_id";

/// The SQL expression (on alias `a`) true for alerts about staff: on the
/// imported staff list, or matching `[console] staff_pattern` given as
/// parameter `$n` (a LIKE pattern from [`like_pattern`]; '' for none). A
/// pupil's report is the DSL's whatever name it was signed with.
pub fn staff_condition(n: usize) -> String {
    format!(
        "(a.source <> '{}' AND (lower(a.\"user\") IN (SELECT username FROM console_staff)
            OR (${n} <> '' AND lower(a.\"user\") LIKE ${n})))",
        crate::reports::SOURCE
    )
}

/// `staff_pattern` (lower-case, `*` its only wildcard) as a LIKE pattern.
pub fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

impl Jobs {
    pub async fn init_urgent(&self, started_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.client()
            .execute(
                "INSERT INTO mail_cursor (name, value)
                 SELECT $1, COALESCE(MAX(id), 0) FROM alerts WHERE received_ms < $2
                 ON CONFLICT (name) DO NOTHING",
                &[&FLOOR, &started_ms],
            )
            .await?;
        Ok(())
    }

    pub async fn urgent_scan(&self, staff_pattern: &str) -> Result<UrgentScan, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .client()
            .build_transaction()
            .read_only(true)
            .start()
            .await?;
        let floor: i64 = tx
            .query_opt("SELECT value FROM mail_cursor WHERE name = $1", &[&FLOOR])
            .await?
            .map_or(0, |r| r.get(0));
        let newest: i64 = tx
            .query_one("SELECT COALESCE(MAX(id), 0)::bigint FROM alerts", &[])
            .await?
            .get(0);
        let pending = if newest > floor {
            let sql = format!(
                "SELECT a.id, a.time_ms, a.severity, {}, a.school FROM alerts a
                 WHERE a.id > $2 AND a.id <= $3 AND a.severity >= $4 AND a.state <> 'folded'
                   AND NOT EXISTS (SELECT 1 FROM urgent_notified n WHERE n.alert_id = a.id)
                 ORDER BY a.severity DESC, a.id",
                staff_condition(1)
            );
            tx.query(
                &sql,
                &[
                    &like_pattern(staff_pattern),
                    &floor,
                    &newest,
                    &URGENT_SEVERITY,
                ],
            )
            .await?
            .iter()
            .map(|r| UrgentAlert {
                id: r.get(0),
                time_ms: r.get(1),
                severity: r.get(2),
                staff: r.get(3),
                school: r.get(4),
            })
            .collect()
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(UrgentScan {
            floor,
            newest,
            pending,
        })
    }

    pub async fn urgent_queue(&self, queue: &UrgentQueue) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.client().transaction().await?;
        tx.execute(
            "INSERT INTO mail_cursor (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            &[&FLOOR],
        )
        .await?;
        let floor: i64 = tx
            .query_one(
                "SELECT value FROM mail_cursor WHERE name = $1 FOR UPDATE",
                &[&FLOOR],
            )
            .await?
            .get(0);
        if floor != queue.floor_was {
            // Another collector's scan got there first.
            return Ok(false);
        }
        for (id, audience) in &queue.notified {
            let inserted = tx
                .execute(
                    "INSERT INTO urgent_notified (alert_id, audience, notified_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (alert_id) DO NOTHING",
                    &[id, audience, &queue.now_ms],
                )
                .await?;
            if inserted == 0 {
                // Notified meanwhile by another scan: write nothing.
                return Ok(false);
            }
        }
        for email in &queue.emails {
            super::mail::enqueue(&tx, email).await?;
        }
        tx.execute(
            "UPDATE mail_cursor SET value = $2 WHERE name = $1",
            &[&FLOOR, &queue.floor],
        )
        .await?;
        tx.execute(
            "DELETE FROM urgent_notified WHERE alert_id <= $1",
            &[&queue.floor],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
