//! The Fleet page's stations and the Tokens page's enrolment tokens on
//! PostgreSQL; each change commits with its audit entries.

use super::console::Pg;
use super::users::audit;
use crate::store::agents::{NewToken, TokenInfo};
use crate::store::fleet::{
    Enrolled, Family, Gap, ListingRow, Revoked, Station, StationChange, ENROLLED_COLUMNS,
    STATION_COLUMNS,
};
use crate::store::schools::Scope;
use crate::store::users::Audited;
use crate::store::StoreError;

impl Pg<'_> {
    /// Every enrolled agent, revoked ones included, in enrolment order.
    pub fn enrolled(&self) -> Result<Vec<Enrolled>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let sql =
                format!("SELECT {ENROLLED_COLUMNS} FROM agents ORDER BY enrolled_ms, agent_id");
            let rows = c.query(&sql, &[]).await?;
            rows.iter().map(Enrolled::from_row).collect()
        })
    }

    /// Recorded sequence gaps, by agent and sequence number.
    pub fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(
                "SELECT agent_id, from_seq, to_seq FROM gaps ORDER BY agent_id, from_seq",
                &[],
            )
            .await?
            .iter()
            .map(|r| Gap {
                agent_id: r.get(0),
                from_seq: r.get(1),
                to_seq: r.get(2),
            })
            .collect())
        })
    }

    /// Revokes `agent_id` (and its re-keyed descendants as `family` says),
    /// each with an audit entry by `actor`, in one transaction. The agents
    /// table is locked against writes meanwhile (heartbeats wait a moment),
    /// so an identity re-keyed on another collector cannot slip through.
    pub fn revoke_family(
        &self,
        agent_id: &str,
        family: Family,
        actor: &str,
    ) -> Result<Revoked, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.batch_execute("LOCK TABLE agents IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            let known = c
                .query_opt("SELECT 1 FROM agents WHERE agent_id = $1", &[&agent_id])
                .await?
                .is_some();
            if !known {
                return Ok(Revoked::NoAgent);
            }
            let descendants: Vec<String> = c
                .query(DESCENDANTS, &[&agent_id])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !descendants.is_empty() && family == Family::Ask {
                return Ok(Revoked::HasDescendants(descendants));
            }
            let mut targets = vec![agent_id.to_owned()];
            if family == Family::WithDescendants {
                targets.extend(descendants);
            }
            for target in &targets {
                c.execute(
                    "UPDATE agents SET revoked = TRUE WHERE agent_id = $1",
                    &[target],
                )
                .await?;
                audit(
                    c,
                    &Audited {
                        actor,
                        action: "agent-revoke",
                        target,
                        detail: "from the command line",
                    },
                )
                .await?;
            }
            Ok(Revoked::Done(targets))
        })
    }

    pub fn stations(&self, scope: &Scope) -> Result<Vec<Station>, StoreError> {
        let c = self.client()?;
        let school = scope.list();
        self.run(async move {
            let sql = format!(
                "SELECT {STATION_COLUMNS}
                 FROM agents WHERE NOT revoked AND ($1::TEXT[] IS NULL OR school = ANY($1))
                 ORDER BY grp, station"
            );
            let rows = c.query(&sql, &[&school]).await?;
            rows.iter().map(Station::from_row).collect()
        })
    }

    pub fn station(
        &self,
        scope: &Scope,
        agent_id: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let c = self.client()?;
        let school = scope.list();
        self.run(async move {
            Ok(c.query_opt(
                "SELECT station, grp, COALESCE(flag, '') FROM agents
                 WHERE agent_id = $1 AND NOT revoked AND ($2::TEXT[] IS NULL OR school = ANY($2))",
                &[&agent_id, &school],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
        })
    }

    pub fn descendants(&self, agent_id: &str) -> Result<Vec<String>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(DESCENDANTS, &[&agent_id])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    pub fn change_stations(
        &self,
        change: StationChange,
        targets: &[(String, Audited<'_>)],
    ) -> Result<bool, StoreError> {
        let sql = match change {
            StationChange::Revoke => {
                "UPDATE agents SET revoked = TRUE WHERE agent_id = $1 AND NOT revoked"
            }
            StationChange::ClearFlag => {
                "UPDATE agents SET flag = NULL WHERE agent_id = $1 AND NOT revoked"
            }
        };
        let c = self.client()?;
        let changed = self.unit(async move {
            for (i, (agent_id, entry)) in targets.iter().enumerate() {
                if c.execute(sql, &[agent_id]).await? == 0 {
                    if i == 0 {
                        // Nothing changed yet: the transaction commits empty.
                        return Ok(false);
                    }
                    continue;
                }
                audit(c, entry).await?;
            }
            Ok(true)
        })?;
        Ok(changed)
    }

    pub fn tokens(&self, scope: &Scope) -> Result<Vec<TokenInfo>, StoreError> {
        let c = self.client()?;
        let school = scope.list();
        self.run(async move {
            Ok(c.query(
                "SELECT secret_hash, label, grp, created_ms, expires_ms, max_uses, uses, revoked, school
                 FROM tokens WHERE ($1::TEXT[] IS NULL OR school = ANY($1))
                 ORDER BY created_ms DESC, secret_hash",
                &[&school],
            )
            .await?
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
        })
    }

    pub fn create_token(&self, t: &NewToken, entry: &Audited<'_>) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
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
            audit(c, entry).await
        })
    }

    pub fn revoke_token(&self, id: &str, entry: &Audited<'_>) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "UPDATE tokens SET revoked = TRUE WHERE encode(substr(secret_hash, 1, 6), 'hex') = $1",
                &[&id],
            )
            .await?;
            audit(c, entry).await
        })
    }
}

/// Every agent re-keyed from `$1`, directly or through others, by id.
const DESCENDANTS: &str = "WITH RECURSIVE d(id) AS (
     SELECT agent_id FROM agents WHERE rekeyed_from = $1
     UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
 SELECT id FROM d ORDER BY id";

/// Fleet listing rows read from PostgreSQL.
impl ListingRow for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn text(&self, column: usize) -> Result<String, tokio_postgres::Error> {
        self.try_get(column)
    }
    fn int(&self, column: usize) -> Result<i64, tokio_postgres::Error> {
        self.try_get(column)
    }
    fn maybe_int(&self, column: usize) -> Result<Option<i64>, tokio_postgres::Error> {
        self.try_get(column)
    }
    fn flag(&self, column: usize) -> Result<bool, tokio_postgres::Error> {
        self.try_get(column)
    }
}
