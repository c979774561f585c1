//! Sending from the outbox: every collector sharing the store sends, each
//! claiming its own rows; the urgent scan and the weekly summary run under
//! their leases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::message::Mailbox;

use super::{MailError, Mailer, Step, LEASE_MS, SEND_TIMEOUT};
use crate::config::CollectorConfig;
use crate::store::lease::Lease;
use crate::store::mail::EmailOutcome;
use crate::store::{now_ms, Jobs, Location};

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    /// Not sent this time; retried later.
    pub failed: usize,
    /// Recipients refused for good by the server; not retried.
    pub rejected: usize,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// This email failed (a 4xx reply for this recipient or message): retry it later.
    Retry(String),
    /// The recipient was refused for good (a 5xx reply to RCPT TO, a 5.1.x
    /// address status, or an unusable address): never retried.
    Permanent(String),
    /// The server refused this message for a reason that is not its
    /// address (e.g. 554 at the end of DATA): a server or configuration
    /// problem, logged as an error and retried with backoff.
    Refused(String),
    /// No usable connection (network, TLS, timeout, login refused, server
    /// closing) or a refusal of the sender or session (e.g. 553 to MAIL
    /// FROM): the rest of the pass would fail the same way. `refused` marks
    /// a 5xx reply, logged as an error.
    Connection {
        error: String,
        refused: bool,
    },
}

/// The enhanced status code (RFC 3463) at the start of the server's reply
/// text, as (class, subject, detail).
fn enhanced_status(text: &str) -> Option<(u16, u16, u16)> {
    let reply = text.split_once("): ").map_or(text, |(_, reply)| reply);
    let first = reply.split_whitespace().next()?;
    let mut parts = first.split('.').map(|p| p.parse::<u16>().ok());
    let status = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && matches!(status.0, 2 | 4 | 5)).then_some(status)
}

fn classify(step: Step, error: &lettre::transport::smtp::Error) -> Outcome {
    let code = error.status().map(u16::from);
    let text = error.to_string();
    let status = enhanced_status(&text);
    let connection = |refused| Outcome::Connection {
        error: text.clone(),
        refused,
    };
    match code {
        None => connection(false),
        // 421: closing; 530-539: authentication; fixing the password lets every email go.
        Some(421) | Some(530..=539) => connection(error.is_permanent()),
        Some(_) if !error.is_permanent() => match step {
            Step::Recipient | Step::Message => Outcome::Retry(text),
            Step::Session | Step::Sender => connection(false),
        },
        Some(_) => match step {
            // An address status (5.1.x) is about this recipient, whatever
            // the text says (Postfix: "5.1.1 ... unknown in relay recipient
            // table").
            Step::Recipient if matches!(status, Some((5, 1, _))) => Outcome::Permanent(text),
            // A relay or policy refusal (5.7.x) at RCPT TO is about the
            // sender or the login, not the address: this email is retried
            // (logged as an error); the other emails of the pass still go.
            Step::Recipient
                if matches!(status, Some((5, 7, _)))
                    || text.to_ascii_lowercase().contains("relay") =>
            {
                Outcome::Refused(text)
            }
            Step::Recipient => Outcome::Permanent(text),
            // An address status for the destination (5.1.1 bad mailbox,
            // 5.1.2 bad domain, 5.1.3 bad syntax, 5.1.6 moved, 5.1.10 null MX).
            Step::Message if matches!(status, Some((5, 1, 1 | 2 | 3 | 6 | 10))) => {
                Outcome::Permanent(text)
            }
            Step::Message => Outcome::Refused(text),
            Step::Session | Step::Sender => connection(true),
        },
    }
}

/// Sends every due email once. A failure is rescheduled with backoff; a
/// connection-level failure reschedules the rest of the pass too (instead
/// of waiting out a timeout per email); a permanent refusal marks the email
/// failed without touching the others. Stops between emails once `stop` is set.
pub async fn deliver_due(
    jobs: &Jobs,
    mailer: &Mailer,
    stop: &AtomicBool,
) -> Result<Delivered, MailError> {
    let mut done = Delivered::default();
    let cutoff = now_ms();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(done);
        }
        let Some(claimed) = jobs.claim_email(cutoff, LEASE_MS).await? else {
            return Ok(done);
        };
        let (id, to, from) = (claimed.id, claimed.recipient, claimed.envelope_from);
        let envelope = match (from.parse::<Address>(), to.parse::<Mailbox>()) {
            (Ok(from), Ok(to)) => Envelope::new(Some(from.clone()), vec![to.email.clone()])
                .map(|_| (from, to.email))
                .map_err(|e| e.to_string()),
            _ => Err(format!("bad address {from:?} or {to:?}")),
        };
        let outcome = match envelope {
            Ok((from, to)) => {
                match tokio::time::timeout(
                    SEND_TIMEOUT,
                    mailer.send(Some(from), to, &claimed.message),
                )
                .await
                {
                    Ok(Ok(())) => Outcome::Sent,
                    Ok(Err((step, e))) => classify(step, &e),
                    Err(_) => Outcome::Connection {
                        error: format!(
                            "the mail server did not finish within {} s",
                            SEND_TIMEOUT.as_secs()
                        ),
                        refused: false,
                    },
                }
            }
            Err(e) => Outcome::Permanent(e),
        };
        let attempts = claimed.attempts + 1;
        match outcome {
            Outcome::Sent => {
                jobs.email_attempted(id, attempts, EmailOutcome::Sent)
                    .await?;
                tracing::info!(id, recipient = %to, attempts, "email sent");
                done.sent += 1;
            }
            Outcome::Permanent(error) => {
                tracing::error!(id, recipient = %to, attempts, %error, "recipient refused for good by the mail server; not retried (check the address, then `tutela-collector summary --retry-failed`; see `summary --status`)");
                jobs.email_attempted(id, attempts, EmailOutcome::Refused(error))
                    .await?;
                done.rejected += 1;
            }
            Outcome::Retry(error) | Outcome::Refused(error) => {
                let wait = mailer.backoff_ms(attempts);
                if error.starts_with("permanent") {
                    tracing::error!(id, recipient = %to, attempts, retry_in_secs = wait / 1000, %error, "the mail server refused this email (not its address): check the server's reply and the mail server's rules; will retry");
                } else {
                    tracing::warn!(id, recipient = %to, attempts, retry_in_secs = wait / 1000, %error, "email not sent; will retry");
                }
                let next_ms = now_ms() + wait;
                jobs.email_attempted(id, attempts, EmailOutcome::Retry { next_ms, error })
                    .await?;
                done.failed += 1;
            }
            Outcome::Connection { error, refused } => {
                let wait = mailer.backoff_ms(attempts);
                if refused {
                    tracing::error!(id, recipient = %to, attempts, retry_in_secs = wait / 1000, %error, "the mail server refused the session or the sender ([mail] from, username or the server's relay rules): no email can go until this is fixed; will retry");
                } else {
                    tracing::warn!(id, recipient = %to, attempts, retry_in_secs = wait / 1000, %error, connection = true, "email not sent; will retry");
                }
                let next_ms = now_ms() + wait;
                jobs.email_attempted(
                    id,
                    attempts,
                    EmailOutcome::Retry {
                        next_ms,
                        error: error.clone(),
                    },
                )
                .await?;
                // The rest of this pass: not tried now, tried with this one.
                let later = jobs.defer_due_emails(cutoff, next_ms, error).await?;
                done.failed += 1 + later;
                return Ok(done);
            }
        }
    }
}

/// How long sent (and refused) emails stay in the outbox, for `--status`.
pub const KEEP_SENT_MS: i64 = 90 * 86_400_000;

/// Sends due emails until `stop` is set, checking every second. On stop,
/// an email being sent is finished (and recorded) first. Every collector
/// sharing a store sends: each claims its own rows.
pub async fn run_outbox(
    jobs: Jobs,
    mailer: Arc<Mailer>,
    wake: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
) {
    let mut pruned: Option<tokio::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(86_400)) {
            pruned = Some(tokio::time::Instant::now());
            match jobs.prune_sent_emails(now_ms() - KEEP_SENT_MS).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "old sent emails removed from the outbox"),
                Err(e) => tracing::error!(error = %e, "old sent emails could not be removed"),
            }
        }
        if let Err(e) = deliver_due(&jobs, &mailer, &stop).await {
            tracing::error!(error = %e, "the mail outbox could not be read");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wake.notified() => {}
        }
    }
}

/// The running mail tasks.
#[derive(Debug, Default)]
pub struct MailTasks {
    outbox: Option<tokio::task::JoinHandle<()>>,
    others: Vec<tokio::task::JoinHandle<()>>,
    leases: Vec<Lease>,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

impl MailTasks {
    /// Stops queuing at once, gives up the leases (another collector may
    /// take the work over at once), and lets an email being sent finish
    /// (up to `wait`) so that it is recorded as sent; an email still being
    /// sent after that is sent again on the next start (same Message-ID).
    pub async fn shutdown(self, wait: Duration) {
        for task in &self.others {
            task.abort();
        }
        for lease in self.leases {
            lease.release().await;
        }
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        if let Some(outbox) = self.outbox {
            let abort = outbox.abort_handle();
            if tokio::time::timeout(wait, outbox).await.is_err() {
                tracing::warn!(
                    wait_secs = wait.as_secs(),
                    "an email was still being sent at shutdown; it is sent again on the next start"
                );
                abort.abort();
            }
        }
    }
}

/// The lease under which the urgent-mail scan runs on a shared store.
pub const URGENT_LEASE: &str = "urgent-mail";
/// The lease under which the weekly summary is queued on a shared store.
pub const SUMMARY_LEASE: &str = "weekly-summary";

/// Starts the outbox sender, the weekly summary and the urgent notifier
/// when `[mail]` is configured; logs once and does nothing otherwise. Fails
/// (and `serve` refuses to start, saying what to fix) when mail is on but
/// cannot work: a wrong configuration, a store that cannot be opened or
/// written, or a summary schedule that cannot be built. Running on without
/// urgent notifications would leave the school unaware of them.
///
/// On a store several collectors share, every collector sends from the
/// outbox; the urgent scan and the weekly summary run on the collector
/// holding their lease (`[storage] lease_secs`).
pub async fn start(location: &Location, config: &CollectorConfig) -> Result<MailTasks, MailError> {
    let Some(mailer) = Mailer::from_config(&config.mail)? else {
        tracing::info!(
            "mail is not configured ([mail] host is empty): no weekly summary or urgent emails"
        );
        return Ok(MailTasks::default());
    };
    let mailer = Arc::new(mailer);
    let schedule = if config.summary.enabled {
        Some(crate::summary::schedule(config).map_err(|e| MailError::Settings(e.to_string()))?)
    } else {
        None
    };
    let open = || async {
        Jobs::open(location).await.map_err(|e| {
            let at = match location {
                Location::Sqlite(dir) => {
                    format!("the database {}", dir.join(crate::store::DB_FILE).display())
                }
                #[cfg(feature = "postgres")]
                Location::Postgres(_) => "the PostgreSQL store".to_owned(),
            };
            MailError::Start(format!(
                "{at} cannot be opened or updated ({e}); check that the data directory is writable by the collector's user and the disk is not full, or that PostgreSQL runs"
            ))
        })
    };
    let (outbox_jobs, task_jobs) = (open().await?, open().await?);
    task_jobs.init_urgent(now_ms()).await.map_err(|e| {
        MailError::Start(format!(
            "the urgent notification cursor cannot be set ({e}); check that the database is writable"
        ))
    })?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let outbox = tokio::spawn(run_outbox(
        outbox_jobs,
        mailer.clone(),
        wake.clone(),
        stop.clone(),
    ));
    let ttl = Duration::from_secs(config.storage.lease_secs.max(1));
    let holder = crate::store::lease::holder_id();
    let urgent_lease = Lease::keep(&task_jobs, URGENT_LEASE, &holder, ttl);
    let mut others = vec![tokio::spawn(crate::urgent::run(
        task_jobs.clone(),
        config.clone(),
        mailer.from.clone(),
        wake.clone(),
        urgent_lease.held_handle(),
    ))];
    let mut leases = vec![urgent_lease];
    if let Some(schedule) = schedule {
        let summary_lease = Lease::keep(&task_jobs, SUMMARY_LEASE, &holder, ttl);
        others.push(tokio::spawn(crate::summary::run(
            task_jobs,
            config.clone(),
            schedule,
            mailer.from.clone(),
            wake.clone(),
            summary_lease.held_handle(),
        )));
        leases.push(summary_lease);
    }
    Ok(MailTasks {
        outbox: Some(outbox),
        others,
        leases,
        stop,
        wake,
    })
}

#[cfg(test)]
mod tests {
    use lettre::Message;
    use rusqlite::Connection;

    use super::super::{build, ensure_schema, outgoing, Content};
    use super::*;
    use crate::store::sqlite::mail::{prune_sent, SCHEMA};

    fn enqueue(
        conn: &Connection,
        kind: &str,
        to: &str,
        subject: &str,
        message: &Message,
    ) -> rusqlite::Result<i64> {
        crate::store::sqlite::mail::enqueue(conn, &outgoing(kind, to, subject, message).unwrap())
    }

    fn claim_due(
        conn: &Connection,
        cutoff: i64,
    ) -> rusqlite::Result<Option<crate::store::mail::ClaimedEmail>> {
        crate::store::sqlite::mail::claim_due(conn, cutoff, LEASE_MS)
    }

    #[test]
    fn enhanced_status_codes_are_read_from_the_reply() {
        assert_eq!(
            enhanced_status("permanent error (550): 5.1.1 <a@b>: mailbox unavailable"),
            Some((5, 1, 1))
        );
        assert_eq!(
            enhanced_status("permanent error (553): 5.7.1 Sender address rejected"),
            Some((5, 7, 1))
        );
        assert_eq!(
            enhanced_status("permanent error (554): Access denied"),
            None
        );
        assert_eq!(enhanced_status("network error: reset"), None);
    }
    /// A small email to the DSL, for outbox tests.
    fn test_message() -> Message {
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        let content = Content {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            images: Vec::new(),
        };
        build(&from, "dsl@school.test", &content).unwrap()
    }

    #[test]
    fn outbox_rows_are_claimed_once() {
        let conn = Connection::open_in_memory().unwrap();
        ensure_schema(&conn).unwrap();
        let message = test_message();
        enqueue(&conn, "urgent", "dsl@school.test", "s", &message).unwrap();
        assert!(
            claim_due(&conn, 0).unwrap().is_none(),
            "not due before it was queued"
        );
        let claimed = claim_due(&conn, now_ms()).unwrap().expect("a due row");
        assert_eq!(claimed.recipient, "dsl@school.test");
        assert!(
            claim_due(&conn, now_ms()).unwrap().is_none(),
            "leased to the first sender"
        );
    }

    #[test]
    fn urgent_emails_are_claimed_first_and_old_sent_ones_are_pruned() {
        let conn = Connection::open_in_memory().unwrap();
        ensure_schema(&conn).unwrap();
        // An outbox from before `failed_ms`: the column is added.
        let old = Connection::open_in_memory().unwrap();
        old.execute_batch(&SCHEMA.replace("failed_ms INTEGER", "unused INTEGER"))
            .unwrap();
        ensure_schema(&old).unwrap();
        old.prepare("SELECT failed_ms FROM mail_outbox").unwrap();

        let message = test_message();
        let summary = enqueue(&conn, "summary", "dsl@school.test", "s", &message).unwrap();
        let refused = enqueue(&conn, "urgent", "gone@school.test", "u", &message).unwrap();
        let urgent = enqueue(&conn, "urgent", "dsl@school.test", "u", &message).unwrap();
        conn.execute(
            "UPDATE mail_outbox SET failed_ms = 1 WHERE id = ?1",
            [refused],
        )
        .unwrap();
        let cutoff = now_ms() + 1;
        assert_eq!(claim_due(&conn, cutoff).unwrap().unwrap().id, urgent);
        assert_eq!(claim_due(&conn, cutoff).unwrap().unwrap().id, summary);
        assert!(
            claim_due(&conn, cutoff).unwrap().is_none(),
            "refused: never retried"
        );

        conn.execute("UPDATE mail_outbox SET sent_ms = 5 WHERE id = ?1", [urgent])
            .unwrap();
        // Sent and refused rows before the cut go; the unsent summary stays.
        assert_eq!(prune_sent(&conn, 10).unwrap(), 2);
        let left: Vec<i64> = conn
            .prepare("SELECT id FROM mail_outbox")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, [summary]);
    }
}
