//! Rule publication on PostgreSQL: bundles, shadow candidates, what agents
//! should hold, and the `LISTEN` connection that hears of changes made by
//! any collector.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::Shared;
use tutela_proto::v1::HeartbeatBody;

use crate::store::exemption::AuditNote;
use crate::store::publication::{
    AgentRules, BundleRow, NewBundle, PublicationState, Published, ShadowTotal, CHANNEL,
    MAX_RUN_ID_LEN, MAX_SHADOW_COUNT, MAX_SHADOW_RULES, MAX_SHADOW_RULE_IDS, MAX_SHADOW_RUNS,
};
use crate::store::StoreError;

/// Longest wait between attempts to listen again after the connection dropped.
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// Announces a change to every collector's reader; delivered when (and
/// only if) the transaction it is sent in commits.
pub(super) const ANNOUNCE: &str = "SELECT pg_notify('tutela_publication', '')";

fn version(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

impl Shared {
    pub async fn latest_bundle(&self, shadow: bool) -> Result<Option<BundleRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT version, bundle, pack_toml FROM rule_bundles WHERE shadow = $1
                 ORDER BY version DESC LIMIT 1",
                &[&shadow],
            )
            .await?;
        Ok(row.map(|r| BundleRow {
            version: r.get::<_, i64>(0) as u32,
            bundle: r.get(1),
            pack_toml: r.get(2),
        }))
    }

    pub async fn bundle(&self, shadow: bool, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT bundle FROM rule_bundles WHERE shadow = $1 AND version = $2",
                &[&shadow, &i64::from(version)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores a bundle on a connection of its own, in one transaction that
    /// locks the table (two collectors publishing at once are put in order,
    /// and the later one's version is checked against the earlier's), and
    /// announces it.
    pub async fn publish_bundle(
        &self,
        new: &NewBundle<'_>,
        note: Option<&AuditNote>,
    ) -> Result<Published, StoreError> {
        let mut client = self.config.connect().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("LOCK TABLE rule_bundles IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let floor: Option<i64> = tx
            .query_one(
                "SELECT MAX(version) FROM rule_bundles WHERE NOT shadow OR shadow = $1",
                &[&new.shadow],
            )
            .await?
            .get(0);
        if let Some(floor) = version(floor).filter(|f| *f >= new.version) {
            return Ok(Published::NotNewerThan(floor));
        }
        let v = i64::from(new.version);
        tx.execute(
            "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &new.pack_id,
                &v,
                &new.shadow,
                &new.bundle,
                &new.pack_toml,
                &new.published_ms,
            ],
        )
        .await?;
        if new.shadow {
            tx.execute(
                "INSERT INTO shadow_rule_ids (version, rule_id) SELECT $1, unnest($2::text[])
                 ON CONFLICT DO NOTHING",
                &[&v, &new.shadow_rule_ids],
            )
            .await?;
        }
        tx.execute("DELETE FROM shadow_rule_ids WHERE version < $1", &[&v])
            .await?;
        // Counts of superseded candidates are of no further use.
        tx.execute(
            "DELETE FROM shadow_run_counts WHERE shadow_version < $1",
            &[&v],
        )
        .await?;
        if let Some(note) = note {
            super::exemption::audit(&tx, note).await?;
        }
        tx.batch_execute(ANNOUNCE).await?;
        tx.commit().await?;
        Ok(Published::Stored)
    }

    pub async fn shadow_totals(&self, version: u32) -> Result<(Vec<ShadowTotal>, i64), StoreError> {
        let client = self.client().await?;
        let v = i64::from(version);
        let rows = client
            .query(
                "SELECT rule_id, LEAST(SUM(count), 9000000000000000000)::BIGINT,
                        COUNT(DISTINCT agent_id)
                 FROM shadow_run_counts WHERE shadow_version = $1
                 GROUP BY rule_id ORDER BY SUM(count) DESC, rule_id",
                &[&v],
            )
            .await?;
        let totals = rows
            .iter()
            .map(|r| ShadowTotal {
                rule_id: r.get(0),
                count: r.get(1),
                agents: r.get(2),
            })
            .collect();
        let agents = client
            .query_one(
                "SELECT COUNT(DISTINCT agent_id) FROM shadow_run_counts WHERE shadow_version = $1",
                &[&v],
            )
            .await?
            .get(0);
        Ok((totals, agents))
    }

    pub async fn agents_rules(&self) -> Result<Vec<AgentRules>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT agent_id, station, rules_version FROM agents ORDER BY station, agent_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AgentRules {
                agent_id: r.get(0),
                station: r.get(1),
                rules_version: r.get(2),
            })
            .collect())
    }

    /// What agents should hold. Revoked agents are read last: a revocation
    /// committed before a publication this reading sees is seen with it.
    pub async fn publication_state(&self, now_ms: i64) -> Result<PublicationState, StoreError> {
        let client = self.client().await?;
        let newest = client
            .query_one(
                "SELECT (SELECT MAX(version) FROM rule_bundles WHERE NOT shadow),
                        (SELECT MAX(version) FROM rule_bundles WHERE shadow)",
                &[],
            )
            .await?;
        let exemptions = self.pending_exemptions(now_ms).await?;
        let notices = self
            .current_notices()
            .await?
            .into_iter()
            .map(|n| (n.grp, n.school, n.signed))
            .collect();
        let moves = self.moves().await?;
        let revoked: HashSet<String> = client
            .query("SELECT agent_id FROM agents WHERE revoked", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(PublicationState {
            live: version(newest.get(0)),
            shadow: version(newest.get(1)),
            exemptions,
            revoked,
            notices,
            moves,
        })
    }

    /// Listens for announcements on a connection of its own, made again
    /// (with backoff) whenever it drops; the counter moves on every
    /// announcement and every new connection.
    pub fn listen(&self) -> watch::Receiver<u64> {
        let (tx, rx) = watch::channel(0u64);
        let config = self.config.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                match listen_once(&config, &tx).await {
                    Ok(()) => {
                        tracing::warn!(store = %config.target(), "the connection listening for publications ended; listening again");
                        wait = Duration::from_millis(250);
                    }
                    Err(e) => {
                        tracing::warn!(store = %config.target(), error = %e, retry_ms = wait.as_millis() as u64, "cannot listen for publications; changes made on other collectors are found by the catch-up reads meanwhile");
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RELISTEN_MAX);
            }
        });
        rx
    }
}

/// One listening connection, until it drops (or nobody watches any more).
async fn listen_once(config: &super::PgConfig, tx: &watch::Sender<u64>) -> Result<(), StoreError> {
    let mut pg = config.config.clone();
    pg.application_name("tutela-collector publications");
    let (client, mut connection) =
        pg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unreachable {
                target: config.target().to_owned(),
                reason: super::describe(&e),
            })?;
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel::<()>();
    let notices = tx.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    notices.send_modify(|c| *c += 1);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "the listening connection failed");
                    break;
                }
            }
        }
        let _ = ended_tx.send(());
    });
    let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e.into());
    }
    tracing::info!(store = %config.target(), "listening for publications made on any collector");
    // Anything announced while not listening is found by this reading.
    tx.send_modify(|c| *c += 1);
    tokio::select! {
        _ = &mut ended => {}
        () = tx.closed() => driver.abort(),
    }
    drop(client);
    Ok(())
}

impl super::Tx<'_> {
    /// Records a heartbeat's shadow-run counts, with the limits of the
    /// embedded store (`sqlite::publication::record_shadow_counts`), in a
    /// savepoint: a failure leaves the writer's transaction usable.
    pub async fn record_shadow_counts(&mut self, body: &HeartbeatBody) -> Result<(), StoreError> {
        if body.shadow_version == 0 || body.shadow_counts.is_empty() {
            return Ok(());
        }
        self.tx.batch_execute("SAVEPOINT shadow_counts").await?;
        match self.shadow_counts(body).await {
            Ok(()) => {
                self.tx
                    .batch_execute("RELEASE SAVEPOINT shadow_counts")
                    .await?;
                Ok(())
            }
            Err(e) => {
                self.tx
                    .batch_execute(
                        "ROLLBACK TO SAVEPOINT shadow_counts; RELEASE SAVEPOINT shadow_counts",
                    )
                    .await?;
                Err(e)
            }
        }
    }

    async fn shadow_counts(&mut self, body: &HeartbeatBody) -> Result<(), StoreError> {
        let v = i64::from(body.shadow_version);
        // Only the candidate actually published is counted.
        let current: Option<i64> = self
            .tx
            .query_one("SELECT MAX(version) FROM rule_bundles WHERE shadow", &[])
            .await?
            .get(0);
        if current != Some(v) {
            tracing::debug!(agent_id = %body.agent_id, shadow_version = body.shadow_version, "shadow counts for a version not published as the current candidate ignored");
            return Ok(());
        }
        if body.shadow_run.len() > MAX_RUN_ID_LEN {
            tracing::warn!(agent_id = %body.agent_id, "shadow counts with an over-long run id ignored");
            return Ok(());
        }
        let runs = self
            .tx
            .query_one(
                "SELECT COUNT(DISTINCT run), COALESCE(BOOL_OR(run = $3), FALSE)
                 FROM shadow_run_counts WHERE agent_id = $1 AND shadow_version = $2",
                &[&body.agent_id, &v, &body.shadow_run],
            )
            .await?;
        let (run_count, known_run): (i64, bool) = (runs.get(0), runs.get(1));
        if !known_run && run_count >= MAX_SHADOW_RUNS {
            tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, runs = run_count, "shadow counts of a further agent run ignored: too many restarts recorded for this version");
            return Ok(());
        }
        let offered: Vec<&str> = body
            .shadow_counts
            .keys()
            .take(MAX_SHADOW_RULES)
            .map(String::as_str)
            .filter(|id| id.len() <= 256)
            .collect();
        // Only rules of the candidate pack: an agent cannot fill the table
        // (or the technician's report) with made-up rule ids.
        let ours: HashSet<String> = self
            .tx
            .query(
                "SELECT rule_id FROM shadow_rule_ids WHERE version = $1 AND rule_id = ANY($2)",
                &[&v, &offered],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let known: HashSet<String> = self
            .tx
            .query(
                "SELECT DISTINCT rule_id FROM shadow_run_counts
                 WHERE agent_id = $1 AND shadow_version = $2",
                &[&body.agent_id, &v],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut known_ids = known.len() as i64;
        let (mut ids, mut counts) = (Vec::new(), Vec::new());
        let mut rejected = 0usize;
        for (rule_id, count) in body.shadow_counts.iter().take(MAX_SHADOW_RULES) {
            if rule_id.len() > 256 {
                continue;
            }
            if !ours.contains(rule_id) {
                rejected += 1;
                continue;
            }
            if known_ids >= MAX_SHADOW_RULE_IDS && !known.contains(rule_id) {
                continue;
            }
            known_ids += 1;
            ids.push(rule_id.as_str());
            counts.push(
                i64::try_from(*count)
                    .unwrap_or(i64::MAX)
                    .min(MAX_SHADOW_COUNT),
            );
        }
        if rejected > 0 {
            tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, rejected, "shadow counts for rule ids not in the candidate pack ignored");
        }
        if ids.is_empty() {
            return Ok(());
        }
        self.tx
            .execute(
                "INSERT INTO shadow_run_counts (agent_id, shadow_version, run, rule_id, count, updated_ms)
                 SELECT $1, $2, $3, r, c, $6 FROM unnest($4::text[], $5::bigint[]) AS t(r, c)
                 ON CONFLICT (agent_id, shadow_version, run, rule_id)
                 DO UPDATE SET count = GREATEST(shadow_run_counts.count, excluded.count),
                     updated_ms = excluded.updated_ms",
                &[
                    &body.agent_id,
                    &v,
                    &body.shadow_run,
                    &ids,
                    &counts,
                    &crate::store::now_ms(),
                ],
            )
            .await?;
        Ok(())
    }
}
