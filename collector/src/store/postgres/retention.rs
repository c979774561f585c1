//! The retention purge on PostgreSQL: closed alerts past their time are
//! deleted with their folded repeats, captures and review row, in one
//! transaction, with one audit entry appended under the audit log's
//! advisory lock so entries from every collector stay one chain. Notes and
//! history are kept, as on SQLite.

use super::jobs::Jobs;
use crate::retention::TERMINAL_STATES;
use crate::store::exemption::AuditNote;
use crate::store::retention::{Cutoffs, PurgeCounts};
use crate::store::StoreError;

impl Jobs {
    pub async fn purge_closed(
        &self,
        cutoffs: &Cutoffs,
        dry_run: bool,
    ) -> Result<PurgeCounts, StoreError> {
        let (schools, school_cutoffs) = cutoffs.columns();
        let mut conn = self.conn().await?;
        let tx = conn.client().transaction().await?;
        let primary: Vec<i64> = tx
            .query(
                "SELECT a.id FROM alerts a
                 WHERE a.state = ANY($1)
                   AND (SELECT MAX(h.time_ms) FROM console_history h
                        WHERE h.alert_id = a.id AND h.to_state = a.state)
                       < COALESCE((SELECT c.cutoff_ms FROM unnest($3::text[], $4::bigint[]) AS c(school, cutoff_ms)
                                   WHERE c.school = a.school), $2)
                 FOR UPDATE OF a",
                &[
                    &TERMINAL_STATES.as_slice(),
                    &cutoffs.trust_ms,
                    &schools,
                    &school_cutoffs,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let repeats: Vec<i64> = tx
            .query(
                "SELECT DISTINCT f.id FROM alerts f
                 JOIN alerts a ON f.agent_id = a.agent_id AND f.repeat_of = a.event_id
                 WHERE a.id = ANY($1) AND f.repeat_of <> '' AND NOT (f.id = ANY($1))",
                &[&primary],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let all: Vec<i64> = primary.iter().chain(repeats.iter()).copied().collect();
        let captures: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM captures WHERE alert_id = ANY($1)",
                &[&all],
            )
            .await?
            .get(0);
        let report = PurgeCounts {
            alerts: primary.len() as u64,
            repeats: repeats.len() as u64,
            captures: captures as u64,
        };
        if dry_run || primary.is_empty() {
            tx.rollback().await?;
            return Ok(report);
        }
        tx.execute("DELETE FROM captures WHERE alert_id = ANY($1)", &[&all])
            .await?;
        tx.execute(
            "DELETE FROM console_review WHERE alert_id = ANY($1)",
            &[&all],
        )
        .await?;
        tx.execute("DELETE FROM alerts WHERE id = ANY($1)", &[&all])
            .await?;
        super::exemption::audit(
            &tx,
            &AuditNote {
                actor: "retention".to_owned(),
                action: "retention_purge",
                target: "alerts".to_owned(),
                detail: crate::retention::audit_detail(cutoffs, &report),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(report)
    }
}
