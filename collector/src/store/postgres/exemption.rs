//! Curriculum exemptions on PostgreSQL, and the audit entries of changes
//! to what agents hold.

use tokio_postgres::Transaction;

use super::publication::ANNOUNCE;
use super::Shared;
use crate::store::audit::{entry_hash, Entry, GENESIS};
use crate::store::exemption::{
    visible, AuditNote, Exemption, GroupAgents, NewExemptionRow, Revoked,
};
use crate::store::StoreError;

pub(super) const COLUMNS: &str =
    "id, grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, revoked_ms, school";

pub(super) fn row(r: &tokio_postgres::Row) -> Exemption {
    Exemption {
        id: r.get(0),
        grp: r.get(1),
        category: r.get(2),
        term: r.get(3),
        reason: r.get(4),
        created_by: r.get(5),
        created_ms: r.get(6),
        starts_ms: r.get(7),
        ends_ms: r.get(8),
        revoked_ms: r.get(9),
        school: r.get(10),
    }
}

/// Appends an entry to the audit log's hash chain in `tx`, under the same
/// advisory lock as the console's entries (`users::AUDIT_LOCK`), so entries
/// written by every collector and page form one chain.
pub(super) async fn audit(tx: &Transaction<'_>, note: &AuditNote) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&super::users::AUDIT_LOCK],
    )
    .await?;
    let last = tx
        .query_opt(
            "SELECT id, hash FROM console_audit ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    let (id, prev) = match last {
        Some(r) => (r.get::<_, i64>(0) + 1, r.get::<_, String>(1)),
        None => (1, GENESIS.to_owned()),
    };
    let entry = Entry {
        id,
        time_ms: crate::store::now_ms(),
        actor: note.actor.clone(),
        action: note.action.to_owned(),
        target: note.target.clone(),
        detail: note.detail.clone(),
        school: tx
            .query_opt(
                "SELECT CASE WHEN COUNT(DISTINCT school) = 1 AND MAX(strpos(school, ',')) = 0
                     THEN MAX(school) ELSE '' END
                 FROM console_grants WHERE \"user\" = $1",
                &[&note.actor],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_default(),
    };
    let hash = entry_hash(&prev, &entry);
    tx.execute(
        "INSERT INTO console_audit (id, time_ms, actor, action, target, detail, prev_hash, hash, school)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &id,
            &entry.time_ms,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.detail,
            &prev,
            &hash,
            &entry.school,
        ],
    )
    .await?;
    Ok(())
}

impl Shared {
    pub async fn add_exemption(
        &self,
        new: &NewExemptionRow<'_>,
        note: impl FnOnce(i64) -> AuditNote + Send,
    ) -> Result<i64, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms,
                     starts_ms, ends_ms, school)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &[
                    &new.group,
                    &new.category,
                    &new.term,
                    &new.reason,
                    &new.created_by,
                    &new.created_ms,
                    &new.starts_ms,
                    &new.ends_ms,
                    &new.school,
                ],
            )
            .await?
            .get(0);
        audit(&tx, &note(id)).await?;
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn revoke_exemption(
        &self,
        schools: Option<&[String]>,
        id: i64,
        now_ms: i64,
        note: impl FnOnce(&Exemption) -> AuditNote + Send,
    ) -> Result<Revoked, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        let existing = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM exemptions WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .map(|r| row(&r));
        let visible = |e: &Exemption| visible(schools, &e.school);
        let Some(existing) = existing.filter(visible) else {
            return Ok(Revoked::NotFound);
        };
        if schools.is_some() && existing.school.is_empty() {
            return Ok(Revoked::TrustWide);
        }
        if existing.revoked_ms.is_some() {
            return Ok(Revoked::Already);
        }
        tx.execute(
            "UPDATE exemptions SET revoked_ms = $2 WHERE id = $1",
            &[&id, &now_ms],
        )
        .await?;
        audit(&tx, &note(&existing)).await?;
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(Revoked::Done)
    }

    /// The exemptions seen over `schools` (`None`: every one): theirs and
    /// the trust-wide ones, newest first.
    pub async fn exemptions(
        &self,
        schools: Option<Vec<String>>,
    ) -> Result<Vec<Exemption>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM exemptions
                     WHERE $1::TEXT[] IS NULL OR school = '' OR school = ANY($1)
                     ORDER BY id DESC"
                ),
                &[&schools],
            )
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    /// Exemptions in force or still to come at `now_ms`.
    pub async fn pending_exemptions(&self, now_ms: i64) -> Result<Vec<Exemption>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM exemptions
                     WHERE revoked_ms IS NULL AND ends_ms > $1 ORDER BY id"
                ),
                &[&now_ms],
            )
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    pub async fn move_agent(
        &self,
        agent_id: &str,
        group: &str,
        now_ms: i64,
        note: &AuditNote,
    ) -> Result<bool, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE agents SET grp = $2, group_moved_ms = $3 WHERE agent_id = $1 AND NOT revoked",
                &[&agent_id, &group, &now_ms],
            )
            .await?;
        if moved != 1 {
            return Ok(false);
        }
        audit(&tx, note).await?;
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Agents moved to another group or school: (agent, (group, school)).
    pub async fn moves(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT agent_id, grp, school FROM agents WHERE group_moved_ms > 0 AND NOT revoked",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    pub async fn group_agents(&self, group: &str) -> Result<GroupAgents, StoreError> {
        let client = self.client().await?;
        let in_group = client
            .query_one(
                "SELECT COUNT(*) FROM agents WHERE grp = $1 AND NOT revoked",
                &[&group],
            )
            .await?
            .get(0);
        let groups = client
            .query(
                "SELECT DISTINCT grp FROM agents WHERE NOT revoked AND grp <> '' ORDER BY grp",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(GroupAgents { in_group, groups })
    }
}
