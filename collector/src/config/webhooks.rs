//! `[webhooks]`: urgent alerts posted to chat or another system.

use serde::{Deserialize, Serialize};

/// Urgent alerts posted to chat or another system (see the README, "Webhooks").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// The school's name as messages show it. Empty: left out.
    pub school: String,
    /// New urgent alerts are gathered into messages this often.
    pub interval_secs: u64,
    /// First retry of a failed post after this many seconds; doubles per failure.
    pub retry_initial_secs: u64,
    /// Longest wait between retries. Failed posts are retried until they go,
    /// unless the receiver refuses them for good (a 4xx other than 408 and 429).
    pub retry_max_secs: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<WebhookTarget>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            school: String::new(),
            interval_secs: 30,
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            targets: Vec::new(),
        }
    }
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Tutela's own JSON, signed with HMAC-SHA256.
    Json,
    /// A Microsoft Teams message with an Adaptive Card (Teams workflows and
    /// incoming webhooks).
    Teams,
    /// A Slack incoming-webhook message.
    Slack,
}

/// Whose alerts a webhook carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookAudience {
    /// Alerts about pupils (the DSLs').
    Pupils,
    /// Alerts about staff accounts (the head teacher's).
    Staff,
}

/// One receiver (`[[webhooks.targets]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Names the target in the log and the outbox.
    pub name: String,
    pub format: WebhookFormat,
    /// The receiver's URL (https, or http on this machine). Teams and Slack
    /// URLs are secrets: prefer `url_file` or `url_env` for them.
    #[serde(default)]
    pub url: String,
    /// Or a file holding the URL (first line).
    #[serde(default)]
    pub url_file: String,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub url_env: String,
    /// `json`: a file holding the HMAC-SHA256 key (first line).
    #[serde(default)]
    pub secret_file: String,
    /// `json`: or an environment variable holding it.
    #[serde(default)]
    pub secret_env: String,
    #[serde(default = "default_audience")]
    pub audience: WebhookAudience,
    /// The lowest severity posted.
    #[serde(default = "default_webhook_severity")]
    pub min_severity: i64,
    /// Opt in: the pupil's account name and station in each message.
    #[serde(default)]
    pub include_pupil: bool,
    /// Opt in: the category and the matched words in each message.
    #[serde(default)]
    pub include_match: bool,
    /// Only this school's alerts (its id, `schools list`), named in each
    /// message by the school's name. Empty: every school's (the trust's).
    #[serde(default)]
    pub school: String,
}

fn default_audience() -> WebhookAudience {
    WebhookAudience::Pupils
}

fn default_webhook_severity() -> i64 {
    4
}
