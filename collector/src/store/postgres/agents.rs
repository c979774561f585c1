//! Agents, enrolment tokens and heartbeats on PostgreSQL.

use super::{Shared, Tx};
use crate::store::agents::{
    AgentKeyRow, AgentRow, HeartbeatRow, HeartbeatStanding, NewAgent, NewToken, TokenInfo,
    TokenRow, FLAG_LIMIT,
};
use crate::store::StoreError;

// Refused in the same statement when the agent was revoked or the
// heartbeat is not newer than the last one.
pub(super) const HEARTBEAT: &str = "UPDATE agents SET last_seen_ms = $2, agent_version = $3,
        rules_version = $4, spool_backlog = $5, spool_dropped = $6, last_heartbeat_ms = $7,
        problems = $8
     WHERE agent_id = $1 AND NOT revoked AND last_heartbeat_ms < $7";

const AGENT_COLUMNS: &str = "agent_id, public_key, revoked, grp, school";

fn agent_row(r: &tokio_postgres::Row) -> AgentRow {
    AgentRow {
        agent_id: r.get(0),
        public_key: r.get(1),
        revoked: r.get(2),
        group: r.get(3),
        school: r.get(4),
    }
}

impl Shared {
    pub async fn agent_key(&self, agent_id: &str) -> Result<Option<AgentKeyRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT public_key, revoked, grp, school FROM agents WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        Ok(row.map(|r| AgentKeyRow {
            public_key: r.get(0),
            revoked: r.get(1),
            group: r.get(2),
            school: r.get(3),
        }))
    }

    pub async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses, school)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &t.secret_hash,
                    &t.label,
                    &t.group,
                    &t.created_ms,
                    &t.expires_ms,
                    &t.max_uses,
                    &t.school,
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT secret_hash, label, grp, created_ms, expires_ms, max_uses, uses, revoked, school
                 FROM tokens ORDER BY created_ms DESC, secret_hash",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let hash: Vec<u8> = r.get(0);
                TokenInfo {
                    id: hex::encode(&hash)[..12].to_owned(),
                    label: r.get(1),
                    group: r.get(2),
                    created_ms: r.get(3),
                    expires_ms: r.get(4),
                    max_uses: r.get(5),
                    uses: r.get(6),
                    revoked: r.get(7),
                    school: r.get(8),
                }
            })
            .collect())
    }

    pub async fn revoke_token(&self, id: &str) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE tokens SET revoked = TRUE WHERE encode(substr(secret_hash, 1, 6), 'hex') = $1",
                &[&id],
            )
            .await?)
    }
}

impl Tx<'_> {
    pub async fn record_heartbeat(&mut self, row: &HeartbeatRow<'_>) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute(
                &self.statements.heartbeat,
                &[
                    &row.agent_id,
                    &row.seen_ms,
                    &row.agent_version,
                    &row.rules_version,
                    &row.spool_backlog,
                    &row.spool_dropped,
                    &row.agent_ms,
                    &row.problems,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    pub async fn heartbeat_standing(
        &mut self,
        agent_id: &str,
    ) -> Result<Option<HeartbeatStanding>, StoreError> {
        let row = self
            .tx
            .query_opt(
                "SELECT revoked, last_heartbeat_ms FROM agents WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        Ok(row.map(|r| HeartbeatStanding {
            revoked: r.get(0),
            last_heartbeat_ms: r.get(1),
        }))
    }

    pub async fn host_of(&mut self, agent_id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .tx
            .query_opt(
                "SELECT machine_id FROM agent_hosts WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn record_host(
        &mut self,
        agent_id: &str,
        machine_id: &str,
        station: &str,
        first_ms: i64,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO agent_hosts (agent_id, machine_id, station, first_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO NOTHING",
                &[&agent_id, &machine_id, &station, &first_ms],
            )
            .await?;
        Ok(())
    }

    pub async fn flag(&mut self, agent_id: &str, note: &str) -> Result<(), StoreError> {
        self.tx
            .execute(
                &format!(
                    "UPDATE agents SET flag = CASE WHEN flag IS NULL OR flag = '' THEN $2
                         WHEN length(flag) > {FLAG_LIMIT} THEN flag ELSE flag || '; ' || $2 END
                     WHERE agent_id = $1"
                ),
                &[&agent_id, &note],
            )
            .await?;
        Ok(())
    }

    pub async fn token_for_use(
        &mut self,
        secret_hash: &[u8],
    ) -> Result<Option<TokenRow>, StoreError> {
        // Locked until the enrolment commits: another collector's enrolment
        // with the same token waits, then sees this one's use.
        let row = self
            .tx
            .query_opt(
                "SELECT expires_ms, max_uses, uses, revoked, grp, school FROM tokens
                 WHERE secret_hash = $1 FOR UPDATE",
                &[&secret_hash],
            )
            .await?;
        Ok(row.map(|r| TokenRow {
            expires_ms: r.get(0),
            max_uses: r.get(1),
            uses: r.get(2),
            revoked: r.get(3),
            group: r.get(4),
            school: r.get(5),
        }))
    }

    pub async fn consume_token(&mut self, secret_hash: &[u8]) -> Result<(), StoreError> {
        self.tx
            .execute(
                "UPDATE tokens SET uses = uses + 1 WHERE secret_hash = $1",
                &[&secret_hash],
            )
            .await?;
        Ok(())
    }

    pub async fn agent_by_key(
        &mut self,
        public_key: &[u8],
    ) -> Result<Option<AgentRow>, StoreError> {
        let row = self
            .tx
            .query_opt(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE public_key = $1"),
                &[&public_key],
            )
            .await?;
        Ok(row.as_ref().map(agent_row))
    }

    pub async fn agent(&mut self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        // Locked: two re-keys of one identity through two collectors are
        // counted against its family one after the other.
        let row = self
            .tx
            .query_opt(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = $1 FOR UPDATE"),
                &[&agent_id],
            )
            .await?;
        Ok(row.as_ref().map(agent_row))
    }

    pub async fn set_group(
        &mut self,
        agent_id: &str,
        group: &str,
        school: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "UPDATE agents SET grp = $2, school = $3 WHERE agent_id = $1",
                &[&agent_id, &group, &school],
            )
            .await?;
        Ok(())
    }

    pub async fn insert_agent(&mut self, a: &NewAgent<'_>) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO agents (agent_id, public_key, station, grp, agent_version, enrolled_ms, rekeyed_from, school)
                 VALUES ($1, $2, $3, $4, $5, $6, $7,
                    CASE WHEN $7 = '' THEN $8 ELSE (SELECT school FROM agents WHERE agent_id = $7) END)",
                &[
                    &a.agent_id,
                    &a.public_key,
                    &a.station,
                    &a.group,
                    &a.agent_version,
                    &a.enrolled_ms,
                    &a.rekeyed_from,
                    &a.school,
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn live_agents_on_machine(
        &mut self,
        machine_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .tx
            .query(
                "SELECT h.agent_id FROM agent_hosts h JOIN agents a USING (agent_id)
                 WHERE h.machine_id = $1 AND NOT a.revoked ORDER BY h.agent_id",
                &[&machine_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn family(&mut self, agent_id: &str) -> Result<(String, i64), StoreError> {
        let root: String = self
            .tx
            .query_opt(
                "WITH RECURSIVE up(id, parent, depth) AS (
                     SELECT agent_id, rekeyed_from, 0 FROM agents WHERE agent_id = $1
                     UNION ALL SELECT a.agent_id, a.rekeyed_from, up.depth + 1
                     FROM agents a JOIN up ON a.agent_id = up.parent
                     WHERE up.parent <> '' AND up.depth < 100000)
                 SELECT id FROM up ORDER BY depth DESC LIMIT 1",
                &[&agent_id],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_else(|| agent_id.to_owned());
        let count: i64 = self
            .tx
            .query_one(
                "WITH RECURSIVE d(id) AS (
                     SELECT agent_id FROM agents WHERE rekeyed_from = $1
                     UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
                 SELECT COUNT(*) FROM d",
                &[&root],
            )
            .await?
            .get(0);
        Ok((root, count))
    }
}
