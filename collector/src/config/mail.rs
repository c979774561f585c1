//! `[mail]`: outgoing email and who receives it.

use serde::{Deserialize, Serialize};

/// Outgoing email (SMTP): the weekly summary and urgent alert notifications.
/// With no `host` set, no email is sent (the collector logs that once).
/// (Its `Debug` leaves out the password.)
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// SMTP server host name. Empty: email is off.
    pub host: String,
    /// SMTP port: 587 for STARTTLS, 465 for TLS, 25 for none.
    pub port: u16,
    /// `starttls`, `tls` (implicit TLS) or `none` (plain text: loopback only).
    pub security: MailSecurity,
    /// Extra CA certificates (PEM) to trust for the SMTP server, e.g. the
    /// school's own CA; empty: the system's root certificates only.
    pub ca_file: String,
    /// SMTP login; empty: no authentication.
    pub username: String,
    /// SMTP password; prefer `password_file`.
    pub password: String,
    /// A file holding the SMTP password (first line), readable by the collector only.
    pub password_file: String,
    /// Sender address, e.g. `Tutela <tutela@school.example>`.
    pub from: String,
    /// Base URL of the review console for links in emails. Empty: taken from
    /// `[console] listen` (and `tls`).
    pub console_url: String,
    /// Urgent notifications (severity 4 and 5) are batched and queued this often;
    /// 50 s leaves time for delivery within a minute of an alert arriving.
    pub urgent_interval_secs: u64,
    /// First retry of a failed send after this many seconds; doubles per failure.
    pub retry_initial_secs: u64,
    /// Longest wait between retries. Failed emails are retried until they go.
    pub retry_max_secs: u64,
    /// Who receives what, by role: `dsl`, `deputy-dsl`, `head`, `technician`.
    pub recipients: Vec<Recipient>,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "(hidden)"
                },
            )
            .field("password_file", &self.password_file)
            .field("from", &self.from)
            .field("console_url", &self.console_url)
            .field("urgent_interval_secs", &self.urgent_interval_secs)
            .field("retry_initial_secs", &self.retry_initial_secs)
            .field("retry_max_secs", &self.retry_max_secs)
            .field("recipients", &self.recipients)
            .finish()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailSecurity {
    None,
    Starttls,
    Tls,
}

/// One email recipient and the roles they hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub address: String,
    pub roles: Vec<String>,
    /// The school (`schools list`) whose weekly summary and urgent alerts
    /// this recipient gets; empty: the trust's, across every school.
    #[serde(default)]
    pub school: String,
}

impl Default for Mail {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            security: MailSecurity::Starttls,
            ca_file: String::new(),
            username: String::new(),
            password: String::new(),
            password_file: String::new(),
            from: String::new(),
            console_url: String::new(),
            urgent_interval_secs: 50,
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            recipients: Vec::new(),
        }
    }
}
