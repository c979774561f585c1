//! Monitoring notices and acknowledgements on PostgreSQL.

use tokio_postgres::GenericClient;
use tutela_proto::v1::SignedNotice;

use super::exemption::audit;
use super::publication::ANNOUNCE;
use super::Shared;
use crate::store::exemption::AuditNote;
use crate::store::notice::{
    next_issue, AckRecord, AckRow, NewNoticeRow, Resigner, Signer, Standing, StoredNotice,
};
use crate::store::StoreError;

const COLUMNS: &str =
    "grp, version, text, mode, concern_url, created_by, created_ms, body, signature, school, issue";

/// The group's highest version and its next issue.
async fn latest(
    tx: &impl GenericClient,
    group: &str,
) -> Result<(Option<i64>, u64), tokio_postgres::Error> {
    let r = tx
        .query_one(
            "SELECT MAX(version), MAX(issue) FROM notices WHERE grp = $1",
            &[&group],
        )
        .await?;
    Ok((r.get(0), next_issue(r.get(1), r.get(0))))
}

fn row(r: &tokio_postgres::Row) -> StoredNotice {
    StoredNotice {
        grp: r.get(0),
        version: r.get::<_, i64>(1) as u32,
        text: r.get(2),
        mode: r.get(3),
        concern_url: r.get(4),
        created_by: r.get(5),
        created_ms: r.get(6),
        signed: SignedNotice {
            body: r.get(7),
            signature: r.get(8),
        },
        school: r.get(9),
        issue: r.get::<_, i64>(10).max(0) as u64,
    }
}

impl Shared {
    /// Stores the group's next version, its audit entry and the
    /// announcement in one transaction; the table is locked so two
    /// collectors never give two notices one version.
    pub async fn set_notice(
        &self,
        new: &NewNoticeRow<'_>,
        sign: &Signer<'_>,
        note: impl FnOnce(u32) -> AuditNote + Send,
    ) -> Result<u32, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("LOCK TABLE notices IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let (last, issue) = latest(&tx, new.group).await?;
        let version = last.map_or(0, |v| v as u32) + 1;
        let signed = sign(version, issue, new.created_ms);
        tx.execute(
            "INSERT INTO notices (grp, version, text, mode, concern_url, body, signature,
                 created_by, created_ms, school, issue)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &new.group,
                &i64::from(version),
                &new.text,
                &new.mode,
                &new.concern_url,
                &signed.body,
                &signed.signature,
                &new.created_by,
                &new.created_ms,
                &new.school,
                &(issue as i64),
            ],
        )
        .await?;
        audit(&tx, &note(version)).await?;
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub async fn current_notices(&self) -> Result<Vec<StoredNotice>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT DISTINCT ON (grp, school) {COLUMNS} FROM notices
                     ORDER BY grp, school, version DESC"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    pub async fn notice_bodies(
        &self,
        group: &str,
        version: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM (
                     SELECT body, 0 AS earlier, issue FROM notices WHERE grp = $1 AND version = $2
                     UNION ALL
                     SELECT body, 1, issue FROM notice_reissued WHERE grp = $1 AND version = $2
                 ) b ORDER BY earlier, issue DESC",
                &[&group, &i64::from(version)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// As the SQLite store's `reissue`, with the table locked as for a new
    /// version, and announced.
    pub async fn reissue_notice(
        &self,
        group: &str,
        school: &str,
        sign: &Resigner<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("LOCK TABLE notices IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let shown = tx
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM notices WHERE grp = $1 AND school IN ($2, '')
                     ORDER BY school = '', version DESC LIMIT 1"
                ),
                &[&group, &school],
            )
            .await?;
        let Some(shown) = shown.as_ref().map(row) else {
            return Ok(None);
        };
        let (_, issue) = latest(&tx, group).await?;
        if shown.issue + 1 >= issue {
            return Ok(None);
        }
        let now_ms = crate::store::now_ms();
        let signed = sign(&shown, issue, now_ms);
        let version = i64::from(shown.version);
        tx.execute(
            "INSERT INTO notice_reissued (grp, version, issue, body, signature, replaced_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &group,
                &version,
                &(shown.issue as i64),
                &shown.signed.body,
                &shown.signed.signature,
                &now_ms,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE notices SET body = $3, signature = $4, issue = $5 WHERE grp = $1 AND version = $2",
            &[&group, &version, &signed.body, &signed.signature, &(issue as i64)],
        )
        .await?;
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(Some(issue))
    }

    pub async fn insert_ack(&self, ack: &AckRow<'_>) -> Result<bool, StoreError> {
        let stored = self
            .client()
            .await?
            .execute(
                r#"INSERT INTO notice_acks (agent_id, ack_id, "user", station, grp, version,
                     time_ms, received_ms, body, signature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (agent_id, ack_id) DO NOTHING"#,
                &[
                    &ack.agent_id,
                    &ack.ack_id,
                    &ack.user,
                    &ack.station,
                    &ack.group,
                    &i64::from(ack.version),
                    &ack.time_ms,
                    &ack.received_ms,
                    &ack.body,
                    &ack.signature,
                ],
            )
            .await?;
        Ok(stored == 1)
    }

    pub async fn acks_of(
        &self,
        school: Option<Vec<String>>,
        user: &str,
    ) -> Result<Vec<AckRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                r#"SELECT time_ms, station, grp, version FROM notice_acks
                 WHERE lower("user") = lower($1)
                 AND ($2::TEXT[] IS NULL OR agent_id IN (SELECT agent_id FROM agents WHERE school = ANY($2)))
                 ORDER BY time_ms, id"#,
                &[&user, &school],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AckRecord {
                time_ms: r.get(0),
                station: r.get(1),
                group: r.get(2),
                version: r.get::<_, i64>(3) as u32,
            })
            .collect())
    }

    pub async fn notice_standings(&self, group: &str) -> Result<Vec<Standing>, StoreError> {
        let client = self.client().await?;
        standings(&*client, group).await
    }

    pub async fn notice_standings_at(
        &self,
        group: &str,
        school: &str,
        notice_school: &str,
    ) -> Result<Vec<Standing>, StoreError> {
        let client = self.client().await?;
        standings_in(&*client, group, school, notice_school).await
    }
}

/// Every current notice, newest version per group.
pub(super) async fn current_all(c: &impl GenericClient) -> Result<Vec<StoredNotice>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT DISTINCT ON (grp, school) {COLUMNS} FROM notices
                 ORDER BY grp, school, version DESC"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// Who in `group` acknowledged which version last (see `notice::acceptance_in`).
pub(super) async fn standings(
    c: &impl GenericClient,
    group: &str,
) -> Result<Vec<Standing>, StoreError> {
    standings_in(c, group, "", "").await
}

/// As [`standings`], on the stations of `school` only ('' for every
/// school): acknowledgements given on them and alerts from them; a pupil's
/// standing is the newest version it accepted of the notices of
/// `notice_school` ('' for the trust's) only (see the SQLite store's).
pub(super) async fn standings_in(
    c: &impl GenericClient,
    group: &str,
    school: &str,
    notice_school: &str,
) -> Result<Vec<Standing>, StoreError> {
    let rows = c
        .query(
            r#"WITH acks AS (
                 SELECT "user", version, time_ms, station FROM notice_acks WHERE grp = $1
                 AND ($2 = '' OR agent_id IN (SELECT agent_id FROM agents WHERE school = $2))
             ), known AS (
                 SELECT "user" FROM acks
                 UNION
                 SELECT a."user" FROM alerts a JOIN agents g ON g.agent_id = a.agent_id
                 WHERE g.grp = $1 AND a.source <> 'pupil_report' AND a."user" <> ''
                 AND ($2 = '' OR g.school = $2)
             ), newest AS (
                 SELECT DISTINCT ON ("user") "user", version, time_ms, station
                 FROM acks
                 WHERE version IN (SELECT version FROM notices WHERE grp = $1 AND school = $3)
                 ORDER BY "user", version DESC, time_ms DESC
             )
             SELECT k."user", n.version, n.time_ms, n.station
             FROM known k LEFT JOIN newest n ON n."user" = k."user"
             ORDER BY k."user""#,
            &[&group, &school, &notice_school],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Standing {
            user: r.get(0),
            version: r.get::<_, Option<i64>>(1).map_or(0, |v| v as u32),
            time_ms: r.get(2),
            station: r.get::<_, Option<String>>(3).unwrap_or_default(),
        })
        .collect())
}
