//! Events and chains on PostgreSQL.

use std::collections::HashMap;

use super::Tx;
use crate::store::ingest::{AlertRow, Standing};
use crate::store::StoreError;

// Sorted, so two collectors' batches take the same agents' locks in the
// same order and never deadlock on them.
pub(super) const LOCK_AGENTS: &str = "SELECT agent_id, revoked, last_seq, last_hash FROM agents
     WHERE agent_id = ANY($1) ORDER BY agent_id FOR UPDATE";
pub(super) const STORED_BODY_HASH: &str =
    "SELECT body_hash FROM alerts WHERE agent_id = $1 AND seq = $2";
pub(super) const INSERT_ALERT: &str = r#"INSERT INTO alerts (event_id, agent_id, seq, time_ms,
    received_ms, clock_skew, chain_ok, "user", station, source, context, app, app_path,
    window_title, url, search_query, category, severity, rule_id, term, matches, rules_version,
    repeat_count, has_capture, body, signature, body_hash, state, repeat_of, signed_as, school)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30,
    (SELECT school FROM agents WHERE agent_id = $2)) RETURNING id"#;
pub(super) const FOLD: &str = "UPDATE alerts SET repeat_count = repeat_count + $3
     WHERE agent_id = $1 AND event_id = $2 AND repeat_of = ''";
pub(super) const INSERT_CAPTURE: &str =
    "INSERT INTO captures (alert_id, sha256, size, width, height, sealed, object_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(super) const INSERT_GAP: &str =
    "INSERT INTO gaps (agent_id, from_seq, to_seq, detected_ms) VALUES ($1, $2, $3, $4)";
pub(super) const ADVANCE_CHAIN: &str =
    "UPDATE agents SET last_seq = $2, last_hash = $3, last_seen_ms = $4 WHERE agent_id = $1";

impl Tx<'_> {
    pub async fn lock_agents(
        &mut self,
        agent_ids: &[&str],
    ) -> Result<HashMap<String, Standing>, StoreError> {
        let rows = self
            .tx
            .query(&self.statements.lock_agents, &[&agent_ids])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Standing::from_row(r.get(1), r.get(2), r.get(3)),
                )
            })
            .collect())
    }

    pub async fn stored_body_hash(
        &mut self,
        agent_id: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .tx
            .query_opt(
                &self.statements.stored_body_hash,
                &[&agent_id, &(seq as i64)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn insert_gap(
        &mut self,
        agent_id: &str,
        from: u64,
        to: u64,
        detected_ms: i64,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                &self.statements.insert_gap,
                &[&agent_id, &(from as i64), &(to as i64), &detected_ms],
            )
            .await?;
        Ok(())
    }

    /// Sends every row's statements at once (the server runs them in the
    /// order sent): one round trip for a batch rather than one per event.
    pub async fn insert_alerts(&mut self, rows: &[AlertRow<'_>]) -> Result<(), StoreError> {
        let this = &*self;
        futures_util::future::try_join_all(rows.iter().map(|row| this.insert_alert(row))).await?;
        Ok(())
    }

    async fn insert_alert(&self, row: &AlertRow<'_>) -> Result<(), StoreError> {
        let e = row.event;
        let d = row.derived();
        let id: i64 = self
            .tx
            .query_one(
                &self.statements.insert_alert,
                &[
                    &e.event_id,
                    &e.agent_id,
                    &(e.seq as i64),
                    &e.time_ms,
                    &row.received_ms,
                    &row.clock_skew,
                    &row.chain_ok,
                    &e.user,
                    &e.station,
                    &d.source,
                    &d.context,
                    &d.app,
                    &d.app_path,
                    &d.window_title,
                    &d.url,
                    &d.search_query,
                    &d.category,
                    &d.severity,
                    &d.rule_id,
                    &d.term,
                    &d.matches,
                    &i64::from(e.rules_version),
                    &i64::from(e.count),
                    &row.sealed_capture.is_some(),
                    &row.body,
                    &row.signature,
                    &row.body_hash.as_slice(),
                    &d.state,
                    &e.repeat_of,
                    &i64::from(tutela_proto::PROTOCOL_VERSION),
                ],
            )
            .await?
            .get(0);
        if !e.repeat_of.is_empty() && e.count > 0 {
            self.tx
                .execute(
                    &self.statements.fold,
                    &[&e.agent_id, &e.repeat_of, &i64::from(e.count)],
                )
                .await?;
        }
        if let (Some(sealed), Some(info)) = (row.sealed_capture, &e.capture) {
            self.tx
                .execute(
                    &self.statements.insert_capture,
                    &[
                        &id,
                        &info.sha256,
                        &(info.size as i64),
                        &i64::from(info.width),
                        &i64::from(info.height),
                        &sealed,
                        &row.capture_key,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    pub async fn advance_chains(
        &mut self,
        chains: &[(&str, u64, [u8; 32])],
        seen_ms: i64,
    ) -> Result<(), StoreError> {
        let this = &*self;
        let updates = chains.iter().map(|(agent_id, last_seq, last_hash)| {
            let last_seq = *last_seq as i64;
            async move {
                this.tx
                    .execute(
                        &this.statements.advance_chain,
                        &[agent_id, &last_seq, &last_hash.as_slice(), &seen_ms],
                    )
                    .await
            }
        });
        futures_util::future::try_join_all(updates).await?;
        Ok(())
    }
}
