//! Leases on PostgreSQL: one row per lease, expiry by the database's
//! clock (collectors' clocks may differ).

use super::jobs::Jobs;
use crate::store::StoreError;

/// The database's time in milliseconds.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

impl Jobs {
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let row = conn
            .client()
            .query_opt(
                &format!(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, {NOW} + $3)
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_ms = EXCLUDED.expires_ms
                     WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms < {NOW}
                     RETURNING holder"
                ),
                &[&name, &holder, &ttl_ms],
            )
            .await?;
        Ok(row.is_some())
    }

    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.client()
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }
}

impl Jobs {
    /// Deletes the leases whose names start with `prefix` and sort before
    /// `before` (names that sort by time: claims of past slots).
    pub async fn forget_leases_before(
        &self,
        prefix: &str,
        before: &str,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .client()
            .execute(
                "DELETE FROM leases WHERE left(name, length($1)) = $1 AND name < $2",
                &[&prefix, &before],
            )
            .await?)
    }
}
