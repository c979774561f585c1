//! Rule updates from the collector, and the heartbeat that reports the
//! version the agent runs.
//!
//! The agent subscribes to signed rule bundles; it applies one only if the
//! collector's signature verifies and the version is newer than the one it
//! runs, compiles it off the async threads, swaps the matcher atomically and
//! keeps the bundle on disk so a restart runs it too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::Notify;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::rules_client::RulesClient;
use tutela_proto::v1::{HeartbeatBody, SignedHeartbeat, SignedSubscribe, SubscribeBody};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack};

use crate::identity::{Enrolment, Identity};
use crate::monitor::LiveRules;
use crate::pinning;
use crate::uplink::{Backoff, SharedSpool};

/// File keeping the last applied live bundle.
pub const LIVE_BUNDLE_FILE: &str = "rules-live.bundle";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rule bundle rejected: {0}")]
    Rejected(#[from] tutela_rules::bundle::BundleError),
    #[error("rule bundle rejected: its pack does not load: {0}")]
    Pack(String),
    #[error("the enrolment record has no collector bundle key; enrol the device again")]
    NoKey,
}

/// Everything the sync and heartbeat tasks need.
#[derive(Clone)]
pub struct RulesSync {
    pub enrolment: Enrolment,
    pub identity: Arc<Identity>,
    pub live: LiveRules,
    pub data_dir: PathBuf,
    pub age: AgeBand,
    pub spool: SharedSpool,
    /// Wakes the heartbeat early (after a rule change).
    pub report_now: Arc<Notify>,
    pub heartbeat_every: Duration,
}

impl std::fmt::Debug for RulesSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesSync")
            .field("agent_id", &self.enrolment.agent_id)
            .finish_non_exhaustive()
    }
}

fn bundle_key(enrolment: &Enrolment) -> Result<Vec<u8>, RulesError> {
    hex::decode(&enrolment.bundle_key)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or(RulesError::NoKey)
}

/// Verifies and compiles a bundle newer than `current`.
pub fn verify_and_compile(
    enrolment: &Enrolment,
    bytes: &[u8],
    current: Option<u32>,
    age: AgeBand,
) -> Result<Matcher, RulesError> {
    let key = bundle_key(enrolment)?;
    let bundle = tutela_rules::bundle::verify(bytes, &key, current)?;
    let pack =
        Pack::parse(&bundle.pack_toml, "bundle").map_err(|e| RulesError::Pack(e.to_string()))?;
    Matcher::compile(&pack, &CompileOptions { age }).map_err(|e| RulesError::Pack(e.to_string()))
}

/// The last applied bundle on disk, if it still verifies.
pub fn load_saved(data_dir: &Path, enrolment: &Enrolment, age: AgeBand) -> Option<Matcher> {
    let bytes = std::fs::read(data_dir.join(LIVE_BUNDLE_FILE)).ok()?;
    match verify_and_compile(enrolment, &bytes, None, age) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the saved rule bundle");
            None
        }
    }
}

impl RulesSync {
    fn current_version(&self) -> u32 {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version()
    }

    /// Applies one bundle from the collector. Returns the new version.
    pub async fn apply(&self, bytes: Vec<u8>) -> Result<u32, RulesError> {
        let current = self.current_version();
        let this = self.clone();
        let (matcher, bytes) = tokio::task::spawn_blocking(move || {
            verify_and_compile(&this.enrolment, &bytes, Some(current), this.age).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| RulesError::Pack(e.to_string()))??;
        let version = matcher.version();
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(matcher);
        if let Err(e) =
            crate::identity::write_private(&self.data_dir.join(LIVE_BUNDLE_FILE), &bytes)
        {
            tracing::warn!(error = %e, "could not keep the rule bundle on disk");
        }
        tracing::info!(from = current, to = version, "rules updated");
        self.report_now.notify_one();
        Ok(version)
    }

    /// Subscribes for ever, reconnecting with backoff.
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            match self.subscribe_once().await {
                Ok(()) => backoff.reset(),
                Err(e) => tracing::warn!(error = %e, "rule subscription interrupted; will retry"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn subscribe_once(&self) -> Result<(), String> {
        let channel = pinning::connect(&self.enrolment.collector, &self.enrolment.fingerprint)
            .await
            .map_err(|e| e.to_string())?;
        let body = SubscribeBody {
            agent_id: self.enrolment.agent_id.clone(),
            current_version: self.current_version(),
            time_ms: crate::session::now_ms(),
        }
        .encode_to_vec();
        let request = SignedSubscribe {
            signature: self.identity.sign(&body),
            body,
        };
        let mut stream = RulesClient::new(channel)
            .max_decoding_message_size(16 * 1024 * 1024)
            .subscribe(request)
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        loop {
            match stream.message().await {
                Ok(Some(bundle)) if bundle.shadow => {
                    tracing::info!(version = bundle.version, "shadow rule bundle offered; shadow mode is not applied by this agent version");
                }
                Ok(Some(bundle)) => {
                    if let Err(e) = self.apply(bundle.bundle).await {
                        tracing::error!(offered = bundle.version, error = %e, "rule bundle rejected");
                    }
                }
                Ok(None) => return Ok(()),
                Err(s) => return Err(s.message().to_owned()),
            }
        }
    }

    /// Sends a signed heartbeat now and then every `heartbeat_every`, and
    /// at once after a rule change.
    pub async fn heartbeat(self) {
        loop {
            if let Err(e) = self.heartbeat_once().await {
                tracing::debug!(error = %e, "heartbeat not delivered");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.heartbeat_every) => {}
                _ = self.report_now.notified() => {}
            }
        }
    }

    async fn heartbeat_once(&self) -> Result<(), String> {
        let stats = self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
            .map_err(|e| e.to_string())?;
        let body = HeartbeatBody {
            agent_id: self.enrolment.agent_id.clone(),
            time_ms: crate::session::now_ms(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            rules_version: self.current_version(),
            spool_backlog: stats.backlog,
            spool_dropped: stats.dropped,
            station: crate::session::station_name(),
            shadow_counts: Default::default(),
            shadow_version: 0,
        }
        .encode_to_vec();
        let channel = pinning::connect(&self.enrolment.collector, &self.enrolment.fingerprint)
            .await
            .map_err(|e| e.to_string())?;
        IngestClient::new(channel)
            .heartbeat(SignedHeartbeat {
                signature: self.identity.sign(&body),
                body,
            })
            .await
            .map_err(|s| s.message().to_owned())?;
        Ok(())
    }
}
