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

mod heartbeat;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use tokio::sync::Notify;
use tutela_proto::v1::rules_client::RulesClient;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{
    GroupAssignment, RuleBundle, SignedGroupAssignment, SignedSubscribe, SubscribeBody,
};
use tutela_rules::{AgeBand, CompileOptions, Matcher, Pack};

use crate::exemption::Exemptions;
use crate::identity::{Enrolment, Identity};
use crate::link::CollectorLink;
use crate::monitor::LiveRules;
use crate::shadow::{Shadow, SHADOW_BUNDLE_FILE};
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
    /// Verifies and compiles `bytes` off the async threads, newer than
    /// `current` and of the version its release signature names (if any);
    /// returns the matcher and the bytes to keep on disk.
    async fn compile_released(
        &self,
        bytes: Vec<u8>,
        current: u32,
        released: Option<u32>,
    ) -> Result<(Matcher, Vec<u8>), RulesError> {
        let this = self.clone();
        let (matcher, bytes) = tokio::task::spawn_blocking(move || {
            verify_and_compile(&this.enrolment, &bytes, Some(current), this.age).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| RulesError::Pack(e.to_string()))??;
        check_released(matcher.version(), released)?;
        Ok((matcher, bytes))
    }

    async fn apply_live(&self, bytes: Vec<u8>, released: Option<u32>) -> Result<u32, RulesError> {
        let current = self.current_version();
        let (matcher, bytes) = self.compile_released(bytes, current, released).await?;
        let version = matcher.version();
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
        let (matcher, bytes) = self.compile_released(bytes, current, released).await?;
        let version = matcher.version();
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
        let link = self.link();
        loop {
            match self.subscribe_once(&link).await {
                Ok(()) => backoff.reset(),
                Err(e) => tracing::warn!(error = %e, "rule subscription interrupted; will retry"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// This agent's connection to the collector, shared by its parts.
    fn link(&self) -> Arc<CollectorLink> {
        CollectorLink::shared(
            &self.enrolment.agent_id,
            &self.enrolment.addresses(),
            &self.enrolment.fingerprint,
        )
    }

    async fn subscribe_once(&self, link: &CollectorLink) -> Result<(), String> {
        let lease = link.channel().await.map_err(|e| e.to_string())?;
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
        let subscribed = RulesClient::new(lease.channel.clone())
            .max_decoding_message_size(16 * 1024 * 1024)
            .subscribe(request)
            .await;
        let mut stream = match subscribed {
            Ok(stream) => stream.into_inner(),
            Err(s) => {
                link.check(&lease, &s).await;
                return Err(s.message().to_owned());
            }
        };
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
                Err(s) => {
                    link.check(&lease, &s).await;
                    return Err(s.message().to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
