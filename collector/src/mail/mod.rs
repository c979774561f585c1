//! Outgoing email over SMTP (lettre), through a durable outbox.
//!
//! Every email is written to the `mail_outbox` table, in the same transaction
//! as whatever decided to send it, before any attempt to send it. A sender
//! claims a due row for a short lease, sends it, and marks it sent only when
//! the server accepted it; a failure is logged, kept on the row
//! (`last_error`, `attempts`) and retried with exponential backoff until it
//! goes, except when the server refuses its recipient for good (a 5xx reply
//! to RCPT TO such as 550 "mailbox unavailable", or a 5.1.x address status
//! after the message): that email is marked failed, logged as an error and
//! shown by `tutela-collector summary --status`; the others are unaffected
//! (`summary --retry-failed` queues failed emails again). A 5xx anywhere
//! else (greeting, EHLO, STARTTLS, login, MAIL FROM such as 553 "sender
//! address rejected", a relay refusal (that email alone is retried), or the
//! end of DATA) is a problem with
//! the server or its configuration, not with one address: it is logged as
//! an error with the server's reply and retried with backoff, so urgent
//! notifications go out once it is fixed. `summary --status` lists what is
//! waiting and why. Urgent
//! notifications are sent before summaries, and when the server cannot be
//! reached at all the rest of the pass is rescheduled rather than tried one
//! by one.
//!
//! Delivery is at least once, not exactly once: if the collector stops
//! after the server accepted an email but before it was recorded as sent
//! (a crash, power loss, or the 2-minute lease running out during a very
//! slow send), the email is sent again, with the same Message-ID (mail
//! clients and servers that deduplicate by Message-ID show it once). On an
//! orderly shutdown an email being sent is finished and recorded first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Address;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail as MailCommand, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Message;
use rusqlite::Connection;

use crate::config::{CollectorConfig, Mail, MailSecurity};

/// How long a sender owns a claimed row before another may try it.
const LEASE_MS: i64 = 2 * 60_000;

mod outbox;

pub use crate::store::mail::{EmailOutcome, NewEmail, OutboxRow};
pub use crate::store::sqlite::mail::ensure_schema;
pub use outbox::{
    deliver_due, run_outbox, start, Delivered, MailTasks, KEEP_SENT_MS, SUMMARY_LEASE, URGENT_LEASE,
};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("[mail] in collector.toml: {0}")]
    Config(String),
    #[error("collector.toml: {0}")]
    Settings(String),
    #[error("cannot build the email: {0}")]
    Build(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start email (urgent notifications): {0}")]
    Start(String),
}

/// The roles a recipient may hold.
pub const ROLES: [&str; 4] = ["dsl", "deputy-dsl", "head", "technician"];

/// How the connection to the SMTP server is protected.
enum Transport {
    Plain,
    Starttls(TlsParameters),
    Implicit(TlsParameters),
}

/// The step of an SMTP session a reply answered: what a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Greeting, EHLO, STARTTLS, login.
    Session,
    /// MAIL FROM: the sender.
    Sender,
    /// RCPT TO: the one recipient.
    Recipient,
    /// DATA and the end of the message.
    Message,
}

/// How long connecting may take (lettre applies it to the TCP connect).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one email may take in all (TLS, login, commands, data): a
/// server that accepts the connection and then goes silent must not stall
/// the outbox, and the email must be done well within its lease.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
const _: () = assert!((SEND_TIMEOUT.as_millis() as i64) < LEASE_MS);

/// A configured SMTP connection and sender.
pub struct Mailer {
    host: String,
    port: u16,
    transport: Transport,
    credentials: Option<Credentials>,
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
            if !r.school.is_empty() && !crate::store::schools::valid_id(&r.school) {
                return Err(MailError::Config(format!(
                    "recipient {:?} names school {:?}, which is not a school id; use an id from `tutela-collector schools list`, or leave it out for the whole trust",
                    r.address, r.school
                )));
            }
            if let Some(bad) = r.roles.iter().find(|role| !ROLES.contains(&role.as_str())) {
                return Err(MailError::Config(format!(
                    "recipient {:?} has unknown role {bad:?}; use {}",
                    r.address,
                    ROLES.join(", ")
                )));
            }
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
        if mail.security == MailSecurity::None && !loopback {
            return Err(MailError::Config(format!(
                "security = \"none\" is only allowed for a mail relay on this machine (localhost); \
                 refusing to send urgent alerts and the SMTP password to {host} unencrypted; \
                 set security = \"starttls\" (port 587) or \"tls\" (port 465)"
            )));
        }
        let tls = || -> Result<TlsParameters, MailError> {
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
            params.build_rustls().map_err(err)
        };
        let transport = match mail.security {
            MailSecurity::None => Transport::Plain,
            MailSecurity::Starttls => Transport::Starttls(tls()?),
            MailSecurity::Tls => Transport::Implicit(tls()?),
        };
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
        let credentials =
            (!mail.username.is_empty()).then(|| Credentials::new(mail.username.clone(), password));
        Ok(Some(Self {
            host: host.to_owned(),
            port: mail.port,
            transport,
            credentials,
            from,
            retry_initial_ms: mail.retry_initial_secs.max(1) as i64 * 1000,
            retry_max_ms: mail.retry_max_secs.max(1) as i64 * 1000,
        }))
    }

    /// Sends one message to one recipient over a fresh connection. On
    /// failure, says which step of the session the server (or network) failed.
    async fn send(
        &self,
        from: Option<Address>,
        to: Address,
        message: &[u8],
    ) -> Result<(), (Step, lettre::transport::smtp::Error)> {
        let session = |e| (Step::Session, e);
        let hello = ClientId::default();
        let implicit = match &self.transport {
            Transport::Implicit(params) => Some(params.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(SMTP_TIMEOUT),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(session)?;
        // A failed STARTTLS leaves the connection without a stream: it is
        // dropped, never written to again (not even QUIT).
        if let Transport::Starttls(params) = &self.transport {
            conn.starttls(params.clone(), &hello)
                .await
                .map_err(session)?;
        }
        let result = async {
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials)
                    .await
                    .map_err(session)?;
            }
            let mut options = Vec::new();
            if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
                options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            conn.command(MailCommand::new(from, options))
                .await
                .map_err(|e| (Step::Sender, e))?;
            conn.command(Rcpt::new(to, Vec::new()))
                .await
                .map_err(|e| (Step::Recipient, e))?;
            conn.command(Data).await.map_err(|e| (Step::Message, e))?;
            conn.message(message)
                .await
                .map_err(|e| (Step::Message, e))?;
            Ok(())
        }
        .await;
        if result.is_ok() {
            let _ = conn.quit().await;
        }
        conn.abort().await;
        result
    }

    /// The wait before attempt number `attempts + 1`, after `attempts` failures.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        backoff_ms(self.retry_initial_ms, self.retry_max_ms, attempts)
    }
}

/// The wait before attempt number `attempts + 1`: `initial_ms`, doubled per
/// failure after the first, at most `max_ms` (the outboxes' backoff).
pub fn backoff_ms(initial_ms: i64, max_ms: i64, attempts: i64) -> i64 {
    let factor = 1i64 << attempts.clamp(1, 30).saturating_sub(1);
    initial_ms.saturating_mul(factor).min(max_ms)
}

/// Checks `[mail]`, `[summary]` and the console time zone before the
/// collector starts, when mail is on (`[mail] host` set): a mistake here
/// would otherwise leave the school without urgent notifications, so it
/// stops the start-up with what to fix. Returns warnings to log.
pub fn check(config: &CollectorConfig) -> Result<Vec<String>, MailError> {
    let mail = &config.mail;
    if mail.host.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    Mailer::from_config(mail)?;
    if let Err(e) = crate::console::tz::Zone::parse(&config.console.time_zone) {
        return Err(MailError::Settings(format!("[console] time_zone {e}")));
    }
    if recipients_with(mail, &["dsl", "deputy-dsl"]).is_empty() {
        return Err(MailError::Config(
            "no recipient holds the role \"dsl\" or \"deputy-dsl\", so urgent alerts would email nobody; add a [[mail.recipients]] entry".into(),
        ));
    }
    if recipients_with(mail, &["head"]).is_empty() {
        warnings.push("no recipient holds the role \"head\": urgent alerts about staff are not emailed until one does; add a [[mail.recipients]] entry".into());
    }
    if config.summary.enabled {
        crate::summary::schedule(config).map_err(|e| MailError::Settings(e.to_string()))?;
        if let Some(bad) = config
            .summary
            .roles
            .iter()
            .find(|role| !ROLES.contains(&role.as_str()))
        {
            return Err(MailError::Settings(format!(
                "[summary] roles has unknown role {bad:?}; use {}",
                ROLES.join(", ")
            )));
        }
        if config.summary.roles.iter().any(|r| r == "technician") {
            warnings.push("[summary] roles lists \"technician\": technicians get no weekly summary (it names categories and rules, which technicians do not see); remove it".into());
        }
        if crate::summary::recipients(config).is_empty() {
            return Err(MailError::Settings(format!(
                "[summary] is enabled but no recipient holds a role in [summary] roles ({}); add one, or set [summary] enabled = false",
                config.summary.roles.join(", ")
            )));
        }
    }
    if mail.console_url.trim().is_empty() {
        warnings.push(format!(
            "[mail] console_url is empty: email links use {}, which may not be reachable from a mail client; set it to the console's address",
            console_url(config)
        ));
    }
    #[cfg(unix)]
    if !mail.password_file.trim().is_empty() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(mail.password_file.trim()) {
            if meta.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "[mail] password_file {:?} can be read by other users; chmod 600 it",
                    mail.password_file
                ));
            }
        }
    }
    Ok(warnings)
}

/// The email address in `address` (`Name <a@b>` or `a@b`), lower-cased:
/// what makes two recipients the same person.
pub fn address_key(address: &str) -> String {
    match address.trim().parse::<Mailbox>() {
        Ok(m) => m.email.to_string().to_lowercase(),
        Err(_) => address.trim().to_lowercase(),
    }
}

/// The (address, school) of each school's recipient holding any of `roles`,
/// each person once per school.
pub fn school_recipients_with(mail: &Mail, roles: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for r in &mail.recipients {
        if !r.school.is_empty() && r.roles.iter().any(|role| roles.contains(&role.as_str())) {
            let key = (address_key(&r.address), r.school.clone());
            if !seen.contains(&key) {
                seen.push(key);
                out.push((r.address.trim().to_owned(), r.school.clone()));
            }
        }
    }
    out
}

/// The addresses of the trust's recipients (no school) holding any of
/// `roles`, each person once.
pub fn recipients_with(mail: &Mail, roles: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for r in &mail.recipients {
        // A school's recipients are in `school_recipients_with`.
        if r.school.is_empty() && r.roles.iter().any(|role| roles.contains(&role.as_str())) {
            let key = address_key(&r.address);
            if !seen.contains(&key) {
                seen.push(key);
                out.push(r.address.trim().to_owned());
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

/// `message` as an outbox row of `kind` (`urgent` or `summary`).
pub fn outgoing(
    kind: &str,
    to: &str,
    subject: &str,
    message: &Message,
) -> Result<NewEmail, MailError> {
    let from = message
        .envelope()
        .from()
        .map(|a| a.to_string())
        .ok_or_else(|| MailError::Build("no sender".into()))?;
    Ok(NewEmail {
        kind: kind.to_owned(),
        recipient: to.to_owned(),
        subject: subject.to_owned(),
        envelope_from: from,
        message: message.formatted(),
    })
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::Recipient;
    pub(super) fn mail() -> Mail {
        Mail {
            host: "127.0.0.1".into(),
            security: MailSecurity::None,
            from: "Tutela <tutela@school.test>".into(),
            recipients: vec![
                Recipient {
                    address: "dsl@school.test".into(),
                    roles: vec!["dsl".into()],
                    school: String::new(),
                },
                Recipient {
                    address: "Head <head@school.test>".into(),
                    roles: vec!["head".into(), "deputy-dsl".into()],
                    school: String::new(),
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
        // No password to protect, but urgent alerts still go over the network.
        plain.username.clear();
        let err = Mailer::from_config(&plain).unwrap_err().to_string();
        assert!(err.contains("security = \"none\" is only allowed"), "{err}");
        plain.security = MailSecurity::Starttls;
        assert!(Mailer::from_config(&plain).unwrap().is_some());
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
    fn start_up_checks_fail_closed_with_what_to_fix() {
        let mut config = CollectorConfig {
            mail: mail(),
            ..CollectorConfig::default()
        };
        config.mail.console_url = "https://c.test".into();
        config.summary.roles = vec!["dsl".into()];
        assert!(check(&config).unwrap().is_empty());
        assert!(
            check(&CollectorConfig::default()).unwrap().is_empty(),
            "mail off"
        );
        let mut bad = config.clone();
        bad.summary.day = "funday".into();
        assert!(check(&bad)
            .unwrap_err()
            .to_string()
            .contains("[summary] day"));
        let mut bad = config.clone();
        bad.console.time_zone = "Mars/Olympus".into();
        assert!(check(&bad).unwrap_err().to_string().contains("time_zone"));
        let mut bad = config.clone();
        bad.mail.recipients.remove(0);
        bad.mail.recipients[0].roles = vec!["head".into()];
        assert!(check(&bad).unwrap_err().to_string().contains("\"dsl\""));
        let mut warned = config.clone();
        warned.mail.console_url.clear();
        warned.mail.recipients[1].roles = vec!["deputy-dsl".into()];
        let warnings = check(&warned).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        // The password never shows in Debug output.
        let mut secret = mail();
        secret.password = "hunter2".into();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
