//! The school's monitoring notice and acceptable use policy, per group: the
//! DSL writes it in the console; each change is a new version, signed once
//! with the rule-bundle key and sent to the group's agents on the rules
//! stream. A pupil's acknowledgement comes back signed by the station's agent
//! (`service`) and is kept here; the console lists who has and has not
//! accepted the current version, and the weekly summary counts them.

mod acceptance;
pub mod cli;
pub mod service;

pub(crate) use acceptance::split;
pub use acceptance::{acceptance, acceptance_at, acceptance_in, Acceptance};

use prost::Message;
use rusqlite::Connection;
use tutela_proto::limits::{MAX_NOTICE_CHARS, MAX_NOTICE_URL_BYTES};
use tutela_proto::v1::{Notice, NoticeAckBody, NoticeMode, SignedNotice};

use crate::store::exemption::AuditNote;
pub use crate::store::notice::{AckRecord, Standing, StoredNotice};
use crate::store::notice::{AckRow, NewNoticeRow};
use crate::store::{self, sqlite, Store, StoreError};

/// Longest group name.
const MAX_GROUP_CHARS: usize = 200;

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    sqlite::notice::ensure_schema(conn)
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
    #[error("no school `{0}`; see `tutela-collector schools list`")]
    NoSchool(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A notice as the DSL sets it.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub group: String,
    pub text: String,
    pub mode: Mode,
    pub concern_url: String,
    pub created_by: String,
    /// The school whose stations show it ('': every school without its own).
    pub school: String,
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

/// A notice checked and normalised.
struct Checked {
    group: String,
    text: String,
    concern_url: String,
}

fn validate(new: &NewNotice) -> Result<Checked, NoticeError> {
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
    Ok(Checked {
        group: group.to_owned(),
        text,
        concern_url: concern_url.to_owned(),
    })
}

impl Checked {
    fn row<'a>(&'a self, new: &'a NewNotice) -> NewNoticeRow<'a> {
        NewNoticeRow {
            group: &self.group,
            text: &self.text,
            mode: new.mode.as_str(),
            concern_url: &self.concern_url,
            created_by: &new.created_by,
            created_ms: store::now_ms(),
            school: &new.school,
        }
    }

    /// Signs version `version` as issue `issue` at `issued_ms`.
    fn signer<'k>(
        &'k self,
        key: &'k ring::signature::Ed25519KeyPair,
        mode: Mode,
    ) -> impl Fn(u32, u64, i64) -> SignedNotice + Send + Sync + 'k {
        move |version, issue, issued_ms| {
            sign(
                key,
                &Notice {
                    group: self.group.clone(),
                    version,
                    text: self.text.clone(),
                    mode: mode.wire() as i32,
                    concern_url: self.concern_url.clone(),
                    issued_ms,
                    issue,
                },
            )
        }
    }

    fn note(&self, new: &NewNotice) -> impl FnOnce(u32) -> AuditNote + Send + 'static {
        let (actor, target, chars, mode) = (
            new.created_by.clone(),
            if new.school.is_empty() {
                format!("notice:{}", self.group)
            } else {
                format!("notice:{}@{}", self.group, new.school)
            },
            self.text.chars().count(),
            new.mode,
        );
        move |version| AuditNote {
            actor,
            action: "notice-set",
            target,
            detail: format!(
                "version {version}, shown {}, {chars} characters",
                mode.describe()
            ),
        }
    }

    fn set(&self, version: u32, by: &str) -> u32 {
        crate::subscription::nudge();
        tracing::info!(group = %self.group, version, by, "monitoring notice set");
        version
    }
}

/// Validates, signs and stores a new version of `new.group`'s notice, and
/// audits it, in one savepoint. Returns the version.
pub fn set(
    conn: &Connection,
    key: &ring::signature::Ed25519KeyPair,
    new: &NewNotice,
) -> Result<u32, NoticeError> {
    let checked = validate(new)?;
    let version = sqlite::notice::set(
        conn,
        &checked.row(new),
        &checked.signer(key, new.mode),
        checked.note(new),
    )?;
    Ok(checked.set(version, &new.created_by))
}

/// As [`set`], in `store` (either backend): the group's agents connected to
/// any collector on it receive the new version.
pub async fn set_in(
    store: &Store,
    key: &ring::signature::Ed25519KeyPair,
    new: &NewNotice,
) -> Result<u32, NoticeError> {
    let checked = validate(new)?;
    if !new.school.is_empty() && !store.school_exists(&new.school).await? {
        return Err(NoticeError::NoSchool(new.school.clone()));
    }
    let version = store
        .set_notice(
            &checked.row(new),
            &checked.signer(key, new.mode),
            checked.note(new),
        )
        .await?;
    Ok(checked.set(version, &new.created_by))
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

/// A device of `group` moved to `school`: the notice its stations show is
/// signed again under the group's next issue unless it is the group's
/// latest issue, so the device, which may hold a later-issued notice of
/// its former school (even a higher version), takes it and shows it at
/// once, while replays of notices issued before stay refused. The
/// version, text and acknowledgements are unchanged: the school's other
/// pupils receive the same version and are not asked again. The issue
/// given, if one was needed.
pub async fn reissue_for_move(
    store: &Store,
    key: &ring::signature::Ed25519KeyPair,
    group: &str,
    school: &str,
) -> Result<Option<u64>, StoreError> {
    if group.is_empty() {
        return Ok(None);
    }
    let resign = |n: &StoredNotice, issue: u64, issued_ms: i64| {
        let mut notice = Notice::decode(n.signed.body.as_slice()).unwrap_or_else(|_| Notice {
            group: n.grp.clone(),
            version: n.version,
            text: n.text.clone(),
            mode: Mode::parse(&n.mode).unwrap_or(Mode::EverySignIn).wire() as i32,
            concern_url: n.concern_url.clone(),
            ..Notice::default()
        });
        notice.issue = issue;
        notice.issued_ms = issued_ms;
        sign(key, &notice)
    };
    let issue = store.reissue_notice(group, school, &resign).await?;
    if let Some(issue) = issue {
        crate::subscription::nudge();
        tracing::info!(
            group,
            school,
            issue,
            "monitoring notice issued again for a device moved in"
        );
    }
    Ok(issue)
}

/// Why the notice could not be issued again after a move.
#[derive(Debug, thiserror::Error)]
pub enum ReissueError {
    #[error(
        "the collector cannot read its signing key ({0}); check signing.key in its data directory"
    )]
    Key(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Before `agent_id` moves to school `to`: [`reissue_for_move`] for its
/// group there, signed with the key in `data_dir`. Done first so that the
/// reading which tells the device of its move carries the notice issued
/// again (one issued for nothing, should the move then fail, only sends
/// `to`'s stations the version they hold, which they do not show again).
pub async fn before_move(
    store: &Store,
    data_dir: &std::path::Path,
    agent_id: &str,
    to: &str,
) -> Result<Option<u64>, ReissueError> {
    let Some(agent) = store.agent_key(agent_id).await? else {
        return Ok(None);
    };
    if agent.revoked {
        return Ok(None);
    }
    let key =
        crate::secrets::load_signing_key(data_dir).map_err(|e| ReissueError::Key(e.to_string()))?;
    Ok(reissue_for_move(store, &key, &agent.group, to).await?)
}

/// The current (newest) notice of every group, by group.
pub fn current_all(conn: &Connection) -> rusqlite::Result<Vec<StoredNotice>> {
    sqlite::notice::current_all(conn)
}

/// The current notice of `group`.
pub fn current(conn: &Connection, group: &str) -> rusqlite::Result<Option<StoredNotice>> {
    ensure_schema(conn)?;
    sqlite::notice::current(conn, group)
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
    #[error("{0}")]
    Store(#[from] StoreError),
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
    let shown = sqlite::notice::bodies(conn, &ack.group, ack.version)?;
    check_ack(ack, shown)?;
    Ok(sqlite::notice::insert_ack(
        conn,
        &ack_row(ack, bytes, signature),
    )?)
}

/// As [`record_ack`], in `store` (either backend).
pub async fn record_ack_in(
    store: &Store,
    ack: &NoticeAckBody,
    bytes: &[u8],
    signature: &[u8],
) -> Result<bool, AckRefusal> {
    let shown = store.notice_bodies(&ack.group, ack.version).await?;
    check_ack(ack, shown)?;
    Ok(store.insert_ack(&ack_row(ack, bytes, signature)).await?)
}

/// The acknowledged notice must exist and be bytes the collector signed
/// for that version (as first issued or issued again).
fn check_ack(ack: &NoticeAckBody, bodies: Vec<Vec<u8>>) -> Result<(), AckRefusal> {
    if bodies.is_empty() {
        return Err(AckRefusal::UnknownNotice {
            group: ack.group.clone(),
            version: ack.version,
        });
    }
    let signed = |b: &Vec<u8>| {
        ring::digest::digest(&ring::digest::SHA256, b).as_ref() == ack.notice_sha256.as_slice()
    };
    if !bodies.iter().any(signed) {
        return Err(AckRefusal::OtherText {
            group: ack.group.clone(),
            version: ack.version,
        });
    }
    Ok(())
}

fn ack_row<'a>(ack: &'a NoticeAckBody, bytes: &'a [u8], signature: &'a [u8]) -> AckRow<'a> {
    AckRow {
        agent_id: &ack.agent_id,
        ack_id: &ack.ack_id,
        user: &ack.user,
        station: &ack.station,
        group: &ack.group,
        version: ack.version,
        time_ms: ack.time_ms,
        received_ms: store::now_ms(),
        body: bytes,
        signature,
    }
}

/// Every acknowledgement `user` gave (case-insensitive), oldest first.
pub fn acks_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<AckRecord>> {
    ensure_schema(conn)?;
    sqlite::notice::acks_of(conn, user)
}

/// Groups with a notice or with enrolled stations, sorted.
pub fn groups(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    ensure_schema(conn)?;
    sqlite::notice::groups(conn)
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

/// The week's counts on the stations of `school` ('' for every school).
pub fn week_counts(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    school: &str,
) -> rusqlite::Result<WeekCounts> {
    ensure_schema(conn)?;
    let received = sqlite::notice::received_between(conn, from_ms, to_ms, school)?;
    let mut counts = WeekCounts {
        received,
        ..WeekCounts::default()
    };
    for notice in crate::store::notice::shown_at(current_all(conn)?, school) {
        let standings = sqlite::notice::standings_in(conn, &notice.grp, school, &notice.school)?;
        let a = split(&notice.grp, notice.version, standings);
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
            school: String::new(),
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
        let counts = week_counts(&conn, 0, i64::MAX, "").unwrap();
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
