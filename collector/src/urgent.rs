//! Urgent notifications: alerts of severity 4 and 5 are emailed within a
//! minute of arriving, batched per interval into one email per recipient.
//! The email carries links into the console only: no captures, no typed
//! text, no names. Alerts about staff go to `head` recipients; all others to
//! `dsl` and `deputy-dsl` recipients.
//!
//! Each alert is notified once, to the audience it belongs to when it is
//! mailed: `urgent_notified` records, in the same transaction that writes
//! the emails to the outbox, which audience each alert went to, so a staff
//! list import or a `staff_pattern` change neither loses an alert nor sends
//! it to a second audience, including across restarts. An audience with no
//! recipient keeps its alerts waiting until one is added. A floor (every
//! urgent alert at or below it has been notified) bounds the scan, and the
//! records below it are pruned.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use maud::{html, DOCTYPE};
use rusqlite::types::Value;
use rusqlite::Connection;

use crate::config::CollectorConfig;
use crate::console::auth::{Role, Viewer};
use crate::console::tz::Zone;
use crate::mail::{self, Content, MailError};
use crate::store::lease::Held;
use crate::store::now_ms;
use crate::store::urgent::{UrgentAlert, UrgentQueue};
use crate::store::Jobs;

pub use crate::store::urgent::URGENT_SEVERITY;

/// The most alerts linked in one email; the rest are counted.
pub const MAX_LINKS: usize = 50;

/// A viewer with `role`, for reusing the console's staff scoping.
pub(crate) fn role_viewer(role: Role) -> Viewer {
    Viewer {
        name: "mail".into(),
        role,
        csrf: String::new(),
        session_hash: Vec::new(),
        queue: crate::console::auth::QueueAccess::of(
            role,
            crate::console::settings::TechnicianQueue::None,
        ),
        school: crate::store::schools::Scope::Trust,
        grants: 1,
    }
}

/// The SQL expression (on alias `a`) that is true for alerts about staff,
/// with its parameters (SQLite).
pub(crate) fn staff_condition(
    conn: &Connection,
    pattern: &str,
) -> rusqlite::Result<(String, Vec<Value>)> {
    crate::store::sqlite::urgent::staff_condition(conn, &pattern.trim().to_lowercase())
}

/// What one pass queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub alerts: usize,
    pub emails: usize,
}

/// Queues notifications for urgent alerts not yet notified: one email per
/// recipient of each audience, written with the records of what was sent.
pub async fn queue(
    jobs: &Jobs,
    config: &CollectorConfig,
    from: &Mailbox,
) -> Result<Queued, MailError> {
    let zone = crate::summary::zone(config);
    let base = mail::console_url(config);
    let scan = jobs.urgent_scan(&config.console.staff_pattern).await?;
    if scan.newest <= scan.floor {
        return Ok(Queued::default());
    }
    let mut pupils = Vec::new();
    let mut staff_alerts = Vec::new();
    for a in &scan.pending {
        if a.staff {
            staff_alerts.push(a);
        } else {
            pupils.push(a);
        }
    }
    let mut queued = Queued::default();
    let now = now_ms();
    let mut plan = UrgentQueue {
        floor_was: scan.floor,
        floor: scan.newest,
        emails: Vec::new(),
        notified: Vec::new(),
        now_ms: now,
    };
    // The lowest alert left waiting (its audience has no recipient).
    let mut waiting = i64::MAX;
    for (alerts, roles, audience) in [
        (&pupils, &["dsl", "deputy-dsl"][..], "pupils"),
        (&staff_alerts, &["head"][..], "staff"),
    ] {
        if alerts.is_empty() {
            continue;
        }
        // The trust's recipients hear of every school's alerts; a school's
        // recipients of their school's.
        let trust = mail::recipients_with(&config.mail, roles);
        let schools = mail::school_recipients_with(&config.mail, roles);
        let mut sends: Vec<(&str, Vec<&UrgentAlert>)> = trust
            .iter()
            .map(|to| (to.as_str(), alerts.clone()))
            .collect();
        for (to, school) in &schools {
            let theirs: Vec<&UrgentAlert> = alerts
                .iter()
                .copied()
                .filter(|a| &a.school == school)
                .collect();
            if !theirs.is_empty() {
                sends.push((to.as_str(), theirs));
            }
        }
        let heard =
            |a: &UrgentAlert| !trust.is_empty() || schools.iter().any(|(_, s)| s == &a.school);
        let (covered, unheard): (Vec<&UrgentAlert>, Vec<&UrgentAlert>) =
            alerts.iter().copied().partition(|a| heard(a));
        if !unheard.is_empty() {
            // These alerts wait: they are notified once a recipient is added.
            tracing::warn!(
                audience,
                alerts = unheard.len(),
                roles = roles.join(","),
                "urgent alerts have no email recipient; add one to [mail] recipients"
            );
            waiting = waiting.min(unheard.iter().map(|a| a.id).min().unwrap_or(i64::MAX));
        }
        for (to, theirs) in &sends {
            let rows: Vec<(i64, i64, i64)> = theirs
                .iter()
                .map(|a| (a.id, a.time_ms, a.severity))
                .collect();
            let content = render(&rows, &base, &zone);
            let message = mail::build(from, to, &content)?;
            plan.emails
                .push(mail::outgoing("urgent", to, &content.subject, &message)?);
            queued.emails += 1;
        }
        plan.notified
            .extend(covered.iter().map(|a| (a.id, audience)));
        queued.alerts += covered.len();
    }
    // Every urgent alert below the lowest waiting one is notified.
    plan.floor = scan.newest.min(waiting.saturating_sub(1));
    if !jobs.urgent_queue(plan).await? {
        tracing::info!("urgent alerts were notified meanwhile by another collector");
        return Ok(Queued::default());
    }
    if queued.alerts > 0 {
        tracing::info!(
            alerts = queued.alerts,
            emails = queued.emails,
            "urgent notifications queued"
        );
    }
    Ok(queued)
}

/// The email: severity, time and a console link per alert; nothing else.
fn render(alerts: &[(i64, i64, i64)], base: &str, zone: &Zone) -> Content {
    let n = alerts.len();
    let subject = format!(
        "Tutela: {n} urgent alert{} to review",
        if n == 1 { "" } else { "s" }
    );
    let mut text = format!(
        "{n} alert{} of severity 4 or 5 arrived. Review {} in the Tutela console:\n\n",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" }
    );
    let shown = &alerts[..alerts.len().min(MAX_LINKS)];
    for &(id, time, severity) in shown {
        text.push_str(&format!(
            "- severity {severity}, {}: {base}/alerts/{id}\n",
            zone.format(time)
        ));
    }
    let more = n.saturating_sub(MAX_LINKS);
    if more > 0 {
        text.push_str(&format!(
            "- and {more} more: see the review queue at {base}/\n"
        ));
    }
    text.push_str("\nThis email holds links only; sign in to see the details.\n");
    let html = html! {
        (DOCTYPE)
        html {
            body style="font-family:sans-serif" {
                p {
                    (n) " alert" @if n != 1 { "s" }
                    " of severity 4 or 5 arrived. Review in the Tutela console:"
                }
                ul {
                    @for &(id, time, severity) in shown {
                        li {
                            "Severity " b { (severity) } ", " (zone.format(time)) ": "
                            a href={ (base) "/alerts/" (id) } { "alert " (id) }
                        }
                    }
                    @if more > 0 {
                        li { "and " (more) " more: see the " a href={ (base) "/" } { "review queue" } }
                    }
                }
                p style="color:#555" { "This email holds links only; sign in to see the details." }
            }
        }
    }
    .into_string();
    Content {
        subject,
        text,
        html,
        images: Vec::new(),
    }
}

/// Queues urgent notifications every `urgent_interval_secs` until the
/// process ends, while this collector holds the urgent-mail lease (always,
/// on SQLite). (`mail::start` sets the floor first, so that a store that
/// cannot be used stops the collector from starting.)
pub async fn run(
    jobs: Jobs,
    config: CollectorConfig,
    from: Mailbox,
    wake: Arc<tokio::sync::Notify>,
    lease: Held,
) {
    let every = Duration::from_secs(config.mail.urgent_interval_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        if !lease.now() {
            continue;
        }
        match queue(&jobs, &config, &from).await {
            Ok(q) if q.emails > 0 => wake.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "urgent notifications could not be queued"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Recipient;
    use crate::store::sqlite::urgent::{cursor, CURSOR, FLOOR, STAFF_CURSOR};
    use crate::summary::tests::{insert_alert, store};

    /// Background work's handle on the test store's file.
    fn jobs(dir: &tempfile::TempDir) -> Jobs {
        Jobs::sqlite(crate::store::open(dir.path()).unwrap()).unwrap()
    }

    fn config(roles: &[&str]) -> CollectorConfig {
        let mut c = CollectorConfig::default();
        c.console.staff_pattern = "mr.*".into();
        c.mail.recipients = roles
            .iter()
            .map(|role| Recipient {
                address: format!("{role}@school.test"),
                roles: vec![(*role).into()],
                school: String::new(),
            })
            .collect();
        c
    }

    fn outbox(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT recipient, subject FROM mail_outbox ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows
    }

    #[tokio::test]
    async fn an_audience_without_recipients_keeps_its_alerts_until_one_is_added() {
        let (dir, conn) = store();
        let jobs = jobs(&dir);
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        jobs.init_urgent(0).await.unwrap();
        insert_alert(&conn, "mr.smith", now_ms(), 5);
        insert_alert(&conn, "pupil.1", now_ms(), 4);
        insert_alert(&conn, "pupil.2", now_ms(), 2);
        // No head: the pupil's alert goes; the staff alert waits.
        let q = queue(&jobs, &config(&["dsl"]), &from).await.unwrap();
        assert_eq!(
            q,
            Queued {
                alerts: 1,
                emails: 1
            }
        );
        assert_eq!(
            outbox(&conn),
            [(
                "dsl@school.test".to_owned(),
                "Tutela: 1 urgent alert to review".to_owned()
            )]
        );
        assert_eq!(
            queue(&jobs, &config(&["dsl"]), &from).await.unwrap().emails,
            0
        );
        // A head is added: the staff alert is sent, the pupil's is not sent again.
        let q = queue(&jobs, &config(&["dsl", "head"]), &from)
            .await
            .unwrap();
        assert_eq!(
            q,
            Queued {
                alerts: 1,
                emails: 1
            }
        );
        assert_eq!(outbox(&conn)[1].0, "head@school.test");
        assert_eq!(
            queue(&jobs, &config(&["dsl", "head"]), &from)
                .await
                .unwrap(),
            Queued::default()
        );
    }

    fn notified(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM urgent_notified", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_staff_list_change_neither_loses_an_alert_nor_sends_it_to_a_second_audience() {
        let (dir, conn) = store();
        let jobs = jobs(&dir);
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        jobs.init_urgent(0).await.unwrap();
        let mut by_list = config(&["dsl"]);
        by_list.console.staff_pattern.clear();
        conn.execute_batch(
            "INSERT INTO console_staff (username, imported_ms) VALUES ('ms.jones', 0), ('ms.brown', 0)",
        )
        .unwrap();
        let jones = insert_alert(&conn, "ms.jones", now_ms(), 5);
        let pupil = insert_alert(&conn, "pupil.1", now_ms(), 4);
        // No head: the pupil's alert goes to the DSL, Ms Jones's waits.
        let q = queue(&jobs, &by_list, &from).await.unwrap();
        assert_eq!(q.alerts, 1);
        assert_eq!(outbox(&conn).len(), 1);
        // The staff list is imported again: Ms Jones is not on it (she is a
        // pupil after all), and pupil.1 now is. Her alert is not lost: it goes
        // to the DSL; pupil.1's is not sent again to anyone.
        conn.execute_batch(
            "DELETE FROM console_staff; INSERT INTO console_staff (username, imported_ms) VALUES ('pupil.1', 0), ('ms.brown', 0)",
        )
        .unwrap();
        let mut with_head = config(&["dsl", "head"]);
        with_head.console.staff_pattern.clear();
        let q = queue(&jobs, &with_head, &from).await.unwrap();
        assert_eq!(
            q,
            Queued {
                alerts: 1,
                emails: 1
            }
        );
        let sent = outbox(&conn);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].0, "dsl@school.test");
        let linked: String = conn
            .query_row(
                "SELECT message FROM mail_outbox ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .unwrap();
        assert!(linked.contains(&format!("/alerts/{jones}")), "{linked}");
        assert_eq!(
            queue(&jobs, &with_head, &from).await.unwrap(),
            Queued::default()
        );
        // Everything is notified: the floor passed both, no records remain.
        assert_eq!(notified(&conn), 0);
        assert_eq!(cursor(&conn, FLOOR).unwrap(), Some(pupil.max(jones)));
        // A new staff alert goes to the head only, once.
        insert_alert(&conn, "ms.brown", now_ms(), 4);
        let q = queue(&jobs, &with_head, &from).await.unwrap();
        assert_eq!(q.emails, 1);
        assert_eq!(outbox(&conn)[2].0, "head@school.test");
        assert_eq!(
            queue(&jobs, &with_head, &from).await.unwrap(),
            Queued::default()
        );
    }

    #[tokio::test]
    async fn the_cursors_of_an_earlier_version_are_converted_without_resending() {
        let (dir, conn) = store();
        let jobs = jobs(&dir);
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        let staff = insert_alert(&conn, "mr.smith", now_ms(), 5);
        let pupil = insert_alert(&conn, "pupil.1", now_ms(), 5);
        // The pupils' cursor passed both; the staff cursor waited (no head).
        mail::ensure_schema(&conn).unwrap();
        conn.execute(
            "INSERT INTO mail_cursor (name, value) VALUES (?1, ?2), (?3, 0)",
            rusqlite::params![CURSOR, pupil, STAFF_CURSOR],
        )
        .unwrap();
        jobs.init_urgent(now_ms() + 1).await.unwrap();
        let q = queue(&jobs, &config(&["dsl", "head"]), &from)
            .await
            .unwrap();
        assert_eq!(
            q,
            Queued {
                alerts: 1,
                emails: 1
            }
        );
        assert_eq!(outbox(&conn)[0].0, "head@school.test");
        assert_eq!(cursor(&conn, CURSOR).unwrap(), None);
        assert_eq!(cursor(&conn, FLOOR).unwrap(), Some(staff.max(pupil)));
        assert_eq!(
            queue(&jobs, &config(&["dsl", "head"]), &from)
                .await
                .unwrap(),
            Queued::default()
        );
    }

    #[test]
    fn a_large_batch_links_fifty_alerts_and_counts_the_rest() {
        let alerts: Vec<(i64, i64, i64)> = (1..=120).map(|id| (id, 0, 5)).collect();
        let c = render(&alerts, "https://c.test", &Zone::utc());
        assert_eq!(c.subject, "Tutela: 120 urgent alerts to review");
        assert_eq!(c.text.matches("https://c.test/alerts/").count(), MAX_LINKS);
        assert!(c
            .text
            .contains("- and 70 more: see the review queue at https://c.test/"));
        assert_eq!(c.html.matches("/alerts/").count(), MAX_LINKS);
        assert!(c.html.contains("and 70 more"));
    }
}
