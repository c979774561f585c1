//! Urgent alerts posted where DSLs already look, beside email: a generic
//! JSON webhook signed with HMAC-SHA256, Microsoft Teams and Slack.
//!
//! Every `interval_secs` each target's new alerts (at its `min_severity` or
//! more, for its audience: pupils' alerts or staff alerts) are gathered
//! into one message, written to the durable `webhook_outbox` in the same
//! transaction that moves the target's cursor, and posted by a sender that
//! retries with exponential backoff until the receiver accepts (2xx) or
//! refuses for good (4xx other than 408 and 429). Delivery is at least once.

pub mod body;
pub mod cli;
pub mod outbox;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{CollectorConfig, WebhookAudience, WebhookFormat, WebhookTarget};
use crate::store::lease::{Held, Lease};
use crate::store::webhook::{PostOutcome, TargetScope, WebhookQueued};
use crate::store::{now_ms, Jobs, Location, StoreError};

/// The lease under which new alerts are gathered into messages on a shared store.
pub const WEBHOOK_LEASE: &str = "webhook-scan";

/// The header carrying the JSON format's signature: `sha256=<hex>` of
/// HMAC-SHA256 over `<timestamp>.<body>`.
pub const SIGNATURE_HEADER: &str = "x-tutela-signature";
/// Unix seconds when the request was signed (a receiver refuses old ones).
pub const TIMESTAMP_HEADER: &str = "x-tutela-timestamp";
/// The outbox row: the same on every retry of one message.
pub const DELIVERY_HEADER: &str = "x-tutela-delivery";
const POST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("[[webhooks.targets]] {0}")]
    Config(String),
    #[error("webhooks cannot start: {0}")]
    Start(String),
}

/// A target ready to post to.
pub struct Target {
    pub config: WebhookTarget,
    url: reqwest::Url,
    key: Option<ring::hmac::Key>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL of a Teams or Slack webhook is its secret.
        f.debug_struct("Target")
            .field("name", &self.config.name)
            .finish()
    }
}

impl Target {
    pub fn from_config(config: &WebhookTarget) -> Result<Self, WebhookError> {
        let name = &config.name;
        let err = |why: String| WebhookError::Config(format!("{name:?}: {why}"));
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err("name must be 1-64 letters, digits, '-' or '_'".into()));
        }
        let url = crate::secrets::configured(&config.url, &config.url_file, &config.url_env, "URL")
            .map_err(&err)?
            .ok_or_else(|| err("set url, url_file or url_env".into()))?;
        let url =
            reqwest::Url::parse(&url).map_err(|e| err(format!("the URL is not a URL ({e})")))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(err(
                "the URL must be https (http only to this machine): alerts must not cross the network in the clear".into(),
            ));
        }
        let secret =
            crate::secrets::configured("", &config.secret_file, &config.secret_env, "secret")
                .map_err(&err)?;
        let key = match (config.format, secret) {
            (WebhookFormat::Json, Some(s)) if s.len() >= 16 => {
                Some(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes()))
            }
            (WebhookFormat::Json, _) => {
                return Err(err(
                    "the json format needs a signing secret of at least 16 characters (secret_file or secret_env)".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(err(
                    "Teams and Slack do not check signatures; their URL is the secret (leave secret_file and secret_env unset)".into(),
                ))
            }
            (_, None) => None,
        };
        if !(1..=5).contains(&config.min_severity) {
            return Err(err("min_severity must be 1 to 5".into()));
        }
        let school = config.school.trim();
        if !school.is_empty() && !crate::store::schools::valid_id(school) {
            return Err(err(format!(
                "school {school:?} is not a school id (`tutela-collector schools list` shows them; leave it out for every school's alerts)"
            )));
        }
        Ok(Self {
            config: config.clone(),
            url,
            key,
        })
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under `key`.
pub fn signature(key: &ring::hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// Checks every target (at start-up: a mistake stops the collector, saying
/// what to fix, rather than leave the school without its alerts).
pub fn targets(config: &CollectorConfig) -> Result<Vec<Target>, WebhookError> {
    let mut seen = std::collections::HashSet::new();
    config
        .webhooks
        .targets
        .iter()
        .map(|t| {
            if !seen.insert(t.name.clone()) {
                return Err(WebhookError::Config(format!("{:?} is named twice", t.name)));
            }
            Target::from_config(t)
        })
        .collect()
}

/// Gathers each target's new alerts into a message in the outbox; returns
/// how many messages were queued.
pub async fn queue(
    jobs: &Jobs,
    config: &CollectorConfig,
    targets: &[Target],
) -> Result<usize, StoreError> {
    let zone = crate::summary::zone(config);
    let console = crate::mail::console_url(config);
    let scopes = targets
        .iter()
        .map(|t| TargetScope {
            name: t.config.name.clone(),
            staff: t.config.audience == WebhookAudience::Staff,
            min_severity: t.config.min_severity,
            school: t.config.school.trim().to_owned(),
        })
        .collect();
    // A school's target names its school; the trust's, `[webhooks] school`.
    let names = if targets.iter().any(|t| !t.config.school.trim().is_empty()) {
        jobs.schools().await?
    } else {
        Vec::new()
    };
    let scan = jobs
        .webhook_scan(scopes, &config.console.staff_pattern)
        .await?;
    let mut queued = Vec::new();
    for found in scan.targets {
        if scan.newest <= found.after {
            continue;
        }
        let Some(target) = targets.iter().find(|t| t.config.name == found.name) else {
            continue;
        };
        let message = (!found.alerts.is_empty()).then(|| {
            let body = body::render(
                &target.config,
                &body::Batch {
                    school: match target.config.school.trim() {
                        "" => config.webhooks.school.trim(),
                        id => names
                            .iter()
                            .find(|s| s.id == id)
                            .map_or(id, |s| s.name.as_str()),
                    },
                    console: &console,
                    zone: &zone,
                    alerts: &found.alerts,
                },
            );
            (body, found.alerts.len())
        });
        queued.push(WebhookQueued {
            name: found.name,
            after: found.after,
            message,
        });
    }
    let messages: Vec<(String, usize)> = queued
        .iter()
        .filter_map(|q| q.message.as_ref().map(|(_, n)| (q.name.clone(), *n)))
        .collect();
    if queued.is_empty() || !jobs.webhook_queue(scan.newest, queued).await? {
        return Ok(0);
    }
    for (name, alerts) in &messages {
        tracing::info!(target = %name, alerts, "webhook message queued");
    }
    Ok(messages.len())
}

/// How one post ended.
#[derive(Debug, PartialEq, Eq)]
enum Posted {
    Accepted,
    /// Refused for good: a 4xx other than 408 and 429.
    Refused(String),
    Retry(String),
}

async fn post(client: &reqwest::Client, target: &Target, id: i64, body: Vec<u8>) -> Posted {
    let mut request = client
        .post(target.url.clone())
        .header("content-type", "application/json")
        .header(DELIVERY_HEADER, id.to_string());
    if let Some(key) = &target.key {
        let timestamp = now_ms() / 1000;
        request = request
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(key, timestamp, &body));
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => Posted::Accepted,
        Ok(r) => {
            let status = r.status();
            let text = format!("the receiver answered {status}");
            if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Posted::Refused(text)
            } else {
                Posted::Retry(text)
            }
        }
        // Without the URL: a Teams or Slack URL is a secret.
        Err(e) => Posted::Retry(format!(
            "the receiver could not be reached ({})",
            if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            }
        )),
    }
}

/// Posts every due message once.
async fn deliver_due(
    jobs: &Jobs,
    client: &reqwest::Client,
    targets: &[Target],
    config: &crate::config::Webhooks,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let cutoff = now_ms();
    while !stop.load(Ordering::SeqCst) {
        let Some((id, name, body, attempts)) = jobs.claim_webhook(cutoff, outbox::LEASE_MS).await?
        else {
            return Ok(());
        };
        let attempts = attempts + 1;
        let Some(target) = targets.iter().find(|t| t.config.name == name) else {
            // The target was removed from collector.toml: its messages stay.
            let error = "no such target in collector.toml".to_owned();
            jobs.webhook_posted(id, attempts, PostOutcome::Refused(error))
                .await?;
            continue;
        };
        match post(client, target, id, body).await {
            Posted::Accepted => {
                tracing::info!(id, target = %name, attempts, "webhook message delivered");
                jobs.webhook_posted(id, attempts, PostOutcome::Sent).await?;
            }
            Posted::Refused(error) => {
                tracing::error!(id, target = %name, attempts, %error, "the webhook receiver refused the message for good; check its URL and settings");
                jobs.webhook_posted(id, attempts, PostOutcome::Refused(error))
                    .await?;
            }
            Posted::Retry(error) => {
                let wait = crate::mail::backoff_ms(
                    config.retry_initial_secs.max(1) as i64 * 1000,
                    config.retry_max_secs.max(1) as i64 * 1000,
                    attempts,
                );
                tracing::warn!(id, target = %name, attempts, retry_in_secs = wait / 1000, %error, "webhook message not delivered; will retry");
                let next_ms = now_ms() + wait;
                jobs.webhook_posted(id, attempts, PostOutcome::Retry { next_ms, error })
                    .await?;
            }
        }
    }
    Ok(())
}

/// The running webhook tasks; stopped on [`Webhooks::shutdown`] or drop.
#[derive(Debug, Default)]
pub struct Webhooks {
    queuing: Option<tokio::task::JoinHandle<()>>,
    sending: Option<tokio::task::JoinHandle<()>>,
    lease: Option<Lease>,
    stop: Arc<AtomicBool>,
}

impl Webhooks {
    /// Stops queuing at once and lets a post in flight finish (up to
    /// `wait`) so that it is recorded; one still going is posted again on
    /// the next start (same delivery id).
    pub async fn shutdown(self, wait: Duration) {
        if let Some(q) = &self.queuing {
            q.abort();
        }
        if let Some(lease) = self.lease {
            lease.release().await;
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sending) = self.sending {
            let abort = sending.abort_handle();
            if tokio::time::timeout(wait, sending).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Starts queuing and posting when targets are configured. Fails, saying
/// what to fix, when a target is wrong or the store cannot be used. On a
/// store several collectors share, every collector posts from the outbox;
/// new alerts are gathered by the collector holding the webhook lease.
pub async fn start(
    location: &Location,
    config: &CollectorConfig,
) -> Result<Webhooks, WebhookError> {
    let targets = Arc::new(targets(config)?);
    if targets.is_empty() {
        return Ok(Webhooks::default());
    }
    let open = || async {
        let failed = |e: StoreError| {
            WebhookError::Start(format!(
                "the store ({location:?}) cannot be opened or updated ({e})"
            ))
        };
        let jobs = Jobs::open(location).await.map_err(failed)?;
        let schools = jobs.schools().await.map_err(failed)?;
        for t in targets.iter() {
            let school = t.config.school.trim();
            if !school.is_empty() && !schools.iter().any(|s| s.id == school) {
                return Err(WebhookError::Config(format!(
                    "{:?}: there is no school {school:?}; `tutela-collector schools list` shows the schools and `schools add` adds one",
                    t.config.name
                )));
            }
            jobs.init_webhook_cursor(&t.config.name)
                .await
                .map_err(failed)?;
        }
        Ok::<_, WebhookError>(jobs)
    };
    let (queue_jobs, send_jobs) = (open().await?, open().await?);
    let lease = Lease::keep(
        &queue_jobs,
        WEBHOOK_LEASE,
        &crate::store::lease::holder_id(),
        Duration::from_secs(config.storage.lease_secs.max(1)),
    );
    let held: Held = lease.held_handle();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .connect_timeout(POST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tutela-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Start(format!("cannot make an HTTP client: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let every = Duration::from_secs(config.webhooks.interval_secs.max(1));
    let queuing = {
        let (config, targets, wake) = (Arc::new(config.clone()), targets.clone(), wake.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !held.now() {
                    continue;
                }
                match queue(&queue_jobs, &config, &targets).await {
                    Ok(0) => {}
                    Ok(_) => wake.notify_one(),
                    Err(e) => tracing::error!(error = %e, "webhook messages could not be queued"),
                }
            }
        })
    };
    let sending = {
        let (settings, stop) = (config.webhooks.clone(), stop.clone());
        tokio::spawn(async move {
            let mut pruned: Option<tokio::time::Instant> = None;
            while !stop.load(Ordering::SeqCst) {
                if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(86_400)) {
                    pruned = Some(tokio::time::Instant::now());
                    let before = now_ms() - outbox::KEEP_SENT_MS;
                    if let Err(e) = send_jobs.prune_webhooks(before).await {
                        tracing::error!(error = %e, "old webhook messages could not be removed");
                    }
                }
                if let Err(e) = deliver_due(&send_jobs, &client, &targets, &settings, &stop).await {
                    tracing::error!(error = %e, "the webhook outbox could not be read");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = wake.notified() => {}
                }
            }
        })
    };
    tracing::info!(targets = config.webhooks.targets.len(), "webhooks on");
    Ok(Webhooks {
        queuing: Some(queuing),
        sending: Some(sending),
        lease: Some(lease),
        stop,
    })
}

#[cfg(test)]
mod tests;
