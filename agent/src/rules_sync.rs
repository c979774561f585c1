//! Rule updates from the collector, and the heartbeat that reports the
//! version the agent runs.
//!
//! The agent subscribes to signed rule bundles; it applies one only if the
//! collector's signature verifies and the version is newer than the one it
//! runs, compiles it off the async threads, swaps the matcher atomically and
//! keeps the bundle on disk so a restart runs it too. Shadow (candidate)
//! bundles are verified the same way and run beside the live rules, counted
//! but never alerted (see `shadow`). The same stream carries the curriculum
//! exemptions for the device's group (see `exemption`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use tokio::sync::Notify;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::rules_client::RulesClient;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{
    GroupAssignment, HeartbeatBody, RuleBundle, SignedGroupAssignment, SignedHeartbeat,
    SignedSubscribe, SubscribeBody,
};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack};

use crate::exemption::Exemptions;
use crate::identity::{Enrolment, Identity};
use crate::monitor::LiveRules;
use crate::pinning;
use crate::shadow::{Shadow, SHADOW_BUNDLE_FILE};
use crate::uplink::{Backoff, SharedSpool};

/// Times this process's heartbeats (one agent per process).
static HEARTBEAT_CLOCK: HeartbeatClock = HeartbeatClock::new();

/// Heartbeat times: each later than the last one sent (the collector refuses
/// one that is not newer than the last it accepted), and taken from the
/// collector's clock once it refused one as stale (a station whose clock is
/// wrong still reports).
#[derive(Debug)]
struct HeartbeatClock {
    last: AtomicI64,
    /// The collector's clock minus this station's, once learnt.
    offset: AtomicI64,
}

impl HeartbeatClock {
    const fn new() -> Self {
        Self {
            last: AtomicI64::new(0),
            offset: AtomicI64::new(0),
        }
    }

    fn next(&self, local_now: i64) -> i64 {
        let now = local_now.saturating_add(self.offset.load(Ordering::Relaxed));
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Learns the collector's clock from a heartbeat refused as stale;
    /// whether it did (then the heartbeat is worth sending again at once).
    fn learn(&self, status: &tonic::Status, local_now: i64) -> bool {
        if status.code() != tonic::Code::FailedPrecondition {
            return false;
        }
        let Some(collector_ms) = status
            .metadata()
            .get(tutela_proto::COLLECTOR_TIME_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return false;
        };
        let offset = collector_ms.saturating_sub(local_now);
        tracing::warn!(
            offset_secs = offset / 1000,
            "this station's clock differs from the collector's; heartbeats now follow the collector's clock (set the station's clock)"
        );
        self.offset.store(offset, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
        true
    }
}

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
    #[error("shadow bundle rejected: version {offered} is not newer than the live version {live}")]
    ShadowNotNewer { offered: u32, live: u32 },
    #[error(
        "rule bundle rejected: it holds version {inside} but was released as version {released}"
    )]
    NotReleased { inside: u32, released: u32 },
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
    /// The candidate pack run beside the live one.
    pub shadow: Shadow,
    /// Curriculum exemptions for this device's group.
    pub exemptions: Exemptions,
    /// Apply live bundles (false while a local pack file is in force).
    pub follow_live: bool,
    /// This host's id (see `identity::host_id`), reported in heartbeats.
    pub host: String,
    /// Signalled when the collector says this identity runs on two machines.
    pub rekey: Arc<Notify>,
    /// The school's monitoring notice for this group (none: notices are ignored).
    pub notices: Option<crate::notice::Notices>,
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

/// Whether `bundle`'s release signature (its role, version and bytes) is
/// the collector's, made with `bundle_key`.
pub fn release_verifies(bundle_key: &[u8], bundle: &RuleBundle) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, &bundle.bundle);
    let mut sha = [0u8; 32];
    sha.copy_from_slice(digest.as_ref());
    let message = tutela_proto::release_message(&sha, bundle.version, bundle.shadow);
    UnparsedPublicKey::new(&ED25519, bundle_key)
        .verify(&message, &bundle.release_signature)
        .is_ok()
}

fn check_released(inside: u32, released: Option<u32>) -> Result<(), RulesError> {
    match released {
        Some(released) if released != inside => Err(RulesError::NotReleased { inside, released }),
        _ => Ok(()),
    }
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
    Matcher::compile(&bundle.pack, &CompileOptions { age })
        .map_err(|e| RulesError::Pack(e.to_string()))
}

/// Watches a local rule pack (`[rules] pack_file`) and runs it again each
/// time it changes, so a technician can try a pack on one device. The file is
/// not signed: only someone who can write it (an administrator of the
/// device, as for `agent.toml`) can change the rules this way. A pack that
/// does not load is logged and the current rules stay in force. Keep the
/// returned watcher alive for as long as the file should be followed.
pub fn watch_local_pack(
    path: PathBuf,
    live: LiveRules,
    age: AgeBand,
    report_now: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Editors often write a new file and rename it over the old one: watch the directory.
        if event.is_ok_and(|e| e.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()))) {
            let _ = tx.try_send(());
        }
    })
    .map_err(|error| tracing::warn!(%error, "cannot watch the local rule pack; restart the agent to load changes"))
    .ok()?;
    if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(%error, dir = %dir.display(), "cannot watch the local rule pack; restart the agent to load changes");
        return None;
    }
    let mut loaded = std::fs::read(&path).ok();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the writer finish, and take a burst of changes as one.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if loaded.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            loaded = Some(bytes.clone());
            let origin = path.display().to_string();
            let compiled = tokio::task::spawn_blocking(move || {
                let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
                let pack = Pack::parse(&text, &origin).map_err(|e| e.to_string())?;
                Matcher::compile(&pack, &CompileOptions { age }).map_err(|e| e.to_string())
            })
            .await;
            match compiled {
                Ok(Ok(matcher)) => {
                    let version = matcher.version();
                    *live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(matcher);
                    tracing::info!(version, "local rule pack reloaded");
                    report_now.notify_one();
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the changed local rule pack does not load; the current rules stay in force")
                }
                Err(_) => {}
            }
        }
    });
    Some(watcher)
}

/// The last applied shadow bundle on disk, if it still verifies and is
/// newer than the live version.
pub fn load_saved_shadow(
    data_dir: &Path,
    enrolment: &Enrolment,
    age: AgeBand,
    live_version: u32,
) -> Option<Matcher> {
    let bytes = std::fs::read(data_dir.join(SHADOW_BUNDLE_FILE)).ok()?;
    match verify_and_compile(enrolment, &bytes, Some(live_version), age) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::info!(error = %e, "not running the saved shadow bundle");
            None
        }
    }
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

    /// Applies a group assignment the collector signed: from now on this
    /// device takes its new group's exemptions and notice (the collector
    /// sends them next), and keeps the group in its enrolment for restarts.
    fn assigned(&self, signed: &SignedGroupAssignment) -> Result<(), String> {
        let key = bundle_key(&self.enrolment).map_err(|e| e.to_string())?;
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(
                &tutela_proto::group_message(&signed.body),
                &signed.signature,
            )
            .map_err(|_| {
                "its signature does not verify with the collector's bundle key".to_owned()
            })?;
        let assignment = GroupAssignment::decode(signed.body.as_slice())
            .map_err(|_| "not a valid tutela.v1.GroupAssignment".to_owned())?;
        if assignment.agent_id != self.enrolment.agent_id {
            return Err(format!(
                "it is for agent {}, not this one",
                assignment.agent_id
            ));
        }
        if assignment.group.is_empty()
            || assignment.group.len() > tutela_proto::limits::MAX_NAME_BYTES
        {
            return Err("its group is empty or too long".into());
        }
        if assignment.group == self.exemptions.group() {
            return Ok(());
        }
        let mut enrolment = Enrolment::load(&self.data_dir).map_err(|e| e.to_string())?;
        enrolment.group = assignment.group.clone();
        enrolment.save(&self.data_dir).map_err(|e| e.to_string())?;
        self.exemptions.move_to(&assignment.group);
        if let Some(notices) = &self.notices {
            notices.move_to(&assignment.group);
        }
        tracing::info!(group = %assignment.group, "moved to another group by the collector");
        Ok(())
    }

    /// Whether the collector signed `bundle`'s release: its role (live or
    /// shadow) and version, bound to its bytes. The version inside the bundle
    /// must then be the released one (see [`Self::apply_released`]).
    fn released(&self, bundle: &RuleBundle) -> bool {
        bundle_key(&self.enrolment).is_ok_and(|key| release_verifies(&key, bundle))
    }

    /// Applies one bundle from the collector. Returns the new version.
    pub async fn apply(&self, bytes: Vec<u8>) -> Result<u32, RulesError> {
        self.apply_live(bytes, None).await
    }

    /// Applies a live bundle; when `released` is given, the bundle must hold
    /// that version (the one the collector's release signature names).
    async fn apply_live(&self, bytes: Vec<u8>, released: Option<u32>) -> Result<u32, RulesError> {
        let current = self.current_version();
        let this = self.clone();
        let (matcher, bytes) = tokio::task::spawn_blocking(move || {
            verify_and_compile(&this.enrolment, &bytes, Some(current), this.age).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| RulesError::Pack(e.to_string()))??;
        let version = matcher.version();
        check_released(version, released)?;
        // Kept on disk first, so whoever sees the new version can restart into it.
        if let Err(e) =
            crate::identity::write_private(&self.data_dir.join(LIVE_BUNDLE_FILE), &bytes)
        {
            tracing::warn!(error = %e, "could not keep the rule bundle on disk");
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(matcher);
        crate::memory::release_freed();
        if self.shadow.version() != 0 && self.shadow.version() <= version {
            tracing::info!(
                shadow = self.shadow.version(),
                live = version,
                "shadow pack superseded by the live rules; shadow mode ends"
            );
            self.shadow.clear();
            let _ = std::fs::remove_file(self.data_dir.join(SHADOW_BUNDLE_FILE));
        }
        tracing::info!(from = current, to = version, "rules updated");
        self.report_now.notify_one();
        Ok(version)
    }

    /// Applies a shadow (candidate) bundle: verified like a live one, newer
    /// than the shadow and the live versions in force. Returns its version.
    pub async fn apply_shadow(&self, bytes: Vec<u8>) -> Result<u32, RulesError> {
        self.apply_shadow_released(bytes, None).await
    }

    async fn apply_shadow_released(
        &self,
        bytes: Vec<u8>,
        released: Option<u32>,
    ) -> Result<u32, RulesError> {
        let live = self.current_version();
        let current = self.shadow.version().max(live);
        let this = self.clone();
        let (matcher, bytes) = tokio::task::spawn_blocking(move || {
            verify_and_compile(&this.enrolment, &bytes, Some(current), this.age).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| RulesError::Pack(e.to_string()))??;
        let version = matcher.version();
        check_released(version, released)?;
        if version <= live {
            return Err(RulesError::ShadowNotNewer {
                offered: version,
                live,
            });
        }
        self.shadow.set(matcher);
        if let Err(e) =
            crate::identity::write_private(&self.data_dir.join(SHADOW_BUNDLE_FILE), &bytes)
        {
            tracing::warn!(error = %e, "could not keep the shadow bundle on disk");
        }
        tracing::info!(
            shadow = version,
            live,
            "shadow rules running beside the live rules"
        );
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
        let channel =
            pinning::connect_any(&self.enrolment.addresses(), &self.enrolment.fingerprint)
                .await
                .map_err(|e| e.to_string())?;
        let body = SubscribeBody {
            agent_id: self.enrolment.agent_id.clone(),
            current_version: self.current_version(),
            time_ms: crate::session::now_ms(),
            current_shadow_version: self.shadow.version(),
        }
        .encode_to_vec();
        let request = SignedSubscribe {
            signature: self.identity.sign(&tutela_proto::subscribe_message(&body)),
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
                Ok(Some(update)) => match update.update {
                    Some(Update::Bundle(bundle)) if !self.released(&bundle) => {
                        tracing::error!(offered = bundle.version, shadow = bundle.shadow, "rule bundle refused: its release signature does not verify with the collector's bundle key");
                    }
                    Some(Update::Bundle(bundle)) if bundle.shadow => {
                        if let Err(e) = self
                            .apply_shadow_released(bundle.bundle, Some(bundle.version))
                            .await
                        {
                            tracing::error!(offered = bundle.version, error = %e, "shadow rule bundle rejected");
                        }
                    }
                    Some(Update::Bundle(bundle)) if !self.follow_live => {
                        tracing::info!(
                            offered = bundle.version,
                            "a local rule pack is in force; the published bundle is not applied"
                        );
                    }
                    Some(Update::Bundle(bundle)) => {
                        if let Err(e) = self.apply_live(bundle.bundle, Some(bundle.version)).await {
                            tracing::error!(offered = bundle.version, error = %e, "rule bundle rejected");
                        }
                    }
                    Some(Update::Exemptions(signed)) => {
                        if let Err(e) = self.exemptions.accept(signed) {
                            tracing::error!(error = %e, "exemption set refused; the set held stays in force");
                        }
                    }
                    Some(Update::Group(signed)) => {
                        if let Err(e) = self.assigned(&signed) {
                            tracing::error!(error = %e, "group assignment refused; the device stays in its group");
                        }
                    }
                    Some(Update::Notice(signed)) => {
                        if let Some(Err(e)) = self.notices.as_ref().map(|n| n.accept(signed)) {
                            tracing::error!(error = %e, "monitoring notice refused; the notice held stays in force");
                        }
                    }
                    None => {}
                },
                Ok(None) => return Ok(()),
                Err(s) => return Err(s.message().to_owned()),
            }
        }
    }

    /// The encoded heartbeat body, timed by [`HEARTBEAT_CLOCK`].
    fn heartbeat_body(&self) -> Result<Vec<u8>, String> {
        let (shadow_version, shadow_counts) = self.shadow.snapshot();
        let stats = self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
            .map_err(|e| e.to_string())?;
        Ok(HeartbeatBody {
            agent_id: self.enrolment.agent_id.clone(),
            time_ms: HEARTBEAT_CLOCK.next(crate::session::now_ms()),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            rules_version: self.current_version(),
            spool_backlog: stats.backlog,
            spool_dropped: stats.dropped,
            station: crate::session::station_name(),
            shadow_counts,
            shadow_version,
            machine_id: self.host.clone(),
            shadow_run: self.shadow.run_id().to_owned(),
            problems: Vec::new(),
        }
        .encode_to_vec())
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
        let channel =
            pinning::connect_any(&self.enrolment.addresses(), &self.enrolment.fingerprint)
                .await
                .map_err(|e| e.to_string())?;
        let mut client = IngestClient::new(channel);
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            let body = self.heartbeat_body()?;
            let sent = client
                .heartbeat(SignedHeartbeat {
                    signature: self.identity.sign(&tutela_proto::heartbeat_message(&body)),
                    body,
                })
                .await;
            match sent {
                Ok(reply) => break reply.into_inner(),
                Err(s) if attempts == 1 && HEARTBEAT_CLOCK.learn(&s, crate::session::now_ms()) => {}
                Err(s) => return Err(s.message().to_owned()),
            }
        };
        if reply.rekey {
            tracing::warn!(
                "the collector saw this identity on two machines; this station will make a new key"
            );
            self.rekey.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn released(key: &Ed25519KeyPair, bundle: &[u8], version: u32, shadow: bool) -> RuleBundle {
        let sha = crate::event::sha256(bundle);
        RuleBundle {
            bundle: bundle.to_vec(),
            version,
            shadow,
            release_signature: key
                .sign(&tutela_proto::release_message(&sha, version, shadow))
                .as_ref()
                .to_vec(),
        }
    }

    #[test]
    fn heartbeat_times_increase_and_follow_the_collectors_clock_after_a_stale_refusal() {
        let clock = HeartbeatClock::new();
        assert_eq!(clock.next(1_000), 1_000);
        assert_eq!(clock.next(1_000), 1_001, "never the same time twice");
        assert_eq!(clock.next(900), 1_002, "never backwards");
        // A replay refusal teaches nothing; a stale one carries the collector's clock.
        assert!(!clock.learn(&tonic::Status::already_exists("replay"), 2_000));
        let mut stale = tonic::Status::failed_precondition("stale");
        assert!(!clock.learn(&stale, 2_000), "no clock without the metadata");
        stale.metadata_mut().insert(
            tutela_proto::COLLECTOR_TIME_METADATA,
            "86402000".parse().unwrap(),
        );
        assert!(clock.learn(&stale, 2_000));
        assert_eq!(clock.next(3_000), 86_403_000);
        // A station a day ahead is brought back too.
        let ahead = HeartbeatClock::new();
        assert_eq!(ahead.next(86_400_000), 86_400_000);
        let mut stale = tonic::Status::failed_precondition("stale");
        stale.metadata_mut().insert(
            tutela_proto::COLLECTOR_TIME_METADATA,
            "5000".parse().unwrap(),
        );
        assert!(ahead.learn(&stale, 86_400_000));
        assert_eq!(ahead.next(86_401_000), 6_000);
    }

    #[test]
    fn the_role_version_and_bytes_of_a_bundle_are_bound_by_its_release_signature() {
        let rng = ring::rand::SystemRandom::new();
        let key =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                .unwrap();
        let public = key.public_key().as_ref().to_vec();
        let shadow = released(&key, b"bundle", 7, true);
        assert!(release_verifies(&public, &shadow));
        // Made live by flipping the flag: refused.
        let flipped = RuleBundle {
            shadow: false,
            ..shadow.clone()
        };
        assert!(!release_verifies(&public, &flipped));
        let renumbered = RuleBundle {
            version: 8,
            ..shadow.clone()
        };
        assert!(!release_verifies(&public, &renumbered));
        let swapped = RuleBundle {
            bundle: b"other".to_vec(),
            ..shadow.clone()
        };
        assert!(!release_verifies(&public, &swapped));
        let unsigned = RuleBundle {
            release_signature: Vec::new(),
            ..shadow
        };
        assert!(!release_verifies(&public, &unsigned));
        assert_eq!(
            check_released(7, Some(8)).unwrap_err().to_string(),
            "rule bundle rejected: it holds version 7 but was released as version 8"
        );
    }
}
