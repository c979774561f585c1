//! Monitoring notices and acknowledgements on SQLite.

use rusqlite::{params, Connection, OptionalExtension};
use tutela_proto::v1::SignedNotice;

use crate::store::exemption::AuditNote;
use crate::store::notice::{
    next_issue, AckRecord, AckRow, NewNoticeRow, Resigner, Signer, Standing, StoredNotice,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notices (
    grp TEXT NOT NULL,
    version INTEGER NOT NULL,
    text TEXT NOT NULL,
    mode TEXT NOT NULL,
    concern_url TEXT NOT NULL,
    -- The encoded Notice as signed and sent, and the collector's signature.
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, version)
);
CREATE TABLE IF NOT EXISTS notice_acks (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    ack_id TEXT NOT NULL,
    user TEXT NOT NULL,
    station TEXT NOT NULL,
    grp TEXT NOT NULL,
    version INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    UNIQUE (agent_id, ack_id)
);
CREATE INDEX IF NOT EXISTS notice_acks_group ON notice_acks (grp, user, version);
";

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// 6: notices numbered by issue (each row's first issue is its version,
/// the order agents knew), and the bodies a notice signed again replaced,
/// which acknowledgements may still name.
pub(super) fn upgrade_issues(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    super::add_column(conn, "notices", "issue", "INTEGER NOT NULL DEFAULT 0")?;
    conn.execute_batch(
        "UPDATE notices SET issue = version WHERE issue = 0;
         CREATE TABLE IF NOT EXISTS notice_reissued (
             grp TEXT NOT NULL,
             version INTEGER NOT NULL,
             issue INTEGER NOT NULL,
             body BLOB NOT NULL,
             signature BLOB NOT NULL,
             replaced_ms INTEGER NOT NULL,
             PRIMARY KEY (grp, issue)
         );",
    )
}

/// Stores the group's next version and its audit entry in one savepoint.
pub fn set(
    conn: &Connection,
    new: &NewNoticeRow<'_>,
    sign: &Signer<'_>,
    note: impl FnOnce(u32) -> AuditNote,
) -> rusqlite::Result<u32> {
    crate::console::schema::create(conn)?;
    crate::store::in_savepoint(conn, "notice_set", || {
        let (last, issue) = latest(conn, new.group)?;
        let version = last.map_or(0, |v| v as u32) + 1;
        let signed = sign(version, issue, new.created_ms);
        conn.execute(
            "INSERT INTO notices (grp, version, text, mode, concern_url, body, signature, created_by, created_ms, school, issue)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![new.group, version, new.text, new.mode, new.concern_url, signed.body, signed.signature, new.created_by, new.created_ms, new.school, issue as i64],
        )?;
        super::exemption::audit(conn, &note(version))?;
        Ok(version)
    })
}

/// The group's highest version and its next issue.
fn latest(conn: &Connection, group: &str) -> rusqlite::Result<(Option<i64>, u64)> {
    conn.query_row(
        "SELECT MAX(version), MAX(issue) FROM notices WHERE grp = ?1",
        [group],
        |r| Ok((r.get(0)?, next_issue(r.get(1)?, r.get(0)?))),
    )
}

/// Signs the notice of `group` shown at `school` again under the group's
/// next issue unless it is the group's latest, keeping the body it
/// replaces, in one savepoint. The issue given.
pub fn reissue(
    conn: &Connection,
    group: &str,
    school: &str,
    sign: &Resigner<'_>,
) -> rusqlite::Result<Option<u64>> {
    crate::store::in_savepoint(conn, "notice_reissue", || {
        let shown = conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM notices WHERE grp = ?1 AND school IN (?2, '')
                     ORDER BY school = '', version DESC LIMIT 1"
                ),
                [group, school],
                row,
            )
            .optional()?;
        let Some(shown) = shown else {
            return Ok(None);
        };
        let (_, issue) = latest(conn, group)?;
        if shown.issue + 1 >= issue {
            return Ok(None);
        }
        let now_ms = crate::store::now_ms();
        let signed = sign(&shown, issue, now_ms);
        conn.execute(
            "INSERT INTO notice_reissued (grp, version, issue, body, signature, replaced_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                group,
                shown.version,
                shown.issue as i64,
                shown.signed.body,
                shown.signed.signature,
                now_ms
            ],
        )?;
        conn.execute(
            "UPDATE notices SET body = ?3, signature = ?4, issue = ?5 WHERE grp = ?1 AND version = ?2",
            params![group, shown.version, signed.body, signed.signature, issue as i64],
        )?;
        Ok(Some(issue))
    })
}

const COLUMNS: &str =
    "grp, version, text, mode, concern_url, created_by, created_ms, body, signature, school, issue";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredNotice> {
    Ok(StoredNotice {
        grp: r.get(0)?,
        version: r.get(1)?,
        text: r.get(2)?,
        mode: r.get(3)?,
        concern_url: r.get(4)?,
        created_by: r.get(5)?,
        created_ms: r.get(6)?,
        signed: SignedNotice {
            body: r.get(7)?,
            signature: r.get(8)?,
        },
        school: r.get(9)?,
        issue: r.get::<_, i64>(10)?.max(0) as u64,
    })
}

/// The current (newest) notice of every (group, school), by group then
/// school.
pub fn current_all(conn: &Connection) -> rusqlite::Result<Vec<StoredNotice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notices n
         WHERE version = (SELECT MAX(version) FROM notices WHERE grp = n.grp AND school = n.school)
         ORDER BY grp, school"
    ))?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

pub fn current(conn: &Connection, group: &str) -> rusqlite::Result<Option<StoredNotice>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM notices WHERE grp = ?1 AND school = '' ORDER BY version DESC LIMIT 1"),
        [group],
        row,
    )
    .optional()
}

/// Every body version `version` of `group`'s notice was signed with: the
/// current one first, then those a re-issue replaced.
pub fn bodies(conn: &Connection, group: &str, version: u32) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM (
             SELECT body, 0 AS earlier, issue FROM notices WHERE grp = ?1 AND version = ?2
             UNION ALL
             SELECT body, 1, issue FROM notice_reissued WHERE grp = ?1 AND version = ?2
         ) ORDER BY earlier, issue DESC",
    )?;
    let rows = stmt.query_map(params![group, version], |r| r.get(0))?;
    rows.collect()
}

pub fn insert_ack(conn: &Connection, ack: &AckRow<'_>) -> rusqlite::Result<bool> {
    let stored = conn.execute(
        "INSERT OR IGNORE INTO notice_acks (agent_id, ack_id, user, station, grp, version, time_ms, received_ms, body, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            ack.agent_id,
            ack.ack_id,
            ack.user,
            ack.station,
            ack.group,
            ack.version,
            ack.time_ms,
            ack.received_ms,
            ack.body,
            ack.signature
        ],
    )?;
    Ok(stored == 1)
}

/// The pupils known in `group`: everyone who acknowledged any of its notices
/// on a station, and everyone an alert from one of its stations names.
pub fn standings(conn: &Connection, group: &str) -> rusqlite::Result<Vec<Standing>> {
    standings_in(conn, group, "", "")
}

/// As [`standings`], on the stations of `school` only ('' for every school):
/// acknowledgements given on them and alerts from them. A pupil's standing
/// is the newest version it accepted of the notices of `notice_school`
/// ('' for the trust's) only, the notice those stations show: versions
/// count up per group across schools, so another school's newer notice
/// (accepted on a station before it moved) is not an acceptance of this one.
pub fn standings_in(
    conn: &Connection,
    group: &str,
    school: &str,
    notice_school: &str,
) -> rusqlite::Result<Vec<Standing>> {
    let mut stmt = conn.prepare(
        "WITH acks AS (
             SELECT user, version, time_ms, station FROM notice_acks WHERE grp = ?1
             AND (?2 = '' OR agent_id IN (SELECT agent_id FROM agents WHERE school = ?2))
         ), known AS (
             SELECT user FROM acks
             UNION
             SELECT a.user FROM alerts a JOIN agents g ON g.agent_id = a.agent_id
             WHERE g.grp = ?1 AND a.source <> 'pupil_report' AND a.user <> ''
             AND (?2 = '' OR g.school = ?2)
         ), lineage AS (
             SELECT * FROM acks
             WHERE version IN (SELECT version FROM notices WHERE grp = ?1 AND school = ?3)
         )
         SELECT k.user,
                (SELECT MAX(version) FROM lineage n WHERE n.user = k.user),
                (SELECT time_ms FROM lineage n WHERE n.user = k.user ORDER BY version DESC, time_ms DESC LIMIT 1),
                (SELECT station FROM lineage n WHERE n.user = k.user ORDER BY version DESC, time_ms DESC LIMIT 1)
         FROM known k ORDER BY k.user",
    )?;
    let rows = stmt.query_map([group, school, notice_school], |r| {
        Ok(Standing {
            user: r.get(0)?,
            version: r.get::<_, Option<u32>>(1)?.unwrap_or(0),
            time_ms: r.get(2)?,
            station: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// Every acknowledgement `user` gave (case-insensitive), oldest first.
pub fn acks_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<AckRecord>> {
    acks_in(conn, None, user)
}

/// `user`'s acknowledgements on the agents of `schools` (a JSON array of
/// school ids; every school's for `None`).
pub fn acks_in(
    conn: &Connection,
    schools: Option<&str>,
    user: &str,
) -> rusqlite::Result<Vec<AckRecord>> {
    let mut stmt = conn.prepare(
        "SELECT time_ms, station, grp, version FROM notice_acks WHERE user = ?1 COLLATE NOCASE
         AND (?2 IS NULL OR agent_id IN (SELECT agent_id FROM agents
             WHERE school IN (SELECT value FROM json_each(?2))))
         ORDER BY time_ms, id",
    )?;
    let rows = stmt.query_map(rusqlite::params![user, schools], |r| {
        Ok(AckRecord {
            time_ms: r.get(0)?,
            station: r.get(1)?,
            group: r.get(2)?,
            version: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Groups with a notice or with enrolled stations, sorted.
pub fn groups(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT grp FROM notices UNION SELECT grp FROM agents WHERE grp <> '' AND revoked = 0 ORDER BY 1",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Acknowledgements received in `[from_ms, to_ms)` on the stations of
/// `school` ('' for every school).
pub fn received_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    school: &str,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM notice_acks WHERE received_ms >= ?1 AND received_ms < ?2
         AND (?3 = '' OR agent_id IN (SELECT agent_id FROM agents WHERE school = ?3))",
        params![from_ms, to_ms, school],
        |r| r.get(0),
    )
}
