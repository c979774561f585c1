//! `Rules.Subscribe`: what agents should hold (the newest live and shadow
//! bundles and their group's curriculum exemptions and notice), read from
//! the store once per change and shared by every subscriber.
//!
//! One task reads the store when a change is made in this process
//! (`nudge`), when another collector announces one (PostgreSQL: a `LISTEN`
//! on a connection of its own, reconnected when it drops), and otherwise
//! every `POLL` (SQLite: pushes from the CLI, another process) or
//! `CATCH_UP` (PostgreSQL: a notification missed while the listening
//! connection was down), with cheap queries: a bundle is only fetched, and
//! its release signed, when its version changes. Each subscriber is woken
//! by a `watch` channel and sends the shared, already signed updates:
//! thousands of subscribers cost one store read and one signature per
//! publication, and an exemption set is signed once per group.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tutela_proto::v1::rules_server::Rules;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{ExemptionSet, RulesUpdate, SignedNotice, SignedSubscribe, SubscribeBody};

use crate::exemption::Exemption;
use crate::ingest::AgentKeys;
use crate::publish::release;
use crate::store::publication::PublicationState;
use crate::store::{self, Store, StoreError};

/// How often the embedded store is read for changes made by other processes.
const POLL: Duration = Duration::from_millis(250);
/// How often a shared store is read whatever the notifications say: a bound
/// on how late a change is heard when a notification is missed.
const CATCH_UP: Duration = Duration::from_secs(3);

/// Changes made in this process since start: every reader watches it.
fn nudges() -> &'static watch::Sender<u64> {
    static NUDGES: OnceLock<watch::Sender<u64>> = OnceLock::new();
    NUDGES.get_or_init(|| watch::channel(0).0)
}

/// Tells the reader that a publication, an exemption change or a notice was
/// made in this process, so subscribers hear of it without waiting for the
/// next poll.
pub fn nudge() {
    nudges().send_modify(|n| *n += 1);
}

/// A bundle as agents receive it, release-signed once for everyone.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: u32,
    pub update: RulesUpdate,
}

/// One reading of what agents should hold, shared by every subscriber.
#[derive(Debug, Default)]
pub struct Published {
    pub live: Option<Release>,
    pub shadow: Option<Release>,
    /// Curriculum exemptions not yet ended (every group and school).
    pub exemptions: Vec<Exemption>,
    /// Revoked agents: their subscriptions end.
    pub revoked: HashSet<String>,
    /// The current monitoring notice of each (group, school) that has one,
    /// as signed: (group, school ('': the trust's), notice).
    pub notices: Vec<(String, String, SignedNotice)>,
    /// Agents moved to another group or school, with (group, school).
    pub moves: HashMap<String, (String, String)>,
    /// When this reading was made: the issue time of exemption sets signed from it.
    made_ms: i64,
    /// Each (school, group)'s exemption set as compared and as sent, signed
    /// on first use.
    sets: Mutex<HashMap<(String, String), (ExemptionSet, RulesUpdate)>>,
}

impl Published {
    /// The exemption set an agent of `group` at `school` must hold (the
    /// trust-wide ones and its school's; issue time 0, for comparing), and
    /// the signed update that carries it.
    fn exemptions_for(
        &self,
        group: &str,
        school: &str,
        signer: &ring::signature::Ed25519KeyPair,
    ) -> (ExemptionSet, RulesUpdate) {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (school.to_owned(), group.to_owned());
        if let Some(found) = sets.get(&key) {
            return found.clone();
        }
        let set = ExemptionSet {
            exemptions: self
                .exemptions
                .iter()
                .filter(|e| !group.is_empty() && e.grp == group)
                .filter(|e| e.school.is_empty() || e.school == school)
                .map(|e| e.to_wire())
                .collect(),
            group: group.to_owned(),
            issued_ms: 0,
        };
        let update = RulesUpdate {
            update: Some(Update::Exemptions(crate::exemption::sign_set_at(
                signer,
                set.clone(),
                self.made_ms,
            ))),
        };
        sets.insert(key, (set.clone(), update.clone()));
        (set, update)
    }

    /// The signed notice an agent of `group` at `school` must show, if its
    /// group has one: its school's, else the trust's.
    fn notice_for(&self, group: &str, school: &str) -> Option<&SignedNotice> {
        let of = |s: &str| {
            self.notices
                .iter()
                .find(|(g, at, _)| !group.is_empty() && g == group && at == s)
                .map(|(_, _, n)| n)
        };
        of(school).or_else(|| of(""))
    }
}

/// The bundle of `version`, release-signed.
async fn read_release(
    store: &Store,
    signer: &ring::signature::Ed25519KeyPair,
    version: Option<u32>,
    shadow: bool,
    current: Option<&Release>,
) -> Result<Option<Release>, StoreError> {
    let Some(version) = version else {
        return Ok(None);
    };
    if let Some(current) = current.filter(|c| c.version == version) {
        return Ok(Some(current.clone()));
    }
    let bundle = store.bundle(shadow, version).await?;
    Ok(bundle.map(|bundle| Release {
        version,
        update: RulesUpdate {
            update: Some(Update::Bundle(release(signer, &bundle, version, shadow))),
        },
    }))
}

/// What agents should hold at `state`, reusing `current`'s signed bundles
/// where their versions are unchanged.
async fn reading(
    store: &Store,
    signer: &ring::signature::Ed25519KeyPair,
    state: &PublicationState,
    current: &Published,
) -> Result<Published, StoreError> {
    Ok(Published {
        live: read_release(store, signer, state.live, false, current.live.as_ref()).await?,
        shadow: read_release(store, signer, state.shadow, true, current.shadow.as_ref()).await?,
        exemptions: state.exemptions.clone(),
        revoked: state.revoked.clone(),
        notices: state.notices.clone(),
        moves: state.moves.clone(),
        made_ms: store::now_ms(),
        sets: Mutex::new(HashMap::new()),
    })
}

/// Reads what agents should hold and, on every change, tells every
/// subscriber. The reading task runs on the current runtime until every
/// receiver is gone.
pub async fn watch_publications(
    store: Store,
    signer: Arc<ring::signature::Ed25519KeyPair>,
) -> Result<watch::Receiver<Arc<Published>>, StoreError> {
    let mut state = store.publication_state(store::now_ms()).await?;
    let first = reading(&store, &signer, &state, &Published::default()).await?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let mut local = nudges().subscribe();
    // Announcements from other collectors (none on the embedded store).
    let mut remote = store.announcements();
    let every = if remote.is_some() { CATCH_UP } else { POLL };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = local.changed() => "this collector",
                _ = announced(&mut remote) => "another collector",
                _ = ticks.tick() => "catch-up",
                () = tx.closed() => return,
            };
            let changed = match store.publication_state(store::now_ms()).await {
                Ok(now) if now == state => continue,
                Ok(now) => {
                    let current = tx.borrow().clone();
                    reading(&store, &signer, &now, &current)
                        .await
                        .map(|published| (now, published))
                }
                Err(e) => Err(e),
            };
            match changed {
                Ok((now, published)) => {
                    state = now;
                    tracing::info!(
                        live = state.live.unwrap_or(0),
                        shadow = state.shadow.unwrap_or(0),
                        subscribers = tx.receiver_count().saturating_sub(1),
                        found_by = why,
                        "publication read once for every subscriber"
                    );
                    if tx.send(Arc::new(published)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read published rule bundles"),
            }
        }
    });
    Ok(rx)
}

/// Waits for another collector's announcement (forever when there are none).
async fn announced(remote: &mut Option<watch::Receiver<u64>>) {
    match remote {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The listener stopped (the runtime is ending): poll only.
                *remote = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Signs `agent_id`'s assignment to `group` with the rule-bundle key, over
/// `GROUP_DOMAIN || body`.
fn sign_assignment(
    signer: &ring::signature::Ed25519KeyPair,
    agent_id: &str,
    group: &str,
) -> tutela_proto::v1::SignedGroupAssignment {
    let body = tutela_proto::v1::GroupAssignment {
        agent_id: agent_id.to_owned(),
        group: group.to_owned(),
        issued_ms: store::now_ms(),
    }
    .encode_to_vec();
    tutela_proto::v1::SignedGroupAssignment {
        signature: signer
            .sign(&tutela_proto::group_message(&body))
            .as_ref()
            .to_vec(),
        body,
    }
}

#[derive(Debug, Clone)]
pub struct RulesService {
    pub keys: Arc<AgentKeys>,
    pub published: watch::Receiver<Arc<Published>>,
    /// The rule-bundle key, which also signs exemption sets.
    pub signer: Arc<ring::signature::Ed25519KeyPair>,
    /// Becomes true when the collector begins to stop: open streams then end
    /// with `UNAVAILABLE` so their agents subscribe again (elsewhere, or later).
    pub stopping: watch::Receiver<bool>,
}

impl RulesService {
    /// Serves what `keys`' store holds, signed with the data directory's key.
    pub async fn open(
        dir: &Path,
        keys: Arc<AgentKeys>,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let signer = Arc::new(
            crate::secrets::load_signing_key(dir)
                .map_err(|e| anyhow::anyhow!("loading the rule-signing key: {e}"))?,
        );
        let published = watch_publications(keys.store().clone(), signer.clone())
            .await
            .map_err(|e| anyhow::anyhow!("reading the published rules: {e}"))?;
        Ok(Self {
            keys,
            published,
            signer,
            stopping,
        })
    }

    /// The subscriber's group and school, if it is enrolled and not revoked
    /// (read from the store, not a cache).
    async fn group_of(&self, agent_id: &str) -> Result<(String, String), Status> {
        let row = self.keys.store().agent_key(agent_id).await.map_err(|e| {
            tracing::error!(error = %e, "agent group lookup failed");
            Status::unavailable("the collector cannot read its agent list; retry later")
        })?;
        match row {
            Some(a) if !a.revoked => Ok((a.group, a.school)),
            Some(_) => Err(crate::ingest::revoked_status(agent_id)),
            None => Err(Status::permission_denied(format!(
                "agent {agent_id} is no longer enrolled; enrol the device with a token from a technician"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Rules for RulesService {
    type SubscribeStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<RulesUpdate, Status>> + Send + 'static>>;

    async fn subscribe(
        &self,
        request: Request<SignedSubscribe>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let signed = request.into_inner();
        if signed.body.len() > tutela_proto::limits::MAX_SUBSCRIBE_BYTES {
            return Err(Status::resource_exhausted(format!(
                "subscription of {} bytes exceeds the limit of {} bytes",
                signed.body.len(),
                tutela_proto::limits::MAX_SUBSCRIBE_BYTES
            )));
        }
        let body = SubscribeBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.SubscribeBody"))?;
        let key =
            self.keys.get(&body.agent_id).await?.ok_or_else(|| {
                Status::not_found(format!("agent {} is not enrolled", body.agent_id))
            })?;
        if key.revoked {
            return Err(crate::ingest::revoked_status(&body.agent_id));
        }
        let key = key.usable(&body.agent_id)?;
        let message = tutela_proto::subscribe_message(&signed.body);
        if !crate::signature::verify(key, &message, &signed.signature) {
            return Err(Status::unauthenticated(format!(
                "the subscription's signature does not verify against agent {}'s enrolled key{}",
                body.agent_id,
                crate::ingest::protocol_1_hint(key, &signed.body, &signed.signature)
            )));
        }
        let (group, school) = self.group_of(&body.agent_id).await?;
        tracing::debug!(agent_id = %body.agent_id, "agent subscribed to rule updates");
        let subscriber = Subscriber {
            agent_id: body.agent_id,
            group,
            school,
            sent_live: body.current_version,
            sent_shadow: body.current_shadow_version,
            sent_group: None,
            sent_exemptions: None,
            sent_notice: None,
            published: self.published.clone(),
            signer: self.signer.clone(),
            stopping: self.stopping.clone(),
            waiting: VecDeque::new(),
            connected: true,
            ended: false,
        };
        // A stream, not a task and a channel: thousands of subscribers
        // each cost only this state while they wait.
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            subscriber,
            Subscriber::next,
        ))))
    }
}

/// One subscribed agent, what it has been sent, and what waits to be sent.
struct Subscriber {
    agent_id: String,
    group: String,
    school: String,
    sent_live: u32,
    sent_shadow: u32,
    /// The group assignment sent (agents a technician moved are sent one on
    /// connect and after every move).
    sent_group: Option<String>,
    sent_exemptions: Option<ExemptionSet>,
    sent_notice: Option<SignedNotice>,
    published: watch::Receiver<Arc<Published>>,
    signer: Arc<ring::signature::Ed25519KeyPair>,
    stopping: watch::Receiver<bool>,
    waiting: VecDeque<Result<RulesUpdate, Status>>,
    /// Just connected: what it lacks is sent without waiting for a change.
    connected: bool,
    ended: bool,
}

impl Subscriber {
    /// The next update for this agent: what it lacks on connect, then after
    /// every change, until it is revoked (or the collector stops).
    async fn next(mut self) -> Option<(Result<RulesUpdate, Status>, Self)> {
        loop {
            if let Some(update) = self.waiting.pop_front() {
                if self.waiting.is_empty() {
                    // Sent all: the queue's room goes too, so an idle
                    // subscriber holds none between changes.
                    self.waiting = VecDeque::new();
                }
                return Some((update, self));
            }
            if self.ended {
                return None;
            }
            if *self.stopping.borrow() {
                self.stop();
                continue;
            }
            if !std::mem::take(&mut self.connected) {
                let stopping = tokio::select! {
                    changed = self.published.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        false
                    }
                    _ = self.stopping.wait_for(|stopping| *stopping) => true,
                };
                if stopping {
                    self.stop();
                    continue;
                }
            }
            let now = self.published.borrow_and_update().clone();
            self.queue_changes(&now);
        }
    }

    /// The collector is stopping: the stream ends with `UNAVAILABLE`, which
    /// tells the agent to subscribe again, rather than with a clean end or a
    /// reset connection that says nothing.
    fn stop(&mut self) {
        tracing::debug!(agent_id = %self.agent_id, "rule stream ended: the collector is stopping");
        self.waiting.push_back(Err(Status::unavailable(
            "the collector is stopping; subscribe again shortly",
        )));
        self.ended = true;
    }

    /// Queues what `now` holds that this agent has not been sent.
    fn queue_changes(&mut self, now: &Published) {
        // Revocation takes effect on an open stream too, before anything
        // more is sent.
        if now.revoked.contains(&self.agent_id) {
            tracing::warn!(agent_id = %self.agent_id, "rule stream ended: the agent was revoked");
            self.waiting
                .push_back(Err(crate::ingest::revoked_status(&self.agent_id)));
            self.ended = true;
            return;
        }
        if let Some(live) = now.live.as_ref().filter(|r| r.version > self.sent_live) {
            self.sent_live = live.version;
            self.waiting.push_back(Ok(live.update.clone()));
        }
        if let Some(shadow) = now
            .shadow
            .as_ref()
            .filter(|r| r.version > self.sent_shadow && r.version > self.sent_live)
        {
            self.sent_shadow = shadow.version;
            self.waiting.push_back(Ok(shadow.update.clone()));
        }
        // A moved agent learns its group first, then that group's set and notice.
        if let Some((group, school)) = now.moves.get(&self.agent_id) {
            if *school != self.school {
                tracing::info!(agent_id = %self.agent_id, from = %self.school, to = %school, "agent moved to another school; sending it the new school's exemptions and notice");
                self.school = school.clone();
                self.sent_exemptions = None;
                self.sent_notice = None;
            }
            if self.sent_group.as_ref() != Some(group) {
                if *group != self.group {
                    tracing::info!(agent_id = %self.agent_id, from = %self.group, to = %group, "agent moved to another group; sending it the new group's exemptions and notice");
                    self.group = group.clone();
                    self.sent_exemptions = None;
                    self.sent_notice = None;
                }
                self.sent_group = Some(group.clone());
                self.waiting.push_back(Ok(RulesUpdate {
                    update: Some(Update::Group(sign_assignment(
                        &self.signer,
                        &self.agent_id,
                        group,
                    ))),
                }));
            }
        }
        // The whole set on connect and whenever this group's set changes.
        let (set, update) = now.exemptions_for(&self.group, &self.school, &self.signer);
        if self.sent_exemptions.as_ref() != Some(&set) {
            self.sent_exemptions = Some(set);
            self.waiting.push_back(Ok(update));
        }
        // The group's notice on connect and after every new version.
        if let Some(notice) = now.notice_for(&self.group, &self.school) {
            if self.sent_notice.as_ref() != Some(notice) {
                self.sent_notice = Some(notice.clone());
                self.waiting.push_back(Ok(RulesUpdate {
                    update: Some(Update::Notice(notice.clone())),
                }));
            }
        }
    }
}
