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
            .query("SELECT id, name, created_ms FROM schools ORDER BY id", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| School {
                id: r.get(0),
                name: r.get(1),
                created_ms: r.get(2),
            })
            .collect())
    }
}
