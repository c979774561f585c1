//! Curriculum exemptions: the DSL suspends a category or a term for a group
//! for a time-boxed period, with a reason (e.g. Year 10 PSHE on drugs this
//! week). Agents of that group apply them in their matcher path and stop by
//! themselves when the period ends. Every add and revoke is audited.

use rusqlite::{params, Connection};
use tutela_proto::v1::Exemption as WireExemption;

use crate::console::audit;
use crate::store;

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
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
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
}

/// A stored exemption.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exemption {
    pub id: i64,
    pub grp: String,
    pub category: String,
    pub term: String,
    pub reason: String,
    pub created_by: String,
    pub created_ms: i64,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub revoked_ms: Option<i64>,
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

/// Validates and stores an exemption, and writes it to the audit log, in
/// one transaction. Returns its id.
pub fn add(conn: &Connection, new: &NewExemption) -> Result<i64, ExemptionError> {
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
    crate::console::schema::create(conn)?;
    let id = store::in_savepoint(conn, "exemption_add", || -> rusqlite::Result<i64> {
        conn.execute(
            "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![group, category, term, reason, new.created_by, store::now_ms(), new.starts_ms, new.ends_ms],
        )?;
        let id = conn.last_insert_rowid();
        let what = if term.is_empty() {
            format!("category {category}")
        } else {
            format!("term \"{term}\"")
        };
        audit::append(
            conn,
            &new.created_by,
            "exemption-add",
            &format!("exemption:{id}"),
            &format!(
                "group {group}, {what}, {} to {}: {reason}",
                new.starts_ms, new.ends_ms
            ),
        )?;
        Ok(id)
    })?;
    crate::subscription::nudge();
    tracing::info!(id, group, by = %new.created_by, "exemption added");
    Ok(id)
}

/// Revokes an exemption now, audited.
pub fn revoke(conn: &Connection, id: i64, by: &str) -> Result<(), ExemptionError> {
    crate::console::schema::create(conn)?;
    let existing = get(conn, id)?.ok_or(ExemptionError::NotFound(id))?;
    if existing.revoked_ms.is_some() {
        return Err(ExemptionError::AlreadyRevoked(id));
    }
    store::in_savepoint(conn, "exemption_revoke", || -> rusqlite::Result<()> {
        conn.execute(
            "UPDATE exemptions SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, store::now_ms()],
        )?;
        audit::append(
            conn,
            by,
            "exemption-revoke",
            &format!("exemption:{id}"),
            &format!("group {}, {}", existing.grp, existing.target()),
        )
    })?;
    crate::subscription::nudge();
    tracing::info!(id, by, "exemption revoked");
    Ok(())
}

const COLUMNS: &str =
    "id, grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, revoked_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Exemption> {
    Ok(Exemption {
        id: r.get(0)?,
        grp: r.get(1)?,
        category: r.get(2)?,
        term: r.get(3)?,
        reason: r.get(4)?,
        created_by: r.get(5)?,
        created_ms: r.get(6)?,
        starts_ms: r.get(7)?,
        ends_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Exemption>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM exemptions WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

/// Every exemption, newest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM exemptions ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

/// Exemptions in force or still to come at `now_ms` (not revoked, not ended),
/// for every group: what agents must hold.
pub fn pending(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM exemptions WHERE revoked_ms IS NULL AND ends_ms > ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([now_ms], row)?;
    rows.collect()
}

/// Exemptions made or revoked in `[from_ms, to_ms)`, oldest first (for the
/// governors' part of the weekly summary).
pub fn changed_between(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<Exemption>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM exemptions
         WHERE (created_ms >= ?1 AND created_ms < ?2) OR (revoked_ms >= ?1 AND revoked_ms < ?2)
         ORDER BY created_ms, id"
    ))?;
    let rows = stmt.query_map([from_ms, to_ms], row)?;
    rows.collect()
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
