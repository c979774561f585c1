//! Schools on PostgreSQL (the table and columns are migration 7).

use super::Shared;
use crate::store::schools::{Added, School};
use crate::store::StoreError;

impl Shared {
    pub async fn put_school(&self, id: &str, name: &str, now_ms: i64) -> Result<Added, StoreError> {
        let inserted = self
            .client()
            .await?
            .query_one(
                "INSERT INTO schools (id, name, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
                 RETURNING (xmax = 0)",
                &[&id, &name, &now_ms],
            )
            .await?
            .get::<_, bool>(0);
        Ok(if inserted {
            Added::Created
        } else {
            Added::Renamed
        })
    }

    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, created_ms, time_zone, retention_months FROM schools ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| School {
                id: r.get(0),
                name: r.get(1),
                created_ms: r.get(2),
                time_zone: r.get(3),
                retention_months: u32::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
    }
}

impl super::jobs::Jobs {
    /// Every school, by id.
    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = conn
            .client()
            .query(
                "SELECT id, name, created_ms, time_zone, retention_months FROM schools ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| School {
                id: r.get(0),
                name: r.get(1),
                created_ms: r.get(2),
                time_zone: r.get(3),
                retention_months: u32::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
    }
}

impl super::console::Pg<'_> {
    /// Moves unrevoked agent `agent_id` to school `to` (which must exist),
    /// audited; the school it left, or `None` when there is no such agent or
    /// school.
    pub fn move_agent_school(
        &self,
        agent_id: &str,
        to: &str,
        entry: &crate::store::users::Audited<'_>,
    ) -> Result<Option<String>, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            let from: Option<String> = c
                .query_opt(
                    "SELECT school FROM agents WHERE agent_id = $1 AND NOT revoked
                     AND EXISTS (SELECT 1 FROM schools WHERE id = $2) FOR UPDATE",
                    &[&agent_id, &to],
                )
                .await?
                .map(|r| r.get(0));
            if from.is_none() {
                return Ok(None);
            }
            // Recorded as a move: agents on every collector are sent the
            // new school's exemptions and notice at once.
            c.execute(
                "UPDATE agents SET school = $2, group_moved_ms = $3 WHERE agent_id = $1",
                &[&agent_id, &to, &crate::store::now_ms()],
            )
            .await?;
            super::users::audit(c, entry).await?;
            c.batch_execute(super::publication::ANNOUNCE).await?;
            Ok(from)
        })
    }
}
