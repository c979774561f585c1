//! Outgoing email over SMTP (lettre), through a durable outbox.
//!
//! Every email is written to the `mail_outbox` table, in the same transaction
//! as whatever decided to send it, before any attempt to send it. A sender
//! claims a due row for a short lease, sends it, and marks it sent only when
//! the server accepted it; a failure is logged, kept on the row
//! (`last_error`, `attempts`) and retried with exponential backoff until it
//! goes. Nothing is dropped: `tutela-collector summary --status` lists what
//! is waiting and why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::{CollectorConfig, Mail, MailSecurity};
use crate::store::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    message BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (sent_ms, next_attempt_ms);
CREATE TABLE IF NOT EXISTS mail_cursor (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// How long a sender owns a claimed row before another may try it.
const LEASE_MS: i64 = 5 * 60_000;

/// Creates the outbox tables if they do not exist.
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("[mail] in collector.toml: {0}")]
    Config(String),
    #[error("cannot build the email: {0}")]
    Build(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The roles a recipient may hold.
pub const ROLES: [&str; 4] = ["dsl", "deputy-dsl", "head", "technician"];

/// A configured SMTP connection and sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    pub from: Mailbox,
    retry_initial_ms: i64,
    retry_max_ms: i64,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// The mailer `[mail]` describes, `None` when no SMTP host is set.
    pub fn from_config(mail: &Mail) -> Result<Option<Self>, MailError> {
        let host = mail.host.trim();
        if host.is_empty() {
            return Ok(None);
        }
        let from: Mailbox = mail.from.trim().parse().map_err(|e| {
            MailError::Config(format!(
                "`from = {:?}` is not an email address ({e}); set e.g. `from = \"Tutela <tutela@school.example>\"`",
                mail.from
            ))
        })?;
        for r in &mail.recipients {
            r.address.trim().parse::<Mailbox>().map_err(|e| {
                MailError::Config(format!(
                    "recipient {:?} is not an email address ({e})",
                    r.address
                ))
            })?;
            if let Some(bad) = r.roles.iter().find(|role| !ROLES.contains(&role.as_str())) {
                return Err(MailError::Config(format!(
                    "recipient {:?} has unknown role {bad:?}; use {}",
                    r.address,
                    ROLES.join(", ")
                )));
            }
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
        if mail.security == MailSecurity::None && !mail.username.is_empty() && !loopback {
            return Err(MailError::Config(format!(
                "refusing to send the SMTP password to {host} unencrypted; set security = \"starttls\" or \"tls\""
            )));
        }
        let tls = |implicit: bool| -> Result<Tls, MailError> {
            let err = |e: lettre::transport::smtp::Error| {
                MailError::Config(format!("cannot set up TLS for {host}: {e}"))
            };
            let mut params = TlsParameters::builder(host.to_owned());
            let ca_file = mail.ca_file.trim();
            if !ca_file.is_empty() {
                let pem = std::fs::read(ca_file).map_err(|e| {
                    MailError::Config(format!("cannot read ca_file {ca_file:?}: {e}"))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    MailError::Config(format!("ca_file {ca_file:?} holds no PEM certificate: {e}"))
                })?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(err)?;
            Ok(if implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            })
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let builder = match mail.security {
            MailSecurity::None => builder,
            MailSecurity::Starttls => builder.tls(tls(false)?),
            MailSecurity::Tls => builder.tls(tls(true)?),
        };
        let mut builder = builder
            .port(mail.port)
            .timeout(Some(Duration::from_secs(30)));
        let password = if !mail.password_file.trim().is_empty() {
            std::fs::read_to_string(mail.password_file.trim())
                .map_err(|e| {
                    MailError::Config(format!(
                        "cannot read password_file {:?}: {e}",
                        mail.password_file
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            mail.password.clone()
        };
        if !mail.username.is_empty() {
            builder = builder.credentials(Credentials::new(mail.username.clone(), password));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            retry_initial_ms: mail.retry_initial_secs.max(1) as i64 * 1000,
            retry_max_ms: mail.retry_max_secs.max(1) as i64 * 1000,
        }))
    }

    /// The wait before attempt number `attempts + 1`, after `attempts` failures.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        let factor = 1i64 << attempts.clamp(1, 30).saturating_sub(1);
        self.retry_initial_ms
            .saturating_mul(factor)
            .min(self.retry_max_ms)
    }
}

/// The addresses holding any of `roles`, each once.
pub fn recipients_with(mail: &Mail, roles: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &mail.recipients {
        if r.roles.iter().any(|role| roles.contains(&role.as_str())) {
            let address = r.address.trim().to_owned();
            if !out.contains(&address) {
                out.push(address);
            }
        }
    }
    out
}

/// The console's base URL for links, without a trailing slash.
pub fn console_url(config: &CollectorConfig) -> String {
    let url = config.mail.console_url.trim().trim_end_matches('/');
    if !url.is_empty() {
        return url.to_owned();
    }
    let mut addr = config.console.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    format!(
        "{}://{addr}",
        if config.console.tls { "https" } else { "http" }
    )
}

/// An image shown inside the HTML part, referred to as `cid:<cid>`.
#[derive(Debug, Clone)]
pub struct InlineImage {
    pub cid: String,
    pub png: Vec<u8>,
}

/// One email before it is addressed.
#[derive(Debug, Clone)]
pub struct Content {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub images: Vec<InlineImage>,
}

/// Builds the MIME message: multipart/alternative of text/plain and the HTML
/// (multipart/related with its inline images when there are any).
pub fn build(from: &Mailbox, to: &str, content: &Content) -> Result<Message, MailError> {
    let to: Mailbox = to
        .trim()
        .parse()
        .map_err(|e| MailError::Build(format!("recipient {to:?}: {e}")))?;
    let html = SinglePart::html(content.html.clone());
    let alternative = MultiPart::alternative().singlepart(SinglePart::plain(content.text.clone()));
    let alternative = if content.images.is_empty() {
        alternative.singlepart(html)
    } else {
        let mut related = MultiPart::related().singlepart(html);
        for image in &content.images {
            related = related.singlepart(Attachment::new_inline(image.cid.clone()).body(
                image.png.clone(),
                ContentType::parse("image/png").expect("valid"),
            ));
        }
        alternative.multipart(related)
    };
    // A Message-ID in the sender's domain (mail servers and filters expect one).
    let message_id = format!(
        "<{}@{}>",
        crate::store::random_id("tutela."),
        from.email.domain()
    );
    Message::builder()
        .message_id(Some(message_id))
        .from(from.clone())
        .to(to)
        .subject(content.subject.clone())
        .multipart(alternative)
        .map_err(|e| MailError::Build(e.to_string()))
}

/// Writes `message` to the outbox (in the caller's transaction); returns its id.
pub fn enqueue(
    conn: &Connection,
    kind: &str,
    to: &str,
    subject: &str,
    message: &Message,
) -> Result<i64, MailError> {
    let envelope = message.envelope();
    let from = envelope
        .from()
        .map(|a| a.to_string())
        .ok_or_else(|| MailError::Build("no sender".into()))?;
    let now = now_ms();
    conn.execute(
        "INSERT INTO mail_outbox (kind, recipient, subject, envelope_from, message, created_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![kind, to, subject, from, message.formatted(), now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One row of the outbox, for `summary --status`.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub created_ms: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: String,
}

/// The newest `limit` outbox rows, unsent first.
pub fn outbox(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<OutboxRow>> {
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT id, kind, recipient, subject, created_ms, attempts, next_attempt_ms, sent_ms, last_error
         FROM mail_outbox ORDER BY sent_ms IS NOT NULL, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            recipient: r.get(2)?,
            subject: r.get(3)?,
            created_ms: r.get(4)?,
            attempts: r.get(5)?,
            next_attempt_ms: r.get(6)?,
            sent_ms: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// A shared connection for the background tasks.
pub type Db = Arc<Mutex<Connection>>;

/// Runs `f` on a blocking thread with the connection.
pub async fn with_db<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&mut Connection) -> T + Send + 'static,
) -> T {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    })
    .await
    .expect("database task does not panic")
}

/// A claimed outbox row: id, recipient, envelope sender, message bytes, attempts so far.
type Claimed = (i64, String, String, Vec<u8>, i64);

/// Claims the next due row for a lease: (id, recipient, from, message, attempts).
/// Only rows due at `cutoff` are claimed, so a pass never retries a row it
/// has just failed, however long the attempt took.
fn claim_due(conn: &Connection, cutoff: i64) -> rusqlite::Result<Option<Claimed>> {
    let now = now_ms();
    loop {
        let row = conn
            .query_row(
                "SELECT id, recipient, envelope_from, message, attempts FROM mail_outbox
                 WHERE sent_ms IS NULL AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT 1",
                [cutoff],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let claimed = conn.execute(
            "UPDATE mail_outbox SET next_attempt_ms = ?2 WHERE id = ?1 AND sent_ms IS NULL AND next_attempt_ms <= ?3",
            params![row.0, now + LEASE_MS, cutoff],
        )?;
        if claimed == 1 {
            return Ok(Some(row));
        }
    }
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
}

/// Sends every due email once; failures are rescheduled with backoff.
pub async fn deliver_due(db: &Db, mailer: &Mailer) -> Result<Delivered, MailError> {
    let mut done = Delivered::default();
    let cutoff = now_ms();
    loop {
        let Some((id, to, from, message, attempts)) =
            with_db(db, move |c| claim_due(c, cutoff)).await?
        else {
            return Ok(done);
        };
        let envelope = match (from.parse(), to.parse::<Mailbox>()) {
            (Ok(from), Ok(to)) => Envelope::new(Some(from), vec![to.email])
                .map_err(|e| MailError::Build(e.to_string())),
            _ => Err(MailError::Build(format!("bad address {from:?} or {to:?}"))),
        };
        let result = match envelope {
            Ok(envelope) => mailer
                .transport
                .send_raw(&envelope, &message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let attempts = attempts + 1;
        match result {
            Ok(()) => {
                with_db(db, move |c| {
                    c.execute(
                        "UPDATE mail_outbox SET sent_ms = ?2, attempts = ?3, last_error = '' WHERE id = ?1",
                        params![id, now_ms(), attempts],
                    )
                })
                .await?;
                tracing::info!(id, recipient = %to, attempts, "email sent");
                done.sent += 1;
            }
            Err(error) => {
                let wait = mailer.backoff_ms(attempts);
                tracing::warn!(id, recipient = %to, attempts, retry_in_secs = wait / 1000, %error, "email not sent; will retry");
                with_db(db, move |c| {
                    c.execute(
                        "UPDATE mail_outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
                        params![id, attempts, now_ms() + wait, error],
                    )
                })
                .await?;
                done.failed += 1;
            }
        }
    }
}

/// Sends due emails until the process ends, checking every second.
pub async fn run_outbox(db: Db, mailer: Arc<Mailer>, wake: Arc<tokio::sync::Notify>) {
    loop {
        if let Err(e) = deliver_due(&db, &mailer).await {
            tracing::error!(error = %e, "the mail outbox could not be read");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Starts the outbox sender, the weekly summary and the urgent notifier
/// when `[mail]` is configured; logs once and does nothing otherwise.
pub fn start(dir: &std::path::Path, config: &CollectorConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let mailer = match Mailer::from_config(&config.mail) {
        Ok(Some(m)) => Arc::new(m),
        Ok(None) => {
            tracing::info!(
                "mail is not configured ([mail] host is empty): no weekly summary or urgent emails"
            );
            return Vec::new();
        }
        Err(e) => {
            tracing::error!(error = %e, "mail is misconfigured: no weekly summary or urgent emails");
            return Vec::new();
        }
    };
    let open = || -> anyhow::Result<Db> {
        let conn = crate::store::open(dir)?;
        ensure_schema(&conn)?;
        crate::console::schema::create(&conn)?;
        crate::publish::ensure_schema(&conn)?;
        crate::summary::ensure_schema(&conn)?;
        Ok(Arc::new(Mutex::new(conn)))
    };
    let (outbox_db, task_db) = match (open(), open()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot open the database for mail");
            return Vec::new();
        }
    };
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut tasks = vec![tokio::spawn(run_outbox(
        outbox_db,
        mailer.clone(),
        wake.clone(),
    ))];
    tasks.push(tokio::spawn(crate::urgent::run(
        task_db.clone(),
        config.clone(),
        mailer.from.clone(),
        wake.clone(),
    )));
    if config.summary.enabled {
        tasks.push(tokio::spawn(crate::summary::run(
            task_db,
            config.clone(),
            mailer.from.clone(),
            wake,
        )));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Recipient;

    fn mail() -> Mail {
        Mail {
            host: "127.0.0.1".into(),
            security: MailSecurity::None,
            from: "Tutela <tutela@school.test>".into(),
            recipients: vec![
                Recipient {
                    address: "dsl@school.test".into(),
                    roles: vec!["dsl".into()],
                },
                Recipient {
                    address: "Head <head@school.test>".into(),
                    roles: vec!["head".into(), "deputy-dsl".into()],
                },
            ],
            ..Mail::default()
        }
    }

    #[test]
    fn configuration_is_checked_and_backoff_doubles_to_the_cap() {
        assert!(Mailer::from_config(&Mail::default()).unwrap().is_none());
        let m = Mailer::from_config(&mail()).unwrap().unwrap();
        let waits: Vec<i64> = (1..=9).map(|n| m.backoff_ms(n) / 1000).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let mut bad = mail();
        bad.recipients[0].roles = vec!["governor".into()];
        let err = Mailer::from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("unknown role \"governor\""), "{err}");
        let mut plain = mail();
        plain.host = "smtp.school.example".into();
        plain.username = "tutela".into();
        let err = Mailer::from_config(&plain).unwrap_err().to_string();
        assert!(err.contains("unencrypted"), "{err}");
        let mut bad = mail();
        bad.from = "not an address".into();
        assert!(Mailer::from_config(&bad).is_err());
        assert_eq!(
            recipients_with(&mail(), &["dsl", "deputy-dsl"]),
            ["dsl@school.test", "Head <head@school.test>"]
        );
        assert_eq!(
            recipients_with(&mail(), &["technician"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn outbox_rows_are_claimed_once() {
        let conn = Connection::open_in_memory().unwrap();
        ensure_schema(&conn).unwrap();
        let from: Mailbox = "tutela@school.test".parse().unwrap();
        let content = Content {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            images: Vec::new(),
        };
        let message = build(&from, "dsl@school.test", &content).unwrap();
        enqueue(&conn, "urgent", "dsl@school.test", "s", &message).unwrap();
        assert!(
            claim_due(&conn, 0).unwrap().is_none(),
            "not due before it was queued"
        );
        let claimed = claim_due(&conn, now_ms()).unwrap().expect("a due row");
        assert_eq!(claimed.1, "dsl@school.test");
        assert!(
            claim_due(&conn, now_ms()).unwrap().is_none(),
            "leased to the first sender"
        );
    }
}
