//! Pupils' reports on PostgreSQL, and when each station was last heard from.

use super::exemption::audit;
use super::Shared;
use crate::store::coverage::Sighting;
use crate::store::exemption::AuditNote;
use crate::store::reports::NewReport;
use crate::store::StoreError;

/// The advisory lock taken while numbering a report ("report"): reports
/// from every collector share one pseudo-agent's sequence.
const REPORT_LOCK: i64 = 0x7265_706f_7274;

impl Shared {
    pub async fn store_report(
        &self,
        report: &NewReport<'_>,
        note: impl FnOnce(i64) -> AuditNote + Send,
    ) -> Result<i64, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REPORT_LOCK])
            .await?;
        let id: i64 = tx
            .query_one(
                r#"INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, "user", station,
                    source, context, app, app_path, window_title, url, search_query, category,
                    severity, rule_id, term, matches, rules_version, state, repeat_of, body,
                    signature, body_hash, signed_as, school)
                 VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM alerts WHERE agent_id = $2),
                    $3, $3, $4, '', $5, $6, '', '', '', '', '', $7, $8, $9, '', '[]', 0, 'new', '',
                    '', '', '', 0, $10)
                 RETURNING id"#,
                &[
                    &report.event_id,
                    &report.agent_id,
                    &report.time_ms,
                    &report.user,
                    &report.source,
                    &report.text,
                    &report.category,
                    &report.severity,
                    &report.rule_id,
                    &report.school,
                ],
            )
            .await?
            .get(0);
        audit(&tx, &note(id)).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn sightings(&self) -> Result<Vec<Sighting>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT agent_id, station, grp, last_seen_ms, enrolled_ms FROM agents
                 WHERE NOT revoked ORDER BY COALESCE(last_seen_ms, enrolled_ms), station",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Sighting {
                agent_id: r.get(0),
                station: r.get(1),
                grp: r.get(2),
                last_seen_ms: r.get(3),
                enrolled_ms: r.get(4),
            })
            .collect())
    }
}
