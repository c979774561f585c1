//! The Fleet page's stations in SQLite; each change commits with its audit
//! entries.

use rusqlite::{Connection, OptionalExtension};

use super::audit::insert as audit;
use super::write_tx;
use crate::store::coverage::Sighting;
use crate::store::fleet::{
    Enrolled, Family, Gap, ListingRow, Revoked, Station, StationChange, ENROLLED_COLUMNS,
    STATION_COLUMNS,
};
use crate::store::schools::Scope;
use crate::store::users::Audited;

/// Every unrevoked station `scope` allows, by group and name.
pub fn stations(conn: &Connection, scope: &Scope) -> rusqlite::Result<Vec<Station>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {STATION_COLUMNS}
         FROM agents WHERE revoked = 0 AND (?1 IS NULL OR school IN (SELECT value FROM json_each(?1))) ORDER BY grp, station"
    ))?;
    let rows = stmt.query_map([scope.json()], |r| Station::from_row(r))?;
    rows.collect()
}

/// (station, group, flag) of an unrevoked station `scope` allows.
pub fn station(
    conn: &Connection,
    scope: &Scope,
    agent_id: &str,
) -> rusqlite::Result<Option<(String, String, String)>> {
    conn.query_row(
        "SELECT station, grp, COALESCE(flag, '') FROM agents
         WHERE agent_id = ?1 AND revoked = 0 AND (?2 IS NULL OR school IN (SELECT value FROM json_each(?2)))",
        rusqlite::params![agent_id, scope.json()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
}

/// Applies `change` to each (agent id, audit entry) still unrevoked, the
/// first one required: `false` (and nothing changed) when it is revoked
/// already. Others already revoked are skipped.
pub fn change_stations(
    conn: &Connection,
    change: StationChange,
    targets: &[(String, Audited<'_>)],
) -> rusqlite::Result<bool> {
    let sql = match change {
        StationChange::Revoke => {
            "UPDATE agents SET revoked = 1 WHERE agent_id = ?1 AND revoked = 0"
        }
        StationChange::ClearFlag => {
            "UPDATE agents SET flag = NULL WHERE agent_id = ?1 AND revoked = 0"
        }
    };
    let tx = write_tx(conn)?;
    for (i, (agent_id, entry)) in targets.iter().enumerate() {
        if tx.execute(sql, [agent_id])? == 0 {
            if i == 0 {
                return Ok(false);
            }
            continue;
        }
        audit(&tx, entry)?;
    }
    tx.commit()?;
    Ok(true)
}

/// Stores a new enrolment token with its audit entry.
pub fn create_token(
    conn: &Connection,
    row: &crate::store::agents::NewToken,
    entry: &Audited<'_>,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    super::agents::insert_token(&tx, row)?;
    audit(&tx, entry)?;
    tx.commit()
}

/// Revokes a token with its audit entry.
pub fn revoke_token(conn: &Connection, id: &str, entry: &Audited<'_>) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    super::agents::revoke_token(&tx, id)?;
    audit(&tx, entry)?;
    tx.commit()
}

/// Every unrevoked station, least recently heard from first.
pub fn sightings(conn: &Connection) -> rusqlite::Result<Vec<Sighting>> {
    let mut stmt = conn.prepare(
        "SELECT agent_id, station, grp, last_seen_ms, enrolled_ms FROM agents
         WHERE revoked = 0 ORDER BY COALESCE(last_seen_ms, enrolled_ms), station",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Sighting {
            agent_id: r.get(0)?,
            station: r.get(1)?,
            grp: r.get(2)?,
            last_seen_ms: r.get(3)?,
            enrolled_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Every enrolled agent, revoked ones included, in enrolment order.
pub fn enrolled(conn: &Connection) -> rusqlite::Result<Vec<Enrolled>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ENROLLED_COLUMNS} FROM agents ORDER BY enrolled_ms, agent_id"
    ))?;
    let rows = stmt.query_map([], |r| Enrolled::from_row(r))?;
    rows.collect()
}

/// Recorded sequence gaps, by agent and sequence number.
pub fn gaps(conn: &Connection) -> rusqlite::Result<Vec<Gap>> {
    let mut stmt =
        conn.prepare("SELECT agent_id, from_seq, to_seq FROM gaps ORDER BY agent_id, from_seq")?;
    let rows = stmt.query_map([], |r| {
        Ok(Gap {
            agent_id: r.get(0)?,
            from_seq: r.get(1)?,
            to_seq: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Revokes `agent_id` (and its re-keyed descendants as `family` says), each
/// with an audit entry by `actor`. The family is read and revoked in one
/// write transaction, so an identity re-keyed meanwhile cannot slip through.
pub fn revoke_family(
    conn: &Connection,
    agent_id: &str,
    family: Family,
    actor: &str,
) -> rusqlite::Result<Revoked> {
    let tx = write_tx(conn)?;
    let known: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM agents WHERE agent_id = ?1)",
        [agent_id],
        |r| r.get(0),
    )?;
    if !known {
        return Ok(Revoked::NoAgent);
    }
    let descendants = super::agents::descendants(&tx, agent_id)?;
    if !descendants.is_empty() && family == Family::Ask {
        return Ok(Revoked::HasDescendants(descendants));
    }
    let mut targets = vec![agent_id.to_owned()];
    if family == Family::WithDescendants {
        targets.extend(descendants);
    }
    for target in &targets {
        tx.execute(
            "UPDATE agents SET revoked = 1 WHERE agent_id = ?1",
            [target],
        )?;
        audit(
            &tx,
            &Audited {
                actor,
                action: "agent-revoke",
                target,
                detail: "from the command line",
            },
        )?;
    }
    tx.commit()?;
    Ok(Revoked::Done(targets))
}

/// Fleet listing rows read from SQLite.
impl ListingRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, column: usize) -> rusqlite::Result<String> {
        self.get(column)
    }
    fn int(&self, column: usize) -> rusqlite::Result<i64> {
        self.get(column)
    }
    fn maybe_int(&self, column: usize) -> rusqlite::Result<Option<i64>> {
        self.get(column)
    }
    fn flag(&self, column: usize) -> rusqlite::Result<bool> {
        self.get(column)
    }
}
