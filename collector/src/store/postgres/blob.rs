//! Captures in object storage, on PostgreSQL: the row's object key, and the
//! queue of objects whose rows were deleted (filled by a trigger).

use super::console::Pg;
use super::Shared;
use crate::store::blob::StoredCapture;
use crate::store::StoreError;

impl Pg<'_> {
    /// What the row of alert `alert_id` holds of its capture.
    pub fn stored_capture(&self, alert_id: i64) -> Result<Option<StoredCapture>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT sealed, object_key FROM captures WHERE alert_id = $1",
                &[&alert_id],
            )
            .await?
            .map(|r| match r.get::<_, Option<String>>(1) {
                Some(key) => StoredCapture::Object(key),
                None => StoredCapture::Inline(r.get(0)),
            }))
        })
    }
}

impl Shared {
    /// Up to `limit` keys of objects whose rows were deleted.
    pub async fn capture_objects_gone(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT object_key FROM capture_objects_gone ORDER BY object_key LIMIT $1",
                &[&(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Forgets deleted objects.
    pub async fn forget_capture_objects(&self, keys: &[String]) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM capture_objects_gone WHERE object_key = ANY($1)",
                &[&keys],
            )
            .await?;
        Ok(())
    }

    /// Whether a row names the object `key`.
    pub async fn capture_object_known(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM captures WHERE object_key = $1)",
                &[&key],
            )
            .await?
            .get(0))
    }
}
