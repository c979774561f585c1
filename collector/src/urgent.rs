//! Urgent notifications: alerts of severity 4 and 5 are emailed within a
//! minute of arriving, batched per interval into one email per recipient.
//! The email carries links into the console only: no captures, no typed
//! text, no names. Alerts about staff go to `head` recipients; all others to
//! `dsl` and `deputy-dsl` recipients.
//!
//! A cursor per audience (the highest alert id already notified) is advanced
//! in the same transaction that writes the emails to the outbox, so each
//! alert is queued once, including across restarts. An audience with no
//! recipient keeps its cursor: its alerts are notified once one is added.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::config::CollectorConfig;
use crate::console::auth::{Role, Viewer};
use crate::console::tz::Zone;
use crate::mail::{self, Content, Db, MailError};
use crate::store::now_ms;

/// The lowest severity that is urgent.
pub const URGENT_SEVERITY: i64 = 4;
/// Cursors: pupils' alerts (the DSLs) and staff alerts (the head).
const CURSOR: &str = "urgent_alert_id";
const STAFF_CURSOR: &str = "urgent_staff_alert_id";
/// The most alerts linked in one email; the rest are counted.
pub const MAX_LINKS: usize = 50;

/// A viewer with `role`, for reusing the console's staff scoping.
pub(crate) fn role_viewer(role: Role) -> Viewer {
    Viewer {
        name: "mail".into(),
        role,
        csrf: String::new(),
        session_hash: Vec::new(),
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

/// Sets the cursor, the first time, to the newest alert received before
/// `started_ms`: alerts from before mail was set up are not notified.
/// (A database from before the staff cursor starts it at the pupils' one.)
pub fn init_cursor(conn: &Connection, started_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO mail_cursor (name, value)
         SELECT ?1, COALESCE((SELECT value FROM mail_cursor WHERE name = ?2),
                             (SELECT MAX(id) FROM alerts WHERE received_ms < ?3), 0)",
        rusqlite::params![STAFF_CURSOR, CURSOR, started_ms],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO mail_cursor (name, value)
         SELECT ?1, COALESCE(MAX(id), 0) FROM alerts WHERE received_ms < ?2",
        rusqlite::params![CURSOR, started_ms],
    )?;
    Ok(())
}

fn cursor(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT value FROM mail_cursor WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
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
    let zone = Zone::parse(&config.console.time_zone).unwrap_or(Zone::Fixed(0));
    let base = mail::console_url(config);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (pupil_cursor, staff_cursor) = (cursor(&tx, CURSOR)?, cursor(&tx, STAFF_CURSOR)?);
    let newest: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |r| r.get(0))?;
    let since = pupil_cursor.min(staff_cursor);
    if newest <= since {
        return Ok(Queued::default());
    }
    let (staff, mut values) = staff_condition(&tx, &config.console.staff_pattern)?;
    values.push(Value::Integer(since));
    values.push(Value::Integer(newest));
    values.push(Value::Integer(URGENT_SEVERITY));
    let sql = format!(
        "SELECT a.id, a.time_ms, a.severity, ({staff}) FROM alerts a
         WHERE a.id > ? AND a.id <= ? AND a.severity >= ? AND a.state <> 'folded'
         ORDER BY a.severity DESC, a.id"
    );
    let mut pupils = Vec::new();
    let mut staff_alerts = Vec::new();
    {
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(values), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (id, time, severity, is_staff) = row?;
            if is_staff && id > staff_cursor {
                staff_alerts.push((id, time, severity));
            } else if !is_staff && id > pupil_cursor {
                pupils.push((id, time, severity));
            }
        }
    }
    let mut queued = Queued::default();
    for (alerts, roles, audience, name) in [
        (&pupils, &["dsl", "deputy-dsl"][..], "pupils", CURSOR),
        (&staff_alerts, &["head"][..], "staff", STAFF_CURSOR),
    ] {
        if !alerts.is_empty() {
            let recipients = mail::recipients_with(&config.mail, roles);
            if recipients.is_empty() {
                // The cursor stays: these alerts are notified once a recipient is added.
                tracing::warn!(
                    audience,
                    alerts = alerts.len(),
                    roles = roles.join(","),
                    "urgent alerts have no email recipient; add one to [mail] recipients"
                );
                continue;
            }
            let content = render(alerts, &base, zone);
            for to in &recipients {
                let message = mail::build(from, to, &content)?;
                mail::enqueue(&tx, "urgent", to, &content.subject, &message)?;
                queued.emails += 1;
            }
            queued.alerts += alerts.len();
        }
        tx.execute(
            "INSERT INTO mail_cursor (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = ?2",
            rusqlite::params![name, newest],
        )?;
    }
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
fn render(alerts: &[(i64, i64, i64)], base: &str, zone: Zone) -> Content {
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
    let mut items = String::new();
    for &(id, time, severity) in alerts.iter().take(MAX_LINKS) {
        let link = format!("{base}/alerts/{id}");
        text.push_str(&format!(
            "- severity {severity}, {}: {link}\n",
            zone.format(time)
        ));
        items.push_str(&format!(
            r#"<li>Severity <b>{severity}</b>, {}: <a href="{link}">alert {id}</a></li>"#,
            zone.format(time),
            link = crate::console::html::esc(&link)
        ));
    }
    let more = n.saturating_sub(MAX_LINKS);
    if more > 0 {
        text.push_str(&format!(
            "- and {more} more: see the review queue at {base}/\n"
        ));
        items.push_str(&format!(
            r#"<li>and {more} more: see the <a href="{}/">review queue</a></li>"#,
            crate::console::html::esc(base)
        ));
    }
    text.push_str("\nThis email holds links only; sign in to see the details.\n");
    let html = format!(
        r#"<!doctype html><html><body style="font-family:sans-serif"><p>{n} alert{} of severity 4 or 5 arrived. Review in the Tutela console:</p><ul>{items}</ul><p style="color:#555">This email holds links only; sign in to see the details.</p></body></html>"#,
        if n == 1 { "" } else { "s" }
    );
    Content {
        subject,
        text,
        html,
        images: Vec::new(),
    }
}

/// Queues urgent notifications every `urgent_interval_secs` until the process ends.
pub async fn run(db: Db, config: CollectorConfig, from: Mailbox, wake: Arc<tokio::sync::Notify>) {
    let started = now_ms();
    if let Err(e) = mail::with_db(&db, move |c| init_cursor(c, started)).await {
        tracing::error!(error = %e, "urgent notifications cannot start");
        return;
    }
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

    #[test]
    fn a_large_batch_links_fifty_alerts_and_counts_the_rest() {
        let alerts: Vec<(i64, i64, i64)> = (1..=120).map(|id| (id, 0, 5)).collect();
        let c = render(&alerts, "https://c.test", Zone::Fixed(0));
        assert_eq!(c.subject, "Tutela: 120 urgent alerts to review");
        assert_eq!(c.text.matches("https://c.test/alerts/").count(), MAX_LINKS);
        assert!(c
            .text
            .contains("- and 70 more: see the review queue at https://c.test/"));
        assert_eq!(c.html.matches("/alerts/").count(), MAX_LINKS);
        assert!(c.html.contains("and 70 more"));
    }
}
