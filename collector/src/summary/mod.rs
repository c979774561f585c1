//! The weekly summary email for the DSL (and, for staff alerts, the head
//! teacher): figures from the database, a chart, HTML and text, queued in
//! the mail outbox.
//!
//! Each week is recorded in `summary_runs` in the same transaction that
//! writes its emails to the outbox, so a week is never queued twice by the
//! schedule, and a slot missed while the collector was down is caught up
//! once when it starts (only the latest slot: never a backlog of weeks).

pub mod chart;
pub mod cli;
pub mod content;
pub mod render;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use lettre::message::Mailbox;
use rusqlite::Connection;

use crate::config::CollectorConfig;
use crate::console::tz::Zone;
use crate::mail::{self, Content, InlineImage, MailError};
use crate::store::lease::Held;
use crate::store::summary::SummaryQueue;
use crate::store::{now_ms, Jobs};
use content::Audience;
use schedule::{Schedule, Week};

/// The summary's tables, and an index on `alerts (time_ms)` so that the
/// week's queries read the week's rows rather than the whole table.
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    crate::store::sqlite::summary::upgrade(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error("{0}")]
    Config(String),
}

/// The school's time zone (`[console] time_zone`), UTC if unknown (`serve`
/// refuses an unknown one at start).
pub fn zone(config: &CollectorConfig) -> Zone {
    Zone::parse(&config.console.time_zone).unwrap_or_else(|_| Zone::utc())
}

/// The configured weekly slot.
pub fn schedule(config: &CollectorConfig) -> Result<Schedule, SummaryError> {
    Schedule::parse(&config.summary.day, &config.summary.time, zone(config))
        .map_err(SummaryError::Config)
}

/// The week holding local date `date` (`YYYY-MM-DD`): weeks start on the
/// schedule's weekday, so another day is rounded down to the one before it
/// (the same week the schedule sends, recorded under the same label).
pub fn week_of(config: &CollectorConfig, date: &str) -> Result<Week, SummaryError> {
    let day = crate::console::tz::parse_date(date).ok_or_else(|| {
        SummaryError::Config(format!("--week {date:?} is not a date; use YYYY-MM-DD"))
    })?;
    let weekday = schedule(config)?.weekday;
    Ok(Week {
        start: crate::console::tz::add_days(day, -(schedule::weekday(day) - weekday).rem_euclid(7)),
        zone: zone(config),
    })
}

/// The most recent complete week by the schedule.
pub fn latest_week(config: &CollectorConfig, now: i64) -> Result<Week, SummaryError> {
    Ok(schedule(config)?.latest(now).1)
}

/// One rendered summary: the email content and its chart.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub audience: Audience,
    pub figures: content::Figures,
    pub content: Content,
}

/// The email for `figures`, with its chart.
pub fn rendered(figures: content::Figures) -> Result<Rendered, SummaryError> {
    let png = chart::draw(&render::chart_days(&figures))?;
    let content = Content {
        subject: render::subject(&figures),
        text: render::text(&figures),
        html: render::html(&figures, "cid:chart"),
        images: vec![InlineImage {
            cid: "chart".into(),
            png,
        }],
    };
    Ok(Rendered {
        audience: figures.audience,
        figures,
        content,
    })
}

/// The summary as one HTML file, the chart inline as a `data:` URI.
pub fn preview_html(figures: content::Figures) -> Result<String, SummaryError> {
    let r = rendered(figures)?;
    let png = &r.content.images[0].png;
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    Ok(render::html(&r.figures, &uri))
}

/// Who receives the summary, and which one: (address, audience, school),
/// the school '' for the trust's summary across every school.
pub fn recipients(config: &CollectorConfig) -> Vec<(String, Audience, String)> {
    let roles: Vec<&str> = config.summary.roles.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for r in &config.mail.recipients {
        let holds = |role: &str| roles.contains(&role) && r.roles.iter().any(|x| x == role);
        let address = r.address.trim().to_owned();
        // The pupils' summary names categories and rules: for the DSLs only,
        // never for technicians (who see no alert in the console either).
        if r.roles
            .iter()
            .any(|x| matches!(x.as_str(), "dsl" | "deputy-dsl") && roles.contains(&x.as_str()))
        {
            out.push((address.clone(), Audience::Pupils, r.school.clone()));
        }
        if holds("head") {
            out.push((address, Audience::Staff, r.school.clone()));
        }
    }
    let mut seen: Vec<(String, Audience, String)> = Vec::new();
    out.retain(|(address, audience, school)| {
        let key = (mail::address_key(address), *audience, school.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    out
}

/// Why a week was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// By the schedule (or its catch-up at start): at most once per week.
    Schedule,
    /// `summary --send-now`: always, and the week then counts as sent.
    Manual,
}

/// Writes the week's emails to the outbox and records the week. By the
/// schedule, a week already recorded (by this or another collector) is
/// skipped (`None`).
///
/// The figures are read and rendered first, without holding the database's
/// write lock (rendering scans the week and draws the chart, and ingest
/// must not wait for it); then the outbox rows and the run are written in
/// one transaction, which re-checks the week (on PostgreSQL by the unique
/// key per school and week). With no recipient the week is not recorded.
pub async fn queue_week(
    jobs: &Jobs,
    config: &CollectorConfig,
    from: &Mailbox,
    week: &Week,
    trigger: Trigger,
    now: i64,
) -> Result<Option<usize>, SummaryError> {
    let label = week.label();
    let recipients = recipients(config);
    if recipients.is_empty() {
        return Err(SummaryError::Config(format!(
            "the weekly summary for the week of {label} has no recipients: no [[mail.recipients]] holds a role in [summary] roles ({}); add one",
            config.summary.roles.join(", ")
        )));
    }
    // The trust's summary first, then each school's, each recorded under
    // its own (school, week).
    let mut schools: Vec<&str> = recipients.iter().map(|(_, _, s)| s.as_str()).collect();
    schools.sort_unstable();
    schools.dedup();
    let mut queued = None;
    for school in schools {
        let to: Vec<(&str, Audience)> = recipients
            .iter()
            .filter(|(_, _, s)| s == school)
            .map(|(address, audience, _)| (address.as_str(), *audience))
            .collect();
        if let Some(n) =
            queue_school_week(jobs, config, from, week, school, &to, trigger, now).await?
        {
            queued = Some(queued.unwrap_or(0) + n);
        }
    }
    Ok(queued)
}

/// The week `week` names (the same local dates, the same label) in the
/// time zone of `school` when it has one of its own (`schools set
/// --time-zone`), else as given (the trust's): a school's summary counts
/// its own Monday-to-Sunday.
pub async fn school_week(jobs: &Jobs, week: &Week, school: &str) -> Result<Week, SummaryError> {
    if school.is_empty() {
        return Ok(week.clone());
    }
    let own = jobs
        .schools()
        .await?
        .into_iter()
        .find(|s| s.id == school)
        .map(|s| s.time_zone)
        .unwrap_or_default();
    if own.is_empty() {
        return Ok(week.clone());
    }
    match Zone::parse(&own) {
        Ok(zone) => Ok(Week {
            start: week.start,
            zone,
        }),
        Err(e) => {
            tracing::warn!(school, error = %e, "a school's stored time zone is unknown here; its summary uses the trust's");
            Ok(week.clone())
        }
    }
}

/// Queues the week's summary of `school` ('' for the trust) for `to`.
#[allow(clippy::too_many_arguments)]
async fn queue_school_week(
    jobs: &Jobs,
    config: &CollectorConfig,
    from: &Mailbox,
    week: &Week,
    school: &str,
    to: &[(&str, Audience)],
    trigger: Trigger,
    now: i64,
) -> Result<Option<usize>, SummaryError> {
    let label = week.label();
    if trigger == Trigger::Schedule && jobs.summary_done(school, &label).await? {
        return Ok(None);
    }
    let week = &school_week(jobs, week, school).await?;
    // Render each audience once.
    let mut done: Vec<Rendered> = Vec::new();
    for (_, audience) in to {
        if !done.iter().any(|r| r.audience == *audience) {
            let figures = jobs
                .summary_figures(config, week, *audience, school, now)
                .await?;
            done.push(rendered(figures)?);
        }
    }
    let mut emails = Vec::with_capacity(to.len());
    for (address, audience) in to {
        let r = done
            .iter()
            .find(|r| r.audience == *audience)
            .expect("rendered above");
        let message = mail::build(from, address, &r.content)?;
        emails.push(mail::outgoing(
            "summary",
            address,
            &r.content.subject,
            &message,
        )?);
    }
    Ok(jobs
        .queue_summary(SummaryQueue {
            school: school.to_owned(),
            week_start: label,
            queued_ms: now,
            scheduled: trigger == Trigger::Schedule,
            emails,
        })
        .await?)
}

/// Weeks queued so far: (week start, queued ms, trigger, emails), newest first.
pub fn runs(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<(String, i64, String, i64)>> {
    ensure_schema(conn)?;
    Ok(crate::store::sqlite::summary::runs(conn, limit)?
        .into_iter()
        .map(|r| (r.week_start, r.queued_ms, r.trigger, r.emails))
        .collect())
}

/// Checks `schedule` every `check_secs` and queues a due (or missed) week
/// once, while this collector holds the summary's lease (always, on
/// SQLite). (`mail::start` builds the schedule first, so that a wrong one
/// stops the collector from starting instead of silently turning the
/// summary off.)
pub async fn run(
    jobs: Jobs,
    config: CollectorConfig,
    schedule: Schedule,
    from: Mailbox,
    wake: Arc<tokio::sync::Notify>,
    lease: Held,
) {
    let every = Duration::from_secs(config.summary.check_secs.max(1));
    let started = now_ms();
    let grace_ms = config.summary.catch_up_delay_secs as i64 * 1000;
    loop {
        let now = now_ms();
        let (at, week) = schedule.latest(now);
        if at < started && now < started + grace_ms {
            // A slot missed while the collector was down: caught up after the grace period.
            tokio::time::sleep(every).await;
            continue;
        }
        if !lease.now() {
            // Another collector holds the summary's lease.
            tokio::time::sleep(every.min(Duration::from_secs(1))).await;
            continue;
        }
        match queue_week(&jobs, &config, &from, &week, Trigger::Schedule, now).await {
            Ok(Some(emails)) => {
                tracing::info!(week = %week.label(), emails, late_secs = (now - at) / 1000, "weekly summary queued");
                wake.notify_one();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(week = %week.label(), error = %e, "the weekly summary could not be queued; will try again")
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::console::tz::zone;
    use rusqlite::params;

    /// A store with the console, publishing, mail and summary tables.
    pub(crate) fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        crate::console::schema::create(&conn).unwrap();
        crate::publish::ensure_schema(&conn).unwrap();
        mail::ensure_schema(&conn).unwrap();
        ensure_schema(&conn).unwrap();
        (dir, conn)
    }

    pub(crate) fn insert_alert(conn: &Connection, user: &str, time_ms: i64, severity: i64) -> i64 {
        let seq: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM alerts", [], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source, context, app,
                app_path, window_title, url, search_query, category, severity, rule_id, term, matches, rules_version,
                state, body, signature, body_hash)
             VALUES (?1, 'ag', ?2, ?3, ?3, ?4, 'PC1', 'typed', '', 'app', '', '', '', '', 'bullying', ?5, 'r', 't',
                '[]', 1, 'new', x'00', x'00', x'00')",
            params![format!("ev-{seq}"), seq, time_ms, user, severity],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    #[test]
    fn days_are_counted_in_one_query_across_a_clock_change_using_the_time_index() {
        let (_dir, conn) = store();
        // The week holding the October change: one day of 25 hours.
        let week = Week {
            start: jiff::civil::date(2025, 10, 20),
            zone: zone("Europe/London"),
        };
        for (_, from, to) in week.days() {
            insert_alert(&conn, "pupil", from, 3);
            insert_alert(&conn, "pupil", to - 1, 3);
        }
        // Just outside the week.
        insert_alert(&conn, "pupil", week.start_ms() - 1, 3);
        insert_alert(&conn, "pupil", week.end_ms(), 3);
        let config = CollectorConfig::default();
        let f = crate::store::sqlite::summary::figures_in(
            &conn,
            &config,
            &week,
            Audience::Pupils,
            "",
            now_ms(),
        )
        .unwrap();
        let per_day: Vec<i64> = f.days.iter().map(|(_, c)| c.iter().sum()).collect();
        assert_eq!(per_day, [2; 7]);
        assert_eq!(f.days[6].0, "2025-10-26");
        assert_eq!(f.total, 14);

        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT a.category, COUNT(*) FROM alerts a
                 WHERE NOT (0) AND a.state <> 'folded' AND a.time_ms >= 1 AND a.time_ms < 2
                 GROUP BY a.category",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().any(|p| p.contains("summary_alerts_time")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_week_is_found_from_any_of_its_days_and_recipients_are_one_per_person() {
        let mut config = CollectorConfig::default();
        config.summary.day = "monday".into();
        // Wednesday 4 June 2025 is in the week from Monday 2 June.
        assert_eq!(
            week_of(&config, "2025-06-04").unwrap().label(),
            "2025-06-02"
        );
        assert_eq!(
            week_of(&config, "2025-06-02").unwrap().label(),
            "2025-06-02"
        );
        assert_eq!(
            week_of(&config, "2025-06-01").unwrap().label(),
            "2025-05-26"
        );
        config.summary.roles = vec!["dsl".into(), "deputy-dsl".into(), "head".into()];
        config.mail.recipients = vec![
            crate::config::Recipient {
                address: "Ann Lee <DSL@school.test>".into(),
                roles: vec!["dsl".into()],
                school: String::new(),
            },
            crate::config::Recipient {
                address: "dsl@School.test".into(),
                roles: vec!["deputy-dsl".into(), "head".into()],
                school: String::new(),
            },
        ];
        assert_eq!(
            recipients(&config),
            [
                (
                    "Ann Lee <DSL@school.test>".to_owned(),
                    Audience::Pupils,
                    String::new()
                ),
                ("dsl@School.test".to_owned(), Audience::Staff, String::new()),
            ]
        );
        // A technician gets no summary, even when the role is listed.
        config.summary.roles.push("technician".into());
        config.mail.recipients.push(crate::config::Recipient {
            address: "it@school.test".into(),
            roles: vec!["technician".into()],
            school: String::new(),
        });
        assert_eq!(recipients(&config).len(), 2);
    }

    #[tokio::test]
    async fn a_week_with_no_recipients_is_not_recorded() {
        let (dir, conn) = store();
        let jobs = Jobs::sqlite(crate::store::open(dir.path()).unwrap()).unwrap();
        let config = CollectorConfig::default();
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        let week = week_of(&config, "2025-06-02").unwrap();
        let err = queue_week(&jobs, &config, &from, &week, Trigger::Schedule, now_ms())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no recipients"), "{err}");
        assert!(runs(&conn, 10).unwrap().is_empty());
    }
}
