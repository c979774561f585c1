//! Agents, enrolment tokens and heartbeats on SQLite.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::agents::{
    AgentRow, HeartbeatRow, HeartbeatStanding, NewAgent, NewToken, TokenInfo, TokenRow, FLAG_LIMIT,
};

pub fn record_heartbeat(conn: &Connection, row: &HeartbeatRow<'_>) -> rusqlite::Result<bool> {
    // Refused in the same statement when the agent was revoked (a
    // revocation holds from the moment it commits, whatever the key cache
    // says) or the heartbeat is not newer than the last one.
    let recorded = conn
        .prepare_cached(
            "UPDATE agents SET last_seen_ms = ?2, agent_version = ?3, rules_version = ?4,
                spool_backlog = ?5, spool_dropped = ?6, last_heartbeat_ms = ?7, problems = ?8
             WHERE agent_id = ?1 AND revoked = 0 AND last_heartbeat_ms < ?7",
        )?
        .execute(params![
            row.agent_id,
            row.seen_ms,
            row.agent_version,
            row.rules_version,
            row.spool_backlog,
            row.spool_dropped,
            row.agent_ms,
            row.problems
        ])?;
    Ok(recorded > 0)
}

pub fn heartbeat_standing(
    conn: &Connection,
    agent_id: &str,
) -> rusqlite::Result<Option<HeartbeatStanding>> {
    conn.query_row(
        "SELECT revoked, last_heartbeat_ms FROM agents WHERE agent_id = ?1",
        [agent_id],
        |r| {
            Ok(HeartbeatStanding {
                revoked: r.get(0)?,
                last_heartbeat_ms: r.get(1)?,
            })
        },
    )
    .optional()
}

pub fn host_of(conn: &Connection, agent_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT machine_id FROM agent_hosts WHERE agent_id = ?1")?
        .query_row([agent_id], |r| r.get(0))
        .optional()
}

pub fn record_host(
    conn: &Connection,
    agent_id: &str,
    machine_id: &str,
    station: &str,
    first_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO agent_hosts (agent_id, machine_id, station, first_ms) VALUES (?1, ?2, ?3, ?4)",
        params![agent_id, machine_id, station, first_ms],
    )?;
    Ok(())
}

pub fn flag(conn: &Connection, agent_id: &str, note: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agents SET flag = CASE WHEN flag IS NULL OR flag = '' THEN ?2
             WHEN length(flag) > ?3 THEN flag ELSE flag || '; ' || ?2 END
         WHERE agent_id = ?1",
        params![agent_id, note, FLAG_LIMIT as i64],
    )?;
    Ok(())
}

pub fn token_for_use(conn: &Connection, secret_hash: &[u8]) -> rusqlite::Result<Option<TokenRow>> {
    conn.query_row(
        "SELECT expires_ms, max_uses, uses, revoked, grp, school FROM tokens WHERE secret_hash = ?1",
        [secret_hash],
        |r| {
            Ok(TokenRow {
                expires_ms: r.get(0)?,
                max_uses: r.get(1)?,
                uses: r.get(2)?,
                revoked: r.get(3)?,
                group: r.get(4)?,
                school: r.get(5)?,
            })
        },
    )
    .optional()
}

pub fn consume_token(conn: &Connection, secret_hash: &[u8]) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE tokens SET uses = uses + 1 WHERE secret_hash = ?1",
        [secret_hash],
    )?;
    Ok(())
}

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        agent_id: r.get(0)?,
        public_key: r.get(1)?,
        revoked: r.get(2)?,
        group: r.get(3)?,
        school: r.get(4)?,
    })
}

pub fn agent_by_key(conn: &Connection, public_key: &[u8]) -> rusqlite::Result<Option<AgentRow>> {
    conn.query_row(
        "SELECT agent_id, public_key, revoked, grp, school FROM agents WHERE public_key = ?1",
        [public_key],
        agent_row,
    )
    .optional()
}

pub fn agent(conn: &Connection, agent_id: &str) -> rusqlite::Result<Option<AgentRow>> {
    conn.query_row(
        "SELECT agent_id, public_key, revoked, grp, school FROM agents WHERE agent_id = ?1",
        [agent_id],
        agent_row,
    )
    .optional()
}

pub fn set_group(
    conn: &Connection,
    agent_id: &str,
    group: &str,
    school: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agents SET grp = ?2, school = ?3 WHERE agent_id = ?1",
        params![agent_id, group, school],
    )?;
    Ok(())
}

pub fn insert_agent(conn: &Connection, a: &NewAgent<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO agents (agent_id, public_key, station, grp, agent_version, enrolled_ms, rekeyed_from, school)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
            CASE WHEN ?7 = '' THEN ?8 ELSE (SELECT school FROM agents WHERE agent_id = ?7) END)",
        params![
            a.agent_id,
            a.public_key,
            a.station,
            a.group,
            a.agent_version,
            a.enrolled_ms,
            a.rekeyed_from,
            a.school
        ],
    )?;
    Ok(())
}

pub fn live_agents_on_machine(
    conn: &Connection,
    machine_id: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT h.agent_id FROM agent_hosts h JOIN agents a USING (agent_id)
         WHERE h.machine_id = ?1 AND a.revoked = 0",
    )?;
    let rows = stmt.query_map([machine_id], |r| r.get(0))?;
    rows.collect()
}

pub fn family(conn: &Connection, agent_id: &str) -> rusqlite::Result<(String, i64)> {
    let root: String = conn
        .query_row(
            "WITH RECURSIVE up(id, parent, depth) AS (
                 SELECT agent_id, rekeyed_from, 0 FROM agents WHERE agent_id = ?1
                 UNION ALL SELECT a.agent_id, a.rekeyed_from, up.depth + 1
                 FROM agents a JOIN up ON a.agent_id = up.parent
                 WHERE up.parent <> '' AND up.depth < 100000)
             SELECT id FROM up ORDER BY depth DESC LIMIT 1",
            [agent_id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| agent_id.to_owned());
    let count = conn.query_row(
        "WITH RECURSIVE d(id) AS (
             SELECT agent_id FROM agents WHERE rekeyed_from = ?1
             UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
         SELECT COUNT(*) FROM d",
        [&root],
        |r| r.get(0),
    )?;
    Ok((root, count))
}

/// Identities made by re-keying from `agent_id`, and from those, and so on.
pub fn descendants(conn: &Connection, agent_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "WITH RECURSIVE d(id) AS (
             SELECT agent_id FROM agents WHERE rekeyed_from = ?1
             UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
         SELECT id FROM d ORDER BY id",
    )?;
    let rows = stmt.query_map([agent_id], |r| r.get(0))?;
    rows.collect()
}

pub fn insert_token(conn: &Connection, t: &NewToken) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses, school) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![t.secret_hash, t.label, t.group, t.created_ms, t.expires_ms, t.max_uses, t.school],
    )?;
    Ok(())
}

/// Every token, newest first.
pub fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenInfo>> {
    tokens_of(conn, None)
}

/// Every token of `schools` (a JSON array of school ids; of every school
/// for `None`), newest first.
pub fn tokens_of(conn: &Connection, schools: Option<&str>) -> rusqlite::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT secret_hash, label, grp, created_ms, expires_ms, max_uses, uses, revoked, school
         FROM tokens WHERE (?1 IS NULL OR school IN (SELECT value FROM json_each(?1))) ORDER BY created_ms DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([schools], |r| {
        let hash: Vec<u8> = r.get(0)?;
        Ok(TokenInfo {
            id: hex::encode(&hash)[..12].to_owned(),
            label: r.get(1)?,
            group: r.get(2)?,
            created_ms: r.get(3)?,
            expires_ms: r.get(4)?,
            max_uses: r.get(5)?,
            uses: r.get(6)?,
            revoked: r.get(7)?,
            school: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Revokes the token whose id (the first 12 hex digits of its hash) is `id`.
pub fn revoke_token(conn: &Connection, id: &str) -> rusqlite::Result<u64> {
    let n = conn.execute(
        "UPDATE tokens SET revoked = 1 WHERE lower(hex(substr(secret_hash, 1, 6))) = ?1",
        [id],
    )?;
    Ok(n as u64)
}
