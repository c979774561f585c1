//! Rule publication on SQLite: bundles, shadow candidates' rule ids and
//! counts, and what agents should hold.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::exemption::AuditNote;
use tutela_proto::v1::HeartbeatBody;

use crate::store::publication::{
    AgentRules, BundleRow, NewBundle, PublicationState, Published, ShadowTotal, MAX_RUN_ID_LEN,
    MAX_SHADOW_COUNT, MAX_SHADOW_RULES, MAX_SHADOW_RULE_IDS, MAX_SHADOW_RUNS,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rule_bundles (
    id INTEGER PRIMARY KEY,
    pack_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    shadow INTEGER NOT NULL,
    bundle BLOB NOT NULL,
    pack_toml TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    UNIQUE (shadow, version)
);
-- The rule ids of each published shadow (candidate) pack: the only ids
-- agents' would-be-match counts are accepted for.
CREATE TABLE IF NOT EXISTS shadow_rule_ids (
    version INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (version, rule_id)
) WITHOUT ROWID;
";

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

pub fn latest(conn: &Connection, shadow: bool) -> rusqlite::Result<Option<BundleRow>> {
    conn.query_row(
        "SELECT version, bundle, pack_toml FROM rule_bundles WHERE shadow = ?1 ORDER BY version DESC LIMIT 1",
        [shadow],
        |r| Ok(BundleRow { version: r.get(0)?, bundle: r.get(1)?, pack_toml: r.get(2)? }),
    )
    .optional()
}

pub fn bundle(conn: &Connection, shadow: bool, version: u32) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT bundle FROM rule_bundles WHERE shadow = ?1 AND version = ?2",
        params![shadow, version],
        |r| r.get(0),
    )
    .optional()
}

/// Stores a bundle in a savepoint (part of the caller's transaction when
/// there is one: the console publishes and audits in one).
pub fn insert(
    conn: &Connection,
    new: &NewBundle<'_>,
    note: Option<&AuditNote>,
) -> rusqlite::Result<Published> {
    let published = crate::store::in_savepoint(conn, "publish", || -> rusqlite::Result<_> {
        // The floor, read where the insert happens: live and this kind.
        let floor: Option<u32> = conn.query_row(
            "SELECT MAX(version) FROM rule_bundles WHERE shadow = 0 OR shadow = ?1",
            [new.shadow],
            |r| r.get(0),
        )?;
        if let Some(floor) = floor.filter(|f| *f >= new.version) {
            return Ok(Published::NotNewerThan(floor));
        }
        conn.execute(
            "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![new.pack_id, new.version, new.shadow, new.bundle, new.pack_toml, new.published_ms],
        )?;
        if new.shadow {
            store_rule_ids(conn, new.version, new.shadow_rule_ids)?;
        }
        conn.execute(
            "DELETE FROM shadow_rule_ids WHERE version < ?1",
            [new.version],
        )?;
        if let Some(note) = note {
            super::exemption::audit(conn, note)?;
        }
        Ok(Published::Stored)
    })?;
    if published == Published::Stored {
        // Counts of superseded candidates are of no further use.
        if let Err(e) = conn.execute(
            "DELETE FROM shadow_run_counts WHERE shadow_version < ?1",
            [new.version],
        ) {
            tracing::warn!(error = %e, "could not clear superseded shadow counts");
        }
    }
    Ok(published)
}

fn store_rule_ids(conn: &Connection, version: u32, ids: &[String]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO shadow_rule_ids (version, rule_id) VALUES (?1, ?2)",
    )?;
    for id in ids {
        stmt.execute(params![version, id])?;
    }
    Ok(())
}

pub fn shadow_totals(conn: &Connection, version: u32) -> rusqlite::Result<(Vec<ShadowTotal>, i64)> {
    let mut stmt = conn.prepare(
        "SELECT rule_id, CAST(MIN(TOTAL(count), 9.0e18) AS INTEGER), COUNT(DISTINCT agent_id) FROM shadow_run_counts
         WHERE shadow_version = ?1 GROUP BY rule_id ORDER BY TOTAL(count) DESC, rule_id",
    )?;
    let totals = stmt
        .query_map([version], |r| {
            Ok(ShadowTotal {
                rule_id: r.get(0)?,
                count: r.get(1)?,
                agents: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let agents = conn.query_row(
        "SELECT COUNT(DISTINCT agent_id) FROM shadow_run_counts WHERE shadow_version = ?1",
        [version],
        |r| r.get(0),
    )?;
    Ok((totals, agents))
}

pub fn agents_rules(conn: &Connection) -> rusqlite::Result<Vec<AgentRules>> {
    let mut stmt =
        conn.prepare("SELECT agent_id, station, rules_version FROM agents ORDER BY station")?;
    let rows = stmt.query_map([], |r| {
        Ok(AgentRules {
            agent_id: r.get(0)?,
            station: r.get(1)?,
            rules_version: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// What agents should hold, in one read transaction: a revocation committed
/// before a publication is seen with it.
pub fn state(conn: &Connection, now_ms: i64) -> rusqlite::Result<PublicationState> {
    let tx = conn.unchecked_transaction()?;
    let newest = |shadow: bool| -> rusqlite::Result<Option<u32>> {
        tx.query_row(
            "SELECT MAX(version) FROM rule_bundles WHERE shadow = ?1",
            [shadow],
            |r| r.get(0),
        )
    };
    let mut revoked = HashSet::new();
    {
        let mut stmt = tx.prepare_cached("SELECT agent_id FROM agents WHERE revoked = 1")?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            revoked.insert(id?);
        }
    }
    let state = PublicationState {
        live: newest(false)?,
        shadow: newest(true)?,
        exemptions: super::exemption::pending(&tx, now_ms)?,
        revoked,
        notices: super::notice::current_all(&tx)?
            .into_iter()
            .map(|n| (n.grp, n.school, n.signed))
            .collect(),
        moves: super::exemption::moves(&tx)?,
    };
    tx.finish()?;
    Ok(state)
}

/// Stores the shadow-pack counts an agent reported. Counts are cumulative
/// within one run of the agent (`shadow_run`, random at its start), so the
/// largest figure per (agent, shadow version, run, rule) is kept (heartbeats
/// may arrive out of order) and totals add the runs up: a restarted agent,
/// counting from zero again, adds to what its earlier runs reported.
pub fn record_shadow_counts(conn: &Connection, body: &HeartbeatBody) -> rusqlite::Result<()> {
    if body.shadow_version == 0 || body.shadow_counts.is_empty() {
        return Ok(());
    }
    // Only the candidate actually published is counted: an agent cannot
    // open fresh allowances with made-up versions.
    let current: Option<u32> = conn.query_row(
        "SELECT MAX(version) FROM rule_bundles WHERE shadow = 1",
        [],
        |r| r.get(0),
    )?;
    if current != Some(body.shadow_version) {
        tracing::debug!(agent_id = %body.agent_id, shadow_version = body.shadow_version, "shadow counts for a version not published as the current candidate ignored");
        return Ok(());
    }
    if body.shadow_run.len() > MAX_RUN_ID_LEN {
        tracing::warn!(agent_id = %body.agent_id, "shadow counts with an over-long run id ignored");
        return Ok(());
    }
    // Candidates published before rule ids were recorded: record them now.
    let ids_known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM shadow_rule_ids WHERE version = ?1)",
        [body.shadow_version],
        |r| r.get(0),
    )?;
    if !ids_known {
        let text: String = conn.query_row(
            "SELECT pack_toml FROM rule_bundles WHERE shadow = 1 AND version = ?1",
            [body.shadow_version],
            |r| r.get(0),
        )?;
        let ids = crate::publish::shadow_rule_ids(body.shadow_version, &text);
        store_rule_ids(conn, body.shadow_version, &ids)?;
    }
    let known_run: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2 AND run = ?3)",
        params![body.agent_id, body.shadow_version, body.shadow_run],
        |r| r.get(0),
    )?;
    if !known_run {
        let runs: i64 = conn.query_row(
            "SELECT COUNT(DISTINCT run) FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2",
            params![body.agent_id, body.shadow_version],
            |r| r.get(0),
        )?;
        if runs >= MAX_SHADOW_RUNS {
            tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, runs, "shadow counts of a further agent run ignored: too many restarts recorded for this version");
            return Ok(());
        }
    }
    let known_ids: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT rule_id) FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2",
        params![body.agent_id, body.shadow_version],
        |r| r.get(0),
    )?;
    let now = crate::store::now_ms();
    // A savepoint: atomic on its own, and part of the writer's transaction
    // when the heartbeat is recorded there.
    crate::store::in_savepoint(conn, "shadow_counts", || {
        record_counts(conn, body, known_ids, now)
    })
}

/// The body of `record_shadow_counts`, in its savepoint.
fn record_counts(
    tx: &Connection,
    body: &HeartbeatBody,
    mut known_ids: i64,
    now: i64,
) -> rusqlite::Result<()> {
    let mut rejected = 0usize;
    let mut seen = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2 AND rule_id = ?3)",
    )?;
    let mut in_pack = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM shadow_rule_ids WHERE version = ?1 AND rule_id = ?2)",
    )?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO shadow_run_counts (agent_id, shadow_version, run, rule_id, count, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (agent_id, shadow_version, run, rule_id)
         DO UPDATE SET count = MAX(count, excluded.count), updated_ms = excluded.updated_ms",
    )?;
    for (rule_id, count) in body.shadow_counts.iter().take(MAX_SHADOW_RULES) {
        if rule_id.len() > 256 {
            continue;
        }
        // Only rules of the candidate pack: an agent cannot fill the table
        // (or the technician's report) with made-up rule ids.
        let ours: bool = in_pack.query_row(params![body.shadow_version, rule_id], |r| r.get(0))?;
        if !ours {
            rejected += 1;
            continue;
        }
        if known_ids >= MAX_SHADOW_RULE_IDS {
            let known: bool = seen
                .query_row(params![body.agent_id, body.shadow_version, rule_id], |r| {
                    r.get(0)
                })?;
            if !known {
                continue;
            }
        }
        known_ids += 1;
        let count = i64::try_from(*count)
            .unwrap_or(i64::MAX)
            .min(MAX_SHADOW_COUNT);
        stmt.execute(params![
            body.agent_id,
            body.shadow_version,
            body.shadow_run,
            rule_id,
            count,
            now
        ])?;
    }
    if rejected > 0 {
        tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, rejected, "shadow counts for rule ids not in the candidate pack ignored");
    }
    Ok(())
}
