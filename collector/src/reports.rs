//! Pupils' reports of a concern, stored as alerts of their own source so
//! that they share the DSL's queue, review workflow, exports, urgent email
//! and retention with agents' alerts.
//!
//! A report is not an agent's event: it carries no signature, agent or
//! station, and `source` says `pupil_report`. An anonymous report stores no
//! account, station, address, browser or cookie: only the words, the
//! optional category, whether help is needed now and when it arrived. The
//! audit log records that a report arrived, never from where.

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::Connection;

use crate::store::exemption::AuditNote;
use crate::store::reports::NewReport;
use crate::store::{Store, StoreError};

use crate::store::now_ms;

/// The `source` of a pupil's report in the alerts table.
pub const SOURCE: &str = "pupil_report";
/// The `agent_id` reports are numbered under (no agent has it: agents' ids are hex).
pub const AGENT: &str = "pupil-report";
/// The `rule_id` of a report: no rule fired.
pub const RULE: &str = "pupil-report";
/// The category of a report whose writer chose none.
pub const UNSORTED: &str = "concern";
/// Severity of a report: urgent (severity 5, emailed at once) when help is
/// needed now; otherwise 3.
pub const HELP_NOW_SEVERITY: i64 = 5;
pub const SEVERITY: i64 = 3;

/// The longest report, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Categories a pupil may choose, with the words the report page uses.
pub const CATEGORIES: [(&str, &str); 9] = [
    ("bullying", "Bullying or being picked on"),
    ("self-harm", "Hurting myself"),
    ("suicide", "Not wanting to be alive"),
    (
        "child-exploitation",
        "Someone asking me to do things I don't want to",
    ),
    ("discrimination", "Being treated badly for who I am"),
    ("violence", "Violence or threats"),
    ("weapons", "Someone with a weapon"),
    ("drugs", "Drugs or alcohol"),
    ("illegal", "Something else that is against the law"),
];

/// A report as written.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The writer's name or username; `None` for an anonymous report.
    pub name: Option<String>,
    pub category: Option<String>,
    pub text: String,
    pub help_now: bool,
    /// The school it goes to (the default school unless the form names one).
    pub school: String,
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("Your report is empty. Write what is worrying you, then press Send.")]
    Empty,
    #[error("Your report is too long ({0} characters). Keep it to {MAX_TEXT_CHARS} characters and send it again; you can send a second report for the rest.")]
    TooLong(usize),
    #[error("Your name is too long: use at most {MAX_NAME_CHARS} characters, or leave it empty to stay anonymous.")]
    NameTooLong,
    #[error("Your name has characters that cannot be used; type it again, or leave it empty to stay anonymous.")]
    NameUnusable,
    #[error("Choose one of the listed kinds of worry, or 'Not sure'.")]
    UnknownCategory,
}

impl Report {
    /// Reads a report from the page's fields, refusing bad input.
    pub fn from_fields(
        name: &str,
        category: &str,
        text: &str,
        help_now: bool,
    ) -> Result<Self, Refused> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Refused::Empty);
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(Refused::TooLong(chars));
        }
        let name = name.trim();
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Refused::NameTooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(Refused::NameUnusable);
        }
        let category = match category.trim() {
            "" => None,
            c if CATEGORIES.iter().any(|(id, _)| *id == c) => Some(c.to_owned()),
            _ => return Err(Refused::UnknownCategory),
        };
        Ok(Self {
            name: (!name.is_empty()).then(|| name.to_owned()),
            category,
            text: text.to_owned(),
            help_now,
            school: crate::store::schools::DEFAULT_SCHOOL.to_owned(),
        })
    }

    pub fn severity(&self) -> i64 {
        if self.help_now {
            HELP_NOW_SEVERITY
        } else {
            SEVERITY
        }
    }
}

fn event_id() -> String {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    hex::encode(b)
}

/// The row and audit entry a report is stored as.
fn new_report<'a>(report: &'a Report, event_id: &'a str, now: i64) -> NewReport<'a> {
    NewReport {
        event_id,
        agent_id: AGENT,
        time_ms: now,
        user: report.name.as_deref().unwrap_or(""),
        source: SOURCE,
        text: &report.text,
        category: report.category.as_deref().unwrap_or(UNSORTED),
        severity: report.severity(),
        rule_id: RULE,
        school: &report.school,
    }
}

fn note(report: &Report) -> impl FnOnce(i64) -> AuditNote + Send + 'static {
    let detail = format!(
        "{}{}",
        if report.name.is_some() {
            "named"
        } else {
            "anonymous"
        },
        if report.help_now { "; help now" } else { "" }
    );
    move |id| AuditNote {
        actor: "pupil-report".to_owned(),
        action: "report_received",
        target: format!("alert:{id}"),
        detail,
    }
}

/// Stores `report` and its audit entry in one transaction; returns its id.
pub fn store(conn: &Connection, report: &Report) -> rusqlite::Result<i64> {
    let event_id = event_id();
    crate::store::sqlite::reports::insert(
        conn,
        &new_report(report, &event_id, now_ms()),
        note(report),
    )
}

/// As [`store`], in `store` (either backend).
pub async fn store_in(store: &Store, report: &Report) -> Result<i64, StoreError> {
    let event_id = event_id();
    store
        .store_report(&new_report(report, &event_id, now_ms()), note(report))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_reports_are_refused_with_a_reason() {
        assert_eq!(
            Report::from_fields("", "", "   \n", false).unwrap_err(),
            Refused::Empty
        );
        let long = "a".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            Report::from_fields("", "", &long, false).unwrap_err(),
            Refused::TooLong(MAX_TEXT_CHARS + 1)
        );
        assert_eq!(
            Report::from_fields(&"n".repeat(65), "", "help", false).unwrap_err(),
            Refused::NameTooLong
        );
        assert_eq!(
            Report::from_fields("a\u{7}b", "", "help", false).unwrap_err(),
            Refused::NameUnusable
        );
        assert_eq!(
            Report::from_fields("", "pornography", "help", false).unwrap_err(),
            Refused::UnknownCategory
        );
        let ok = Report::from_fields("  ", "bullying", " they take my lunch ", true).unwrap();
        assert_eq!(ok.name, None);
        assert_eq!(ok.text, "they take my lunch");
        assert_eq!(ok.severity(), 5);
    }

    #[test]
    fn an_anonymous_report_is_stored_without_identity_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        crate::console::schema::create(&conn).unwrap();
        let report = Report::from_fields("", "", "someone is hurting my friend", true).unwrap();
        let first = store(&conn, &report).unwrap();
        let second = store(&conn, &report).unwrap();
        assert!(second > first);
        let (user, station, source, severity, category): (String, String, String, i64, String) =
            conn.query_row(
                "SELECT user, station, source, severity, category FROM alerts WHERE id = ?1",
                [first],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (
                user.as_str(),
                station.as_str(),
                source.as_str(),
                severity,
                category.as_str()
            ),
            ("", "", SOURCE, 5, UNSORTED)
        );
        let detail: String = conn
            .query_row(
                "SELECT detail FROM console_audit WHERE action = 'report_received' AND target = ?1",
                [format!("alert:{first}")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(detail, "anonymous; help now");
    }
}
