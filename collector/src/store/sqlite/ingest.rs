//! Events and chains on SQLite. Run inside the writer's immediate
//! transaction, which holds the database's write lock.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::ingest::{AlertRow, Standing};

pub fn lock_agents(
    conn: &Connection,
    agent_ids: &[&str],
) -> rusqlite::Result<HashMap<String, Standing>> {
    let mut stmt =
        conn.prepare_cached("SELECT revoked, last_seq, last_hash FROM agents WHERE agent_id = ?1")?;
    let mut standing = HashMap::with_capacity(agent_ids.len());
    for id in agent_ids {
        let row = stmt
            .query_row([id], |r| {
                Ok(Standing::from_row(r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some(row) = row {
            standing.insert((*id).to_owned(), row);
        }
    }
    Ok(standing)
}

pub fn stored_body_hash(
    conn: &Connection,
    agent_id: &str,
    seq: u64,
) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT body_hash FROM alerts WHERE agent_id = ?1 AND seq = ?2")?
        .query_row(params![agent_id, seq as i64], |r| r.get(0))
        .optional()
}

pub fn insert_gap(
    conn: &Connection,
    agent_id: &str,
    from: u64,
    to: u64,
    detected_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO gaps (agent_id, from_seq, to_seq, detected_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![agent_id, from as i64, to as i64, detected_ms])?;
    Ok(())
}

pub fn insert_alerts(conn: &Connection, rows: &[AlertRow<'_>]) -> rusqlite::Result<()> {
    rows.iter().try_for_each(|row| insert_alert(conn, row))
}

fn insert_alert(conn: &Connection, row: &AlertRow<'_>) -> rusqlite::Result<()> {
    let e = row.event;
    let d = row.derived();
    conn.prepare_cached(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, clock_skew, chain_ok,
            user, station, source, context, app, app_path, window_title, url, search_query,
            category, severity, rule_id, term, matches, rules_version, repeat_count, has_capture,
            body, signature, body_hash, state, repeat_of, signed_as, school)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30,
            (SELECT school FROM agents WHERE agent_id = ?2))",
    )?
    .execute(params![
        e.event_id,
        e.agent_id,
        e.seq as i64,
        e.time_ms,
        row.received_ms,
        row.clock_skew,
        row.chain_ok,
        e.user,
        e.station,
        d.source,
        d.context,
        d.app,
        d.app_path,
        d.window_title,
        d.url,
        d.search_query,
        d.category,
        d.severity,
        d.rule_id,
        d.term,
        d.matches,
        e.rules_version,
        e.count,
        row.sealed_capture.is_some(),
        row.body,
        row.signature,
        row.body_hash.as_slice(),
        d.state,
        e.repeat_of,
        tutela_proto::PROTOCOL_VERSION,
    ])?;
    let inserted = conn.last_insert_rowid();
    if !e.repeat_of.is_empty() && e.count > 0 {
        conn.prepare_cached(
            "UPDATE alerts SET repeat_count = repeat_count + ?3 WHERE agent_id = ?1 AND event_id = ?2 AND repeat_of = ''",
        )?
        .execute(params![e.agent_id, e.repeat_of, e.count])?;
    }
    if let (Some(sealed), Some(info)) = (row.sealed_capture, &e.capture) {
        conn.prepare_cached(
            "INSERT INTO captures (alert_id, sha256, size, width, height, sealed, object_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            inserted,
            info.sha256,
            info.size as i64,
            info.width,
            info.height,
            sealed,
            row.capture_key
        ])?;
    }
    Ok(())
}

pub fn advance_chains(
    conn: &Connection,
    chains: &[(&str, u64, [u8; 32])],
    seen_ms: i64,
) -> rusqlite::Result<()> {
    let mut update = conn.prepare_cached(
        "UPDATE agents SET last_seq = ?2, last_hash = ?3, last_seen_ms = ?4 WHERE agent_id = ?1",
    )?;
    for (agent_id, last_seq, last_hash) in chains {
        update.execute(params![
            agent_id,
            *last_seq as i64,
            last_hash.as_slice(),
            seen_ms
        ])?;
    }
    Ok(())
}
