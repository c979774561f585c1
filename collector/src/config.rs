//! Collector configuration: `<data dir>/collector.toml`, written by `init`
//! with every default spelled out. A missing field takes its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod mail;
mod webhooks;

pub use mail::{Mail, MailSecurity, Recipient};
pub use webhooks::{WebhookAudience, WebhookFormat, WebhookTarget, Webhooks};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC listen address for agents (TLS).
    pub listen: SocketAddr,
    /// Address agents are told to use in enrolment tokens (`host:port`).
    /// Empty: the listen address, with 127.0.0.1 for an unspecified host.
    pub advertise: String,
    /// Further addresses of this collector service (other nodes serving the
    /// same certificate), written into tokens after `advertise`: agents try
    /// them in order when the first cannot be reached.
    pub advertise_also: Vec<String>,
    pub limits: Limits,
    pub storage: Storage,
    pub console: Console,
    pub fleet: Fleet,
    pub mail: Mail,
    pub summary: Summary,
    pub retention: Retention,
    pub backup: Backup,
    pub metrics: Metrics,
    pub extension: Extension,
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest capture one event may carry.
    pub max_capture_bytes: usize,
    /// Largest signed event body.
    pub max_body_bytes: usize,
    /// Agent clock further than this from the collector's is flagged (not rejected).
    pub skew_flag_secs: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Most events committed in one transaction by the writer.
    pub batch_max: usize,
    /// Where the store lives: empty for SQLite in the data directory, or a
    /// `postgres://user:password@host:port/database` URL (a collector built
    /// with the `postgres` feature) for several collectors on one database.
    pub url: String,
    /// On PostgreSQL, how long a collector holds singleton work (weekly
    /// summary, urgent-mail scan, retention purge, webhook scan) before
    /// another may take it over; renewed every third of it.
    pub lease_secs: u64,
    /// Where captures' (sealed) bytes go: the database, or object storage.
    pub captures: CaptureStorage,
    /// The PEM file of the CA that signed the PostgreSQL server's
    /// certificate, for `?sslmode=verify-full` (or `verify-ca`, `require`)
    /// in `url`; a relative path is from the data directory. The same as
    /// `sslrootcert=` in the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// `[storage.captures]`: the database by default; `url = "s3://bucket/prefix"`
/// puts each capture, sealed by the collector, in S3-compatible object
/// storage (a collector built with the `s3` feature).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureStorage {
    /// Empty for the database, or `s3://bucket/prefix`.
    pub url: String,
    /// The S3 endpoint, e.g. `https://s3.eu-west-2.amazonaws.com` or a
    /// self-hosted server's; empty for AWS's default.
    pub endpoint: String,
    /// The bucket's region (`us-east-1` when empty).
    pub region: String,
    /// Names of the environment variables holding the access key id and
    /// secret (the values are never written to collector.toml or logged).
    pub access_key_id_env: String,
    pub secret_access_key_env: String,
    /// Allows a plain-HTTP endpoint, only on this machine (loopback).
    pub allow_http: bool,
    /// How often objects of purged captures are deleted, in seconds.
    pub sweep_secs: u64,
}

impl Default for CaptureStorage {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id_env: String::new(),
            secret_access_key_env: String::new(),
            allow_http: false,
            sweep_secs: 60,
        }
    }
}

impl Storage {
    /// Puts `ca` (relative to `dir`) into a PostgreSQL `url` as its
    /// `sslrootcert`, unless the URL names one itself.
    fn name_ca(&mut self, dir: &Path) {
        let Some(ca) = &self.ca else {
            return;
        };
        let url = self.url.trim();
        if url.is_empty() || url.contains("sslrootcert=") {
            return;
        }
        let ca = dir.join(ca);
        let encoded: String =
            form_urlencoded::byte_serialize(ca.to_string_lossy().as_bytes()).collect();
        let joiner = if url.contains('?') { '&' } else { '?' };
        self.url = format!("{url}{joiner}sslrootcert={encoded}");
    }
}

// The URL may hold a password: never printed.
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("batch_max", &self.batch_max)
            .field("url", &crate::store::Location::redacted(&self.url))
            .field("lease_secs", &self.lease_secs)
            .field("captures", &self.captures)
            .field("ca", &self.ca)
            .finish()
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7443".parse().expect("a valid address"),
            advertise: String::new(),
            advertise_also: Vec::new(),
            limits: Limits::default(),
            storage: Storage::default(),
            console: Console::default(),
            fleet: Fleet::default(),
            mail: Mail::default(),
            summary: Summary::default(),
            retention: Retention::default(),
            backup: Backup::default(),
            metrics: Metrics::default(),
            extension: Extension::default(),
            webhooks: Webhooks::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_capture_bytes: tutela_proto::DEFAULT_MAX_CAPTURE_BYTES,
            max_body_bytes: tutela_proto::DEFAULT_MAX_BODY_BYTES,
            skew_flag_secs: 300,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            batch_max: 1000,
            url: String::new(),
            lease_secs: 30,
            captures: CaptureStorage::default(),
            ca: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}; run `tutela-collector init` first")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid collector configuration: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        config
            .storage
            .name_ca(path.parent().unwrap_or(Path::new(".")));
        let also = &config.advertise_also;
        let bad = also.iter().find(|a| !tutela_proto::token::is_endpoint(a));
        if let Some(bad) = bad {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                reason: format!(
                    "advertise_also entry {bad:?} is not host:port; write e.g. \"collector-b.school.lan:7443\""
                ),
            });
        }
        if also.len() > tutela_proto::token::MAX_FALLBACKS {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                reason: format!(
                    "advertise_also has {} addresses; tokens carry at most {}",
                    also.len(),
                    tutela_proto::token::MAX_FALLBACKS
                ),
            });
        }
        Ok(config)
    }

    /// The address written into enrolment tokens.
    pub fn advertised(&self) -> String {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        addr.to_string()
    }

    /// The maximum gRPC message the collector decodes.
    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_capture_bytes + self.limits.max_body_bytes + 4096
    }
}

/// The review console: a web application for the DSL, head, technicians and auditors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// Serve the console at all.
    pub enabled: bool,
    /// Listen address. Plain HTTP unless `tls` is set; keep it on loopback
    /// (behind a TLS reverse proxy) or set `tls` before opening it to the network.
    pub listen: SocketAddr,
    /// Serve HTTPS with the collector's certificate (session cookies become `Secure`).
    pub tls: bool,
    /// The address of a TLS reverse proxy in front of the console, e.g.
    /// `127.0.0.1`. Requests from it are taken to come from the last address
    /// in its `X-Forwarded-For` header (for sign-in throttling and the audit
    /// log), and cookies are marked `Secure`. The header is ignored from any
    /// other address. Unset: no proxy is trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// The school's time zone for displayed times: `Europe/London` (GMT/BST),
    /// `UTC`, or a fixed offset such as `+01:00`.
    pub time_zone: String,
    /// Accounts matching this pattern (`*` wildcard, case-insensitive) are
    /// staff, besides those imported with `users import`; their alerts go to
    /// the head teacher only. Empty: none.
    pub staff_pattern: String,
    /// Staff single sign-on providers (OpenID Connect), each shown as a
    /// button on the sign-in page. Local accounts keep working beside them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<OidcProvider>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8443".parse().expect("a valid address"),
            tls: false,
            trusted_proxy: None,
            time_zone: "Europe/London".into(),
            staff_pattern: String::new(),
            oidc: Vec::new(),
        }
    }
}

/// One OpenID Connect provider for staff sign-in (`[[console.oidc]]`).
/// It names where the client secret is, never the secret itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// Short id used in the URLs: `/login/oidc/<name>` and its callback.
    pub name: String,
    /// What the sign-in button says, e.g. `Google Workspace`. Empty: the name.
    #[serde(default)]
    pub label: String,
    /// The issuer exactly as the provider's discovery document states it,
    /// e.g. `https://accounts.google.com`.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (first line), readable by the collector only.
    #[serde(default)]
    pub client_secret_file: String,
    /// Or an environment variable holding it. Neither: a public client (PKCE only).
    #[serde(default)]
    pub client_secret_env: String,
    /// The callback URL registered with the provider: the console's address
    /// as browsers reach it, then `/login/oidc/<name>/callback`.
    pub redirect_url: String,
    /// Scopes asked for, beside `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding the account's email address.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// The ID token claim holding the account's groups (a list of names or ids).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Refuse an ID token whose `email_verified` claim is false.
    #[serde(default = "default_true")]
    pub require_verified_email: bool,
    /// Sent as the `prompt` parameter: `login` makes the provider ask for
    /// the password again at each console sign-in (shared staffroom
    /// computers), `select_account` lets a person pick an account. Empty:
    /// the provider decides.
    #[serde(default)]
    pub prompt: String,
    /// Who gets which role; the first entry that matches wins. An account
    /// that matches none is refused.
    #[serde(default)]
    pub roles: Vec<OidcRole>,
    /// The school (`schools list`) an account this provider makes is
    /// granted its role over, on a collector of several schools. Empty: it
    /// gets no access until `users grant` gives it some.
    #[serde(default)]
    pub school: String,
}

/// Accounts given one role: by email address or by group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRole {
    /// dsl, deputy-dsl, head, technician or auditor.
    pub role: String,
    /// Email addresses (case-insensitive).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Group names or ids as the provider sends them in the groups claim.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_true() -> bool {
    true
}

/// The browser extension agent (Chromebooks and Chrome), which reaches the
/// collector's gRPC port over gRPC-Web.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Extension {
    /// Browser origins allowed to read the collector's gRPC-Web answers
    /// (CORS), each `chrome-extension://` and a 32-letter extension id. The
    /// default is the id of Tutela's own extension package; a school that
    /// publishes its own build lists that id. Web pages are never allowed.
    pub origins: Vec<String>,
}

/// The id Tutela's extension package has (fixed by the key in its manifest).
pub const EXTENSION_ID: &str = "hojnioahjpebjkgiinoedoemfdjifemj";

impl Default for Extension {
    fn default() -> Self {
        Self {
            origins: vec![format!("chrome-extension://{EXTENSION_ID}")],
        }
    }
}

impl Extension {
    /// The origins, each checked to be an extension's.
    pub fn checked_origins(&self) -> Result<Vec<String>, String> {
        self.origins
            .iter()
            .map(|o| {
                let id = o.strip_prefix("chrome-extension://").unwrap_or("");
                if id.len() == 32 && id.bytes().all(|b| (b'a'..=b'p').contains(&b)) {
                    Ok(o.clone())
                } else {
                    Err(format!(
                        "extension.origins: `{o}` is not a browser extension's origin; write chrome-extension:// and the extension's 32-letter id"
                    ))
                }
            })
            .collect()
    }
}

/// Fleet coverage: when a station counts as silent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fleet {
    /// A station with no heartbeat or event for longer than this many
    /// minutes, counted within school hours only, is flagged as silent.
    /// Default 60.
    pub silent_after_mins: u64,
    /// School days, as three-letter English names. Default Mon to Fri.
    pub school_days: Vec<String>,
    /// School hours in the console time zone, `HH:MM-HH:MM`. Default `08:30-15:30`.
    pub school_hours: String,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            silent_after_mins: 60,
            school_days: ["Mon", "Tue", "Wed", "Thu", "Fri"]
                .into_iter()
                .map(String::from)
                .collect(),
            school_hours: "08:30-15:30".into(),
        }
    }
}

/// The weekly summary email, in the console's time zone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Summary {
    /// Send the weekly summary at all (needs `[mail]`).
    pub enabled: bool,
    /// Day it is sent: `monday` .. `sunday`. It covers the seven days before.
    pub day: String,
    /// Local time it is sent, `HH:MM`.
    pub time: String,
    /// Roles that receive it. Heads receive staff alerts only; the others
    /// receive pupils' alerts, with staff alerts as a count only.
    pub roles: Vec<String>,
    /// How often the schedule is checked.
    pub check_secs: u64,
    /// A slot missed while the collector was down is sent this long after
    /// it starts (time to stop it, or fix the configuration, first).
    pub catch_up_delay_secs: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            enabled: true,
            day: "monday".into(),
            time: "08:00".into(),
            roles: vec!["dsl".into(), "deputy-dsl".into()],
            check_secs: 60,
            catch_up_delay_secs: 600,
        }
    }
}

/// How `tutela-collector backup` encrypts (see the README, "Backups").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// File holding the backup passphrase (keep a copy off the server: without
    /// it no backup can be restored). `--passphrase-file` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// Scheduled backups by `serve`: a new directory per slot under this
    /// one (unset: none; the nightly timer of the package does it instead).
    /// With several collectors on one PostgreSQL, one of them makes each
    /// slot's backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How often, as a duration (24h, 6h, 30m); slots start at whole
    /// multiples of it since 1970 (UTC). Default 24h.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Scheduled backups kept in `dir` (older ones are removed). Default 14.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

/// How long evidence is kept (see `tutela-collector purge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Alerts closed or closed as false positives longer ago than this many
    /// calendar months are deleted with their captures.
    pub closed_alert_months: u32,
    /// Run the purge once a day while `serve` runs.
    pub purge_daily: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            closed_alert_months: 12,
            purge_daily: true,
        }
    }
}

/// Prometheus metrics (see the README, "Metrics").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Address for `/metrics` (plain HTTP: keep it on loopback or a
    /// management network). Unset: no metrics listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}
