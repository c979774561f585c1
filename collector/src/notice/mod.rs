//! The school's monitoring notice and acceptable use policy, per group: the
//! DSL writes it in the console; each change is a new version, signed once
//! with the rule-bundle key and sent to the group's agents on the rules
//! stream. A pupil's acknowledgement comes back signed by the station's agent
//! (`service`) and is kept here; the console lists who has and has not
//! accepted the current version, and the weekly summary counts them.

pub mod cli;
pub mod service;

use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
use tutela_proto::limits::{MAX_NOTICE_CHARS, MAX_NOTICE_URL_BYTES};
use tutela_proto::v1::{Notice, NoticeAckBody, NoticeMode, SignedNotice};

use crate::console::audit;
use crate::store;

const SCHEMA: &str = "
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

/// Longest group name.
const MAX_GROUP_CHARS: usize = 200;

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// When agents show the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// At every sign-in, and when a new version arrives.
    EverySignIn,
    /// Once per pupil and version on each station.
    OncePerVersion,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "every-sign-in" => Some(Self::EverySignIn),
            "once-per-version" => Some(Self::OncePerVersion),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EverySignIn => "every-sign-in",
            Self::OncePerVersion => "once-per-version",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::EverySignIn => "at every sign-in",
            Self::OncePerVersion => "once per version",
        }
    }

    fn wire(self) -> NoticeMode {
        match self {
            Self::EverySignIn => NoticeMode::EverySignIn,
            Self::OncePerVersion => NoticeMode::OncePerVersion,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("give a group: each group (site, room or year group) has its own notice")]
    NoGroup,
    #[error("the group name is too long (at most {MAX_GROUP_CHARS} characters)")]
    GroupTooLong,
    #[error("the notice is empty: write what pupils are told about monitoring and the acceptable use policy")]
    Empty,
    #[error("the notice is {chars} characters long; the limit is {MAX_NOTICE_CHARS}: shorten it (link to the full policy instead of pasting it)")]
    TooLong { chars: usize },
    #[error("the notice holds control characters; paste it as plain text")]
    ControlCharacters,
    #[error("the 'Report a concern' address must start with http:// or https://, have no spaces and be at most {MAX_NOTICE_URL_BYTES} bytes; leave it empty to show none")]
    BadUrl,
    #[error("choose when the notice is shown: every-sign-in or once-per-version")]
    BadMode,
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// A notice as the DSL sets it.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub group: String,
    pub text: String,
    pub mode: Mode,
    pub concern_url: String,
    pub created_by: String,
}

/// A stored version of a group's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotice {
    pub grp: String,
    pub version: u32,
    pub text: String,
    pub mode: String,
    pub concern_url: String,
    pub created_by: String,
    pub created_ms: i64,
    pub signed: SignedNotice,
}

/// Normalises line ends and checks the text: not blank, within the limit,
/// no control characters but new lines and tabs.
fn clean_text(text: &str) -> Result<String, NoticeError> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    if text.is_empty() {
        return Err(NoticeError::Empty);
    }
    let chars = text.chars().count();
    if chars > MAX_NOTICE_CHARS {
        return Err(NoticeError::TooLong { chars });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(NoticeError::ControlCharacters);
    }
    Ok(text.to_owned())
}

fn valid_url(url: &str) -> bool {
    url.is_empty()
        || ((url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= MAX_NOTICE_URL_BYTES
            && url.len() > "https://".len()
            && !url.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Validates, signs and stores a new version of `new.group`'s notice, and
/// audits it, in one savepoint. Returns the version.
pub fn set(
    conn: &Connection,
    key: &ring::signature::Ed25519KeyPair,
    new: &NewNotice,
) -> Result<u32, NoticeError> {
    let group = new.group.trim();
    if group.is_empty() {
        return Err(NoticeError::NoGroup);
    }
    if group.chars().count() > MAX_GROUP_CHARS {
        return Err(NoticeError::GroupTooLong);
    }
    let text = clean_text(&new.text)?;
    let concern_url = new.concern_url.trim();
    if !valid_url(concern_url) {
        return Err(NoticeError::BadUrl);
    }
    ensure_schema(conn)?;
    let version = store::in_savepoint(conn, "notice_set", || -> Result<u32, NoticeError> {
        let last: Option<u32> = conn.query_row(
            "SELECT MAX(version) FROM notices WHERE grp = ?1",
            [group],
            |r| r.get(0),
        )?;
        let version = last.unwrap_or(0) + 1;
        let now = store::now_ms();
        let notice = Notice {
            group: group.to_owned(),
            version,
            text: text.clone(),
            mode: new.mode.wire() as i32,
            concern_url: concern_url.to_owned(),
            issued_ms: now,
        };
        let signed = sign(key, &notice);
        conn.execute(
            "INSERT INTO notices (grp, version, text, mode, concern_url, body, signature, created_by, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![group, version, text, new.mode.as_str(), concern_url, signed.body, signed.signature, new.created_by, now],
        )?;
        audit::append(
            conn,
            &new.created_by,
            "notice-set",
            &format!("notice:{group}"),
            &format!(
                "version {version}, shown {}, {} characters",
                new.mode.describe(),
                text.chars().count()
            ),
        )?;
        Ok(version)
    })?;
    tracing::info!(group, version, by = %new.created_by, "monitoring notice set");
    Ok(version)
}

/// Encodes `notice` once and signs `"tutela-notice-v1" || body` with the
/// rule-bundle key.
pub fn sign(key: &ring::signature::Ed25519KeyPair, notice: &Notice) -> SignedNotice {
    let body = notice.encode_to_vec();
    SignedNotice {
        signature: key
            .sign(&tutela_proto::notice_message(&body))
            .as_ref()
            .to_vec(),
        body,
    }
}

const COLUMNS: &str =
    "grp, version, text, mode, concern_url, created_by, created_ms, body, signature";

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
    })
}

/// The current (newest) notice of every group, by group.
/// (The schema must exist: see [`ensure_schema`].)
pub fn current_all(conn: &Connection) -> rusqlite::Result<Vec<StoredNotice>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM notices n
         WHERE version = (SELECT MAX(version) FROM notices WHERE grp = n.grp) ORDER BY grp"
    ))?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

/// The current notice of `group`.
pub fn current(conn: &Connection, group: &str) -> rusqlite::Result<Option<StoredNotice>> {
    ensure_schema(conn)?;
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM notices WHERE grp = ?1 ORDER BY version DESC LIMIT 1"),
        [group],
        row,
    )
    .optional()
}

/// Why an acknowledgement was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AckRefusal {
    #[error("group {group:?} has no notice version {version}")]
    UnknownNotice { group: String, version: u32 },
    #[error("the acknowledged text is not the text of group {group:?}'s notice version {version}")]
    OtherText { group: String, version: u32 },
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Stores a verified acknowledgement (`body` decoded from `bytes`, signed
/// with `signature`). Returns false when it was already stored (a resend).
pub fn record_ack(
    conn: &Connection,
    ack: &NoticeAckBody,
    bytes: &[u8],
    signature: &[u8],
) -> Result<bool, AckRefusal> {
    ensure_schema(conn)?;
    let shown: Option<Vec<u8>> = conn
        .query_row(
            "SELECT body FROM notices WHERE grp = ?1 AND version = ?2",
            params![ack.group, ack.version],
            |r| r.get(0),
        )
        .optional()?;
    let Some(shown) = shown else {
        return Err(AckRefusal::UnknownNotice {
            group: ack.group.clone(),
            version: ack.version,
        });
    };
    if ring::digest::digest(&ring::digest::SHA256, &shown).as_ref() != ack.notice_sha256.as_slice()
    {
        return Err(AckRefusal::OtherText {
            group: ack.group.clone(),
            version: ack.version,
        });
    }
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
            store::now_ms(),
            bytes,
            signature
        ],
    )?;
    Ok(stored == 1)
}

/// One pupil's standing against a group's current notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Standing {
    pub user: String,
    /// Newest version they acknowledged in this group (0: none).
    pub version: u32,
    /// When (agent clock) and where they last acknowledged, if ever.
    pub time_ms: Option<i64>,
    pub station: String,
}

/// Who has and has not accepted `group`'s current version.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Acceptance {
    pub group: String,
    pub version: u32,
    pub accepted: Vec<Standing>,
    pub pending: Vec<Standing>,
}

/// The pupils known in `group`: everyone who acknowledged any of its notices
/// on a station, and everyone an alert from one of its stations names.
pub fn acceptance(conn: &Connection, group: &str) -> rusqlite::Result<Acceptance> {
    ensure_schema(conn)?;
    let version = current(conn, group)?.map_or(0, |n| n.version);
    let mut stmt = conn.prepare(
        "WITH known AS (
             SELECT user FROM notice_acks WHERE grp = ?1
             UNION
             SELECT a.user FROM alerts a JOIN agents g ON g.agent_id = a.agent_id
             WHERE g.grp = ?1 AND a.source <> 'pupil_report' AND a.user <> ''
         )
         SELECT k.user,
                (SELECT MAX(version) FROM notice_acks n WHERE n.grp = ?1 AND n.user = k.user),
                (SELECT time_ms FROM notice_acks n WHERE n.grp = ?1 AND n.user = k.user ORDER BY version DESC, time_ms DESC LIMIT 1),
                (SELECT station FROM notice_acks n WHERE n.grp = ?1 AND n.user = k.user ORDER BY version DESC, time_ms DESC LIMIT 1)
         FROM known k ORDER BY k.user",
    )?;
    let rows = stmt.query_map([group], |r| {
        Ok(Standing {
            user: r.get(0)?,
            version: r.get::<_, Option<u32>>(1)?.unwrap_or(0),
            time_ms: r.get(2)?,
            station: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?;
    let mut out = Acceptance {
        group: group.to_owned(),
        version,
        ..Acceptance::default()
    };
    for standing in rows {
        let standing = standing?;
        if version > 0 && standing.version >= version {
            out.accepted.push(standing);
        } else {
            out.pending.push(standing);
        }
    }
    Ok(out)
}

/// One acknowledgement, for a subject-access export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AckRecord {
    pub time_ms: i64,
    pub station: String,
    pub group: String,
    pub version: u32,
}

/// Every acknowledgement `user` gave (case-insensitive), oldest first.
pub fn acks_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<AckRecord>> {
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT time_ms, station, grp, version FROM notice_acks WHERE user = ?1 COLLATE NOCASE ORDER BY time_ms, id",
    )?;
    let rows = stmt.query_map([user], |r| {
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
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT grp FROM notices UNION SELECT grp FROM agents WHERE grp <> '' AND revoked = 0 ORDER BY 1",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// For the weekly summary: acknowledgements received in `[from_ms, to_ms)`,
/// and, over every group with a notice, pupils who have and have not
/// accepted its current version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeekCounts {
    pub received: i64,
    pub accepted: usize,
    pub pending: usize,
}

pub fn week_counts(conn: &Connection, from_ms: i64, to_ms: i64) -> rusqlite::Result<WeekCounts> {
    ensure_schema(conn)?;
    let received = conn.query_row(
        "SELECT COUNT(*) FROM notice_acks WHERE received_ms >= ?1 AND received_ms < ?2",
        [from_ms, to_ms],
        |r| r.get(0),
    )?;
    let mut counts = WeekCounts {
        received,
        ..WeekCounts::default()
    };
    for notice in current_all(conn)? {
        let a = acceptance(conn, &notice.grp)?;
        counts.accepted += a.accepted.len();
        counts.pending += a.pending.len();
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ring::signature::Ed25519KeyPair {
        let pkcs8 = tutela_rules::bundle::generate_pkcs8().unwrap();
        tutela_rules::bundle::load_pkcs8(&pkcs8).unwrap()
    }

    fn new(group: &str, text: &str) -> NewNotice {
        NewNotice {
            group: group.into(),
            text: text.into(),
            mode: Mode::EverySignIn,
            concern_url: "https://tutela.school.test/concern".into(),
            created_by: "dsl.jones".into(),
        }
    }

    fn ack(group: &str, version: u32, user: &str, shown: &[u8], id: &str) -> NoticeAckBody {
        NoticeAckBody {
            agent_id: "ag-1".into(),
            ack_id: id.into(),
            user: user.into(),
            station: "LAB1-PC07".into(),
            group: group.into(),
            version,
            time_ms: 1000,
            notice_sha256: ring::digest::digest(&ring::digest::SHA256, shown)
                .as_ref()
                .to_vec(),
        }
    }

    #[test]
    fn versions_rise_per_group_and_bad_text_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        crate::console::schema::create(&conn).unwrap();
        let key = key();
        assert_eq!(
            set(&conn, &key, &new("y10", "Use is monitored.")).unwrap(),
            1
        );
        assert_eq!(
            set(
                &conn,
                &key,
                &new("y10", "Use is monitored!\r\nSee the AUP.")
            )
            .unwrap(),
            2
        );
        assert_eq!(
            set(&conn, &key, &new("y7", "Use is monitored.")).unwrap(),
            1
        );
        let y10 = current(&conn, "y10").unwrap().unwrap();
        assert_eq!(
            (y10.version, y10.text.as_str()),
            (2, "Use is monitored!\nSee the AUP.")
        );
        let decoded = Notice::decode(y10.signed.body.as_slice()).unwrap();
        assert_eq!(decoded.version, 2);
        assert_eq!(decoded.mode, NoticeMode::EverySignIn as i32);
        assert_eq!(current_all(&conn).unwrap().len(), 2);

        let long = "a".repeat(MAX_NOTICE_CHARS + 1);
        let err = set(&conn, &key, &new("y10", &long)).unwrap_err();
        assert!(matches!(err, NoticeError::TooLong { chars } if chars == MAX_NOTICE_CHARS + 1));
        assert!(err.to_string().contains("the limit is 4000"), "{err}");
        // Exactly at the limit, in characters of any script, is accepted.
        set(&conn, &key, &new("y10", &"é".repeat(MAX_NOTICE_CHARS))).unwrap();
        assert!(matches!(
            set(&conn, &key, &new("y10", " \n ")),
            Err(NoticeError::Empty)
        ));
        assert!(matches!(
            set(&conn, &key, &new(" ", "x")),
            Err(NoticeError::NoGroup)
        ));
        assert!(matches!(
            set(&conn, &key, &new("y10", "bell \u{7}")),
            Err(NoticeError::ControlCharacters)
        ));
        let mut bad = new("y10", "x");
        bad.concern_url = "javascript:alert(1)".into();
        assert!(matches!(set(&conn, &key, &bad), Err(NoticeError::BadUrl)));
        // Nothing refused was kept or audited.
        let versions: i64 = conn
            .query_row("SELECT COUNT(*) FROM notices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, 4);
        let audited: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM console_audit WHERE action = 'notice-set'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 4);
    }

    #[test]
    fn acknowledgements_are_kept_once_and_split_pupils_into_accepted_and_pending() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        crate::console::schema::create(&conn).unwrap();
        let key = key();
        set(&conn, &key, &new("y10", "v1")).unwrap();
        let v1 = current(&conn, "y10").unwrap().unwrap().signed.body;
        set(&conn, &key, &new("y10", "v2")).unwrap();
        let v2 = current(&conn, "y10").unwrap().unwrap().signed.body;
        let a = ack("y10", 1, "pupil.a", &v1, "a1");
        assert!(record_ack(&conn, &a, b"body", b"sig").unwrap());
        assert!(
            !record_ack(&conn, &a, b"body", b"sig").unwrap(),
            "a resend is stored once"
        );
        assert!(record_ack(&conn, &ack("y10", 2, "pupil.b", &v2, "b2"), b"b", b"s").unwrap());
        // A version that does not exist, or text other than the one signed, is refused.
        assert!(matches!(
            record_ack(&conn, &ack("y10", 3, "pupil.c", &v2, "c3"), b"b", b"s"),
            Err(AckRefusal::UnknownNotice { .. })
        ));
        assert!(matches!(
            record_ack(&conn, &ack("y10", 2, "pupil.c", &v1, "c2"), b"b", b"s"),
            Err(AckRefusal::OtherText { .. })
        ));
        let acceptance = acceptance(&conn, "y10").unwrap();
        assert_eq!(acceptance.version, 2);
        let users = |list: &[Standing]| list.iter().map(|s| s.user.clone()).collect::<Vec<_>>();
        assert_eq!(users(&acceptance.accepted), ["pupil.b"]);
        assert_eq!(users(&acceptance.pending), ["pupil.a"]);
        assert_eq!(acceptance.pending[0].version, 1);
        let counts = week_counts(&conn, 0, i64::MAX).unwrap();
        assert_eq!(
            counts,
            WeekCounts {
                received: 2,
                accepted: 1,
                pending: 1
            }
        );
    }
}
