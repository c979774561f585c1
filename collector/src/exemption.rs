//! Curriculum exemptions: the DSL suspends a category or a term for a group
//! for a time-boxed period, with a reason (e.g. Year 10 PSHE on drugs this
//! week). Agents of that group apply them in their matcher path and stop by
//! themselves when the period ends. Every add and revoke is audited.

use rusqlite::Connection;
use tutela_proto::v1::Exemption as WireExemption;

pub use crate::store::exemption::Exemption;
use crate::store::exemption::{AuditNote, NewExemptionRow, Revoked};
use crate::store::{self, sqlite, Store, StoreError};

/// Longest exemption allowed: one school term.
pub const MAX_DURATION_MS: i64 = 16 * 7 * 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum ExemptionError {
    #[error("give a group: exemptions apply to one group (site, room or year group)")]
    NoGroup,
    #[error("give exactly one of a category or a term")]
    Target,
    #[error("unknown category `{0}`: use one of {cats}", cats = tutela_rules::CATEGORIES.join(", "))]
    UnknownCategory(String),
    #[error("the exemption needs a reason (it is shown in the audit log and the weekly summary)")]
    NoReason,
    #[error("the end time must be after the start and at most 16 weeks later")]
    Period,
    #[error("{field} is too long (at most 200 characters)")]
    TooLong { field: &'static str },
    #[error("no exemption {0}; see `tutela-collector exemption list`")]
    NotFound(i64),
    #[error("exemption {0} was already revoked")]
    AlreadyRevoked(i64),
    #[error(
        "exemption {0} holds for every school: only an account over the whole trust can revoke it"
    )]
    TrustWide(i64),
    #[error("no school `{0}`; see `tutela-collector schools list`")]
    NoSchool(String),
    #[error("no enrolled, unrevoked agent {0}; see `tutela-collector agents list`")]
    NoAgent(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A new exemption as asked for.
#[derive(Debug, Clone)]
pub struct NewExemption {
    pub group: String,
    pub category: String,
    pub term: String,
    pub reason: String,
    pub created_by: String,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// The school it holds for ('': every school of the trust).
    pub school: String,
}

impl Exemption {
    /// `active`, `scheduled`, `expired` or `revoked` at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.revoked_ms.is_some() {
            "revoked"
        } else if now_ms >= self.ends_ms {
            "expired"
        } else if now_ms < self.starts_ms {
            "scheduled"
        } else {
            "active"
        }
    }

    /// What is exempted, for display: `category drugs` or `term "cannabis"`.
    pub fn target(&self) -> String {
        if self.term.is_empty() {
            format!("category {}", self.category)
        } else {
            format!("term \"{}\"", self.term)
        }
    }

    pub fn to_wire(&self) -> WireExemption {
        WireExemption {
            id: self.id,
            group: self.grp.clone(),
            category: self.category.clone(),
            term: self.term.clone(),
            starts_ms: self.starts_ms,
            ends_ms: self.ends_ms,
        }
    }
}

fn check_len(field: &'static str, text: &str) -> Result<(), ExemptionError> {
    if text.chars().count() > 200 {
        return Err(ExemptionError::TooLong { field });
    }
    Ok(())
}

/// An exemption checked and normalised: group, category, term and reason trimmed, lower case.
struct Checked {
    group: String,
    category: String,
    term: String,
    reason: String,
}

fn validate(new: &NewExemption) -> Result<Checked, ExemptionError> {
    let group = new.group.trim();
    let category = new.category.trim().to_lowercase();
    let term = new.term.trim().to_lowercase();
    let reason = new.reason.trim();
    if group.is_empty() {
        return Err(ExemptionError::NoGroup);
    }
    if category.is_empty() == term.is_empty() {
        return Err(ExemptionError::Target);
    }
    // An exemption for a category no pack has would silence nothing.
    if !category.is_empty() && !tutela_rules::is_category(&category) {
        return Err(ExemptionError::UnknownCategory(category));
    }
    if reason.is_empty() {
        return Err(ExemptionError::NoReason);
    }
    for (field, text) in [
        ("the group", group),
        ("the category", &category),
        ("the term", &term),
        ("the reason", reason),
    ] {
        check_len(field, text)?;
    }
    if new.ends_ms <= new.starts_ms || new.ends_ms - new.starts_ms > MAX_DURATION_MS {
        return Err(ExemptionError::Period);
    }
    Ok(Checked {
        group: group.to_owned(),
        category,
        term,
        reason: reason.to_owned(),
    })
}

impl Checked {
    fn row<'a>(&'a self, new: &'a NewExemption) -> NewExemptionRow<'a> {
        NewExemptionRow {
            group: &self.group,
            category: &self.category,
            term: &self.term,
            reason: &self.reason,
            created_by: &new.created_by,
            created_ms: store::now_ms(),
            starts_ms: new.starts_ms,
            ends_ms: new.ends_ms,
            school: &new.school,
        }
    }

    /// The audit entry of the exemption once stored as `id`.
    fn note(&self, new: &NewExemption) -> impl FnOnce(i64) -> AuditNote + Send + 'static {
        let what = if self.term.is_empty() {
            format!("category {}", self.category)
        } else {
            format!("term \"{}\"", self.term)
        };
        let school = if new.school.is_empty() {
            String::new()
        } else {
            format!("school {}, ", new.school)
        };
        let detail = format!(
            "{school}group {}, {what}, {} to {}: {}",
            self.group, new.starts_ms, new.ends_ms, self.reason
        );
        let actor = new.created_by.clone();
        move |id| AuditNote {
            actor,
            action: "exemption-add",
            target: format!("exemption:{id}"),
            detail,
        }
    }

    fn added(&self, id: i64, by: &str) -> i64 {
        crate::subscription::nudge();
        tracing::info!(id, group = %self.group, by, "exemption added");
        id
    }
}

/// Validates and stores an exemption, and writes it to the audit log, in
/// one transaction. Returns its id.
pub fn add(conn: &Connection, new: &NewExemption) -> Result<i64, ExemptionError> {
    let checked = validate(new)?;
    let id = sqlite::exemption::add(conn, &checked.row(new), checked.note(new))?;
    Ok(checked.added(id, &new.created_by))
}

/// As [`add`], in `store` (either backend): agents of the group connected
/// to any collector on it receive the new set.
pub async fn add_to(store: &Store, new: &NewExemption) -> Result<i64, ExemptionError> {
    let checked = validate(new)?;
    if !new.school.is_empty() && !store.school_exists(&new.school).await? {
        return Err(ExemptionError::NoSchool(new.school.clone()));
    }
    let id = store
        .add_exemption(&checked.row(new), checked.note(new))
        .await?;
    Ok(checked.added(id, &new.created_by))
}

fn revoke_note(by: &str) -> impl FnOnce(&Exemption) -> AuditNote + Send + 'static {
    let actor = by.to_owned();
    move |e| AuditNote {
        actor,
        action: "exemption-revoke",
        target: format!("exemption:{}", e.id),
        detail: if e.school.is_empty() {
            format!("group {}, {}", e.grp, e.target())
        } else {
            format!("school {}, group {}, {}", e.school, e.grp, e.target())
        },
    }
}

fn revoked(outcome: Revoked, id: i64, by: &str) -> Result<(), ExemptionError> {
    match outcome {
        Revoked::NotFound => Err(ExemptionError::NotFound(id)),
        Revoked::Already => Err(ExemptionError::AlreadyRevoked(id)),
        Revoked::TrustWide => Err(ExemptionError::TrustWide(id)),
        Revoked::Done => {
            crate::subscription::nudge();
            tracing::info!(id, by, "exemption revoked");
            Ok(())
        }
    }
}

/// Revokes an exemption now, audited.
pub fn revoke(conn: &Connection, id: i64, by: &str) -> Result<(), ExemptionError> {
    let outcome = sqlite::exemption::revoke(conn, None, id, store::now_ms(), revoke_note(by))?;
    revoked(outcome, id, by)
}

/// As [`revoke`], in `store` (either backend), if `scope` may change it
/// (another school's is not found; a trust-wide one is the trust's).
pub async fn revoke_in(
    store: &Store,
    scope: &crate::store::schools::Scope,
    id: i64,
    by: &str,
) -> Result<(), ExemptionError> {
    let outcome = store
        .revoke_exemption(scope, id, store::now_ms(), revoke_note(by))
        .await?;
    revoked(outcome, id, by)
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Exemption>> {
    sqlite::exemption::get(conn, id)
}

/// Every exemption, newest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Exemption>> {
    sqlite::exemption::list(conn)
}

/// Exemptions in force or still to come at `now_ms` (not revoked, not ended),
/// for every group: what agents must hold.
pub fn pending(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Exemption>> {
    sqlite::exemption::pending(conn, now_ms)
}

/// Exemptions made or revoked in `[from_ms, to_ms)` that `school`'s
/// stations hold (its own and trust-wide ones; every one for ''), oldest
/// first (for the governors' part of the weekly summary).
pub fn changed_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    school: &str,
) -> rusqlite::Result<Vec<Exemption>> {
    sqlite::exemption::changed_between(conn, from_ms, to_ms, school)
}

/// Moves an enrolled agent to `group` (audited): the collector it is
/// connected to sends it a signed assignment, then that group's exemptions
/// and notice. Returns the group as stored.
pub async fn move_agent(
    store: &Store,
    agent_id: &str,
    group: &str,
    by: &str,
) -> Result<String, ExemptionError> {
    let group = group.trim();
    if group.is_empty() {
        return Err(ExemptionError::NoGroup);
    }
    check_len("the group", group)?;
    let note = AuditNote {
        actor: by.to_owned(),
        action: "agent-move",
        target: format!("agent:{agent_id}"),
        detail: format!("to group {group}"),
    };
    if !store
        .move_agent(agent_id, group, store::now_ms(), note)
        .await?
    {
        return Err(ExemptionError::NoAgent(agent_id.to_owned()));
    }
    crate::subscription::nudge();
    tracing::info!(agent_id, group, by, "agent moved to another group");
    Ok(group.to_owned())
}

/// Parses an end time: an RFC 3339 instant (`2026-11-27T15:30:00Z`,
/// `2026-11-27T15:30:00+00:00`) or a duration from `now_ms` (`90s`, `45m`,
/// `8h`, `7d`, `1h 30m`; see [`crate::duration`]).
pub fn parse_until(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Ok(instant.as_millisecond());
    }
    let starts_like_a_date = text.len() >= 10 && text.as_bytes()[4] == b'-';
    match crate::duration::parse_ms(text) {
        Ok(ms) => now_ms
            .checked_add(ms)
            .ok_or_else(|| format!("`{text}` is too long")),
        Err(crate::duration::DurationError::Unreadable(_)) => Err(if starts_like_a_date {
            format!("`{text}` is not a time with its offset; write e.g. 2026-11-27T15:30:00Z or 2026-11-27T15:30:00+01:00")
        } else {
            format!("`{text}` is neither a time like 2026-11-27T15:30:00Z nor a duration like 7d")
        }),
        Err(e) => Err(e.to_string()),
    }
}

/// Signs a group's exemption set for the agents (see `SignedExemptions`):
/// stamps it with the time of issue, encodes it once, and signs
/// `EXEMPTIONS_DOMAIN || body` with the rule-bundle key.
pub fn sign_set(
    key: &ring::signature::Ed25519KeyPair,
    set: tutela_proto::v1::ExemptionSet,
) -> tutela_proto::v1::SignedExemptions {
    sign_set_at(key, set, store::now_ms())
}

/// Signs `set` as issued at `issued_ms`.
pub fn sign_set_at(
    key: &ring::signature::Ed25519KeyPair,
    mut set: tutela_proto::v1::ExemptionSet,
    issued_ms: i64,
) -> tutela_proto::v1::SignedExemptions {
    use prost::Message;
    set.issued_ms = issued_ms;
    let body = set.encode_to_vec();
    let mut message = tutela_proto::EXEMPTIONS_DOMAIN.to_vec();
    message.extend_from_slice(&body);
    tutela_proto::v1::SignedExemptions {
        signature: key.sign(&message).as_ref().to_vec(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_accepts_instants_and_durations() {
        assert_eq!(parse_until("1970-01-02T00:00:00Z", 0), Ok(86_400_000));
        assert_eq!(parse_until("1970-01-01T01:00:00+01:00", 0), Ok(0));
        assert_eq!(parse_until("7d", 5), Ok(5 + 7 * 86_400_000));
        assert_eq!(parse_until("3s", 0), Ok(3000));
        assert_eq!(parse_until("1h 30m", 0), Ok(90 * 60_000));
        assert_eq!(
            parse_until("2026-11-27t15:30:00.5z", 0),
            Ok(1_795_793_400_500)
        );
        assert!(parse_until("soon", 0).is_err());
        assert!(parse_until("3y", 0).unwrap_err().contains("unknown unit"));
        // Without an offset the instant is unknown.
        let err = parse_until("2026-11-27T15:30:00", 0).unwrap_err();
        assert!(err.contains("offset"), "{err}");
        assert!(parse_until("2026-02-30T10:00:00Z", 0).is_err());
    }

    #[test]
    fn add_validates_audits_and_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        let mut new = NewExemption {
            group: "y10".into(),
            category: "Drugs".into(),
            term: String::new(),
            reason: "PSHE on drugs this week".into(),
            created_by: "dsl.jones".into(),
            starts_ms: 1000,
            ends_ms: 2000,
            school: String::new(),
        };
        let id = add(&conn, &new).unwrap();
        let e = get(&conn, id).unwrap().unwrap();
        assert_eq!(e.category, "drugs");
        assert_eq!(e.state(1500), "active");
        assert_eq!(e.state(2000), "expired");
        assert_eq!(pending(&conn, 1999).unwrap().len(), 1);
        assert!(pending(&conn, 2000).unwrap().is_empty());
        revoke(&conn, id, "dsl.jones").unwrap();
        assert!(matches!(
            revoke(&conn, id, "dsl.jones"),
            Err(ExemptionError::AlreadyRevoked(_))
        ));
        assert!(pending(&conn, 1500).unwrap().is_empty());
        let actions: Vec<String> = conn
            .prepare("SELECT action FROM console_audit ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(actions, ["exemption-add", "exemption-revoke"]);
        new.category = "drug".into();
        let err = add(&conn, &new).unwrap_err();
        assert!(matches!(err, ExemptionError::UnknownCategory(_)), "{err}");
        assert!(err.to_string().contains("drugs, extremism"), "{err}");
        new.category = "Drugs".into();
        new.term = "cannabis".into();
        assert!(matches!(add(&conn, &new), Err(ExemptionError::Target)));
        new.category.clear();
        new.ends_ms = new.starts_ms;
        assert!(matches!(add(&conn, &new), Err(ExemptionError::Period)));
    }
}
