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
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::config::CollectorConfig;
use crate::console::auth::{Role, Viewer};
use crate::console::tz::Zone;
use crate::mail::{self, Content, Db, MailError};
use crate::store::now_ms;

/// The lowest severity that is urgent.
pub const URGENT_SEVERITY: i64 = 4;
/// Every urgent alert at or below this id has been notified (or predates mail).
const FLOOR: &str = "urgent_floor_id";
/// Cursors of earlier versions, one per audience: pupils' alerts (the DSLs)
/// and staff alerts (the head); turned into the floor and records once.
const CURSOR: &str = "urgent_alert_id";
const STAFF_CURSOR: &str = "urgent_staff_alert_id";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS urgent_notified (
    alert_id INTEGER PRIMARY KEY,
    audience TEXT NOT NULL,
    notified_ms INTEGER NOT NULL
);
";
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
    }
}

/// The SQL expression (on alias `a`) that is true for alerts about staff,
/// with its parameters.
pub(crate) fn staff_condition(
    conn: &Connection,
    pattern: &str,
) -> rusqlite::Result<(String, Vec<Value>)> {
    Ok(crate::console::staff::scope(
        conn,
        &role_viewer(Role::Head),
        &pattern.trim().to_lowercase(),
    )?
    .unwrap_or_else(|| ("0".to_owned(), Vec::new())))
}

/// Creates the table of notified alerts and sets the floor, the first
/// time, to the newest alert received before `started_ms`: alerts from
/// before mail was set up are not notified. (A database with the per-audience
/// cursors of an earlier version is converted by the first [`queue`].)
pub fn init_cursor(conn: &Connection, started_ms: i64) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if cursor(conn, CURSOR)?.is_none() {
        conn.execute(
            "INSERT OR IGNORE INTO mail_cursor (name, value)
             SELECT ?1, COALESCE(MAX(id), 0) FROM alerts WHERE received_ms < ?2",
            rusqlite::params![FLOOR, started_ms],
        )?;
    }
    Ok(())
}

fn cursor(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM mail_cursor WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
}

fn set_cursor(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO mail_cursor (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = ?2",
        rusqlite::params![name, value],
    )?;
    Ok(())
}

/// The urgent alerts above `floor` (up to `newest`) not yet notified:
/// (id, time, severity, about staff), most severe first.
fn pending(
    conn: &Connection,
    staff_pattern: &str,
    floor: i64,
    newest: i64,
) -> rusqlite::Result<Vec<(i64, i64, i64, bool)>> {
    let (staff, mut values) = staff_condition(conn, staff_pattern)?;
    values.push(Value::Integer(floor));
    values.push(Value::Integer(newest));
    values.push(Value::Integer(URGENT_SEVERITY));
    let sql = format!(
        "SELECT a.id, a.time_ms, a.severity, ({staff}) FROM alerts a
         WHERE a.id > ? AND a.id <= ? AND a.severity >= ? AND a.state <> 'folded'
           AND NOT EXISTS (SELECT 1 FROM urgent_notified n WHERE n.alert_id = a.id)
         ORDER BY a.severity DESC, a.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

/// Turns the per-audience cursors of an earlier version into the floor and
/// records: an alert at or below its audience's cursor counts as notified.
fn migrate_cursors(conn: &Connection, staff_pattern: &str) -> rusqlite::Result<()> {
    let (Some(pupils), staff) = (cursor(conn, CURSOR)?, cursor(conn, STAFF_CURSOR)?) else {
        return Ok(());
    };
    let staff = staff.unwrap_or(pupils);
    let (floor, top) = (pupils.min(staff), pupils.max(staff));
    let now = now_ms();
    for (id, _, _, is_staff) in pending(conn, staff_pattern, floor, top)? {
        let (done, audience) = if is_staff {
            (id <= staff, "staff")
        } else {
            (id <= pupils, "pupils")
        };
        if done {
            conn.execute(
                "INSERT OR IGNORE INTO urgent_notified (alert_id, audience, notified_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, audience, now],
            )?;
        }
    }
    set_cursor(conn, FLOOR, floor)?;
    conn.execute(
        "DELETE FROM mail_cursor WHERE name IN (?1, ?2)",
        [CURSOR, STAFF_CURSOR],
    )?;
    Ok(())
}

/// What one pass queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub alerts: usize,
    pub emails: usize,
}

/// Queues notifications for urgent alerts newer than the cursor.
pub fn queue(
    conn: &mut Connection,
    config: &CollectorConfig,
    from: &Mailbox,
) -> Result<Queued, MailError> {
    let zone = crate::summary::zone(config);
    let base = mail::console_url(config);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let pattern = &config.console.staff_pattern;
    migrate_cursors(&tx, pattern)?;
    let floor = cursor(&tx, FLOOR)?.unwrap_or(0);
    let newest: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |r| r.get(0))?;
    if newest <= floor {
        return Ok(Queued::default());
    }
    let mut pupils = Vec::new();
    let mut staff_alerts = Vec::new();
    for (id, time, severity, is_staff) in pending(&tx, pattern, floor, newest)? {
        if is_staff {
            staff_alerts.push((id, time, severity));
        } else {
            pupils.push((id, time, severity));
        }
    }
    let mut queued = Queued::default();
    // The lowest alert left waiting (its audience has no recipient).
    let mut waiting = i64::MAX;
    let now = now_ms();
    for (alerts, roles, audience) in [
        (&pupils, &["dsl", "deputy-dsl"][..], "pupils"),
        (&staff_alerts, &["head"][..], "staff"),
    ] {
        if alerts.is_empty() {
            continue;
        }
        let recipients = mail::recipients_with(&config.mail, roles);
        if recipients.is_empty() {
            // These alerts wait: they are notified once a recipient is added.
            tracing::warn!(
                audience,
                alerts = alerts.len(),
                roles = roles.join(","),
                "urgent alerts have no email recipient; add one to [mail] recipients"
            );
            waiting = waiting.min(alerts.iter().map(|a| a.0).min().unwrap_or(i64::MAX));
            continue;
        }
        let content = render(alerts, &base, &zone);
        for to in &recipients {
            let message = mail::build(from, to, &content)?;
            mail::enqueue(&tx, "urgent", to, &content.subject, &message)?;
            queued.emails += 1;
        }
        for &(id, _, _) in alerts.iter() {
            tx.execute(
                "INSERT INTO urgent_notified (alert_id, audience, notified_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, audience, now],
            )?;
        }
        queued.alerts += alerts.len();
    }
    // Every urgent alert below the lowest waiting one is notified: raise
    // the floor there and forget the records beneath it.
    let floor = newest.min(waiting.saturating_sub(1));
    set_cursor(&tx, FLOOR, floor)?;
    tx.execute("DELETE FROM urgent_notified WHERE alert_id <= ?1", [floor])?;
    tx.commit()?;
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
/// process ends. (`mail::start` sets the cursors first with [`init_cursor`],
/// so that a database that cannot be used stops the collector from starting.)
pub async fn run(db: Db, config: CollectorConfig, from: Mailbox, wake: Arc<tokio::sync::Notify>) {
    let every = Duration::from_secs(config.mail.urgent_interval_secs.max(1));
    let config = Arc::new(config);
    loop {
        tokio::time::sleep(every).await;
        let (c, f) = (config.clone(), from.clone());
        match mail::with_db(&db, move |conn| queue(conn, &c, &f)).await {
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
    use crate::summary::tests::{insert_alert, store};

    fn config(roles: &[&str]) -> CollectorConfig {
        let mut c = CollectorConfig::default();
        c.console.staff_pattern = "mr.*".into();
        c.mail.recipients = roles
            .iter()
            .map(|role| Recipient {
                address: format!("{role}@school.test"),
                roles: vec![(*role).into()],
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

    #[test]
    fn an_audience_without_recipients_keeps_its_alerts_until_one_is_added() {
        let (_dir, mut conn) = store();
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        init_cursor(&conn, 0).unwrap();
        insert_alert(&conn, "mr.smith", now_ms(), 5);
        insert_alert(&conn, "pupil.1", now_ms(), 4);
        insert_alert(&conn, "pupil.2", now_ms(), 2);
        // No head: the pupil's alert goes; the staff alert waits.
        let q = queue(&mut conn, &config(&["dsl"]), &from).unwrap();
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
            queue(&mut conn, &config(&["dsl"]), &from).unwrap().emails,
            0
        );
        // A head is added: the staff alert is sent, the pupil's is not sent again.
        let q = queue(&mut conn, &config(&["dsl", "head"]), &from).unwrap();
        assert_eq!(
            q,
            Queued {
                alerts: 1,
                emails: 1
            }
        );
        assert_eq!(outbox(&conn)[1].0, "head@school.test");
        assert_eq!(
            queue(&mut conn, &config(&["dsl", "head"]), &from).unwrap(),
            Queued::default()
        );
    }

    fn notified(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM urgent_notified", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_staff_list_change_neither_loses_an_alert_nor_sends_it_to_a_second_audience() {
        let (_dir, mut conn) = store();
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        init_cursor(&conn, 0).unwrap();
        let mut by_list = config(&["dsl"]);
        by_list.console.staff_pattern.clear();
        conn.execute_batch(
            "INSERT INTO console_staff (username, imported_ms) VALUES ('ms.jones', 0), ('ms.brown', 0)",
        )
        .unwrap();
        let jones = insert_alert(&conn, "ms.jones", now_ms(), 5);
        let pupil = insert_alert(&conn, "pupil.1", now_ms(), 4);
        // No head: the pupil's alert goes to the DSL, Ms Jones's waits.
        let q = queue(&mut conn, &by_list, &from).unwrap();
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
        let q = queue(&mut conn, &with_head, &from).unwrap();
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
            queue(&mut conn, &with_head, &from).unwrap(),
            Queued::default()
        );
        // Everything is notified: the floor passed both, no records remain.
        assert_eq!(notified(&conn), 0);
        assert_eq!(cursor(&conn, FLOOR).unwrap(), Some(pupil.max(jones)));
        // A new staff alert goes to the head only, once.
        insert_alert(&conn, "ms.brown", now_ms(), 4);
        let q = queue(&mut conn, &with_head, &from).unwrap();
        assert_eq!(q.emails, 1);
        assert_eq!(outbox(&conn)[2].0, "head@school.test");
        assert_eq!(
            queue(&mut conn, &with_head, &from).unwrap(),
            Queued::default()
        );
    }

    #[test]
    fn the_cursors_of_an_earlier_version_are_converted_without_resending() {
        let (_dir, mut conn) = store();
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
        init_cursor(&conn, now_ms() + 1).unwrap();
        let q = queue(&mut conn, &config(&["dsl", "head"]), &from).unwrap();
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
            queue(&mut conn, &config(&["dsl", "head"]), &from).unwrap(),
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
