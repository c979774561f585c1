//! `Rules.Subscribe`: what agents should hold (the newest live and shadow
//! bundles and their group's curriculum exemptions), read from the store
//! once per change and shared by every subscriber.
//!
//! One thread reads the store when a publication is made in this process
//! (`nudge`), and otherwise every `POLL` (pushes from the CLI, another
//! process), with cheap queries: a bundle is only fetched, and its release
//! signed, when its version changes. Each subscriber is woken by a
//! `watch` channel and sends the shared, already signed updates: thousands
//! of subscribers cost one store read and one signature per publication, and
//! an exemption set is signed once per group.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use prost::Message;
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tutela_proto::v1::rules_server::Rules;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{ExemptionSet, RulesUpdate, SignedNotice, SignedSubscribe, SubscribeBody};

use crate::exemption::Exemption;
use crate::ingest::AgentKeys;
use crate::publish::{ensure_schema, release};
use crate::store;

/// How often the store is read for changes made by other processes.
const POLL: Duration = Duration::from_millis(250);

/// Publications made in this process since start: the reader waits on it.
static NUDGES: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// Tells the reader that a publication or an exemption change was made in
/// this process, so subscribers hear of it without waiting for the next poll.
pub fn nudge() {
    let (count, changed) = &NUDGES;
    *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    changed.notify_all();
}

/// Waits for a nudge or `timeout`, whichever comes first.
fn wait_for_nudge(seen: &mut u64, timeout: Duration) {
    let (count, changed) = &NUDGES;
    let guard = count.lock().unwrap_or_else(|p| p.into_inner());
    let (guard, _) = changed
        .wait_timeout_while(guard, timeout, |n| *n == *seen)
        .unwrap_or_else(|p| p.into_inner());
    *seen = *guard;
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
    /// Curriculum exemptions not yet ended (every group).
    pub exemptions: Vec<Exemption>,
    /// Revoked agents: their subscriptions end.
    pub revoked: HashSet<String>,
    /// The current monitoring notice of each group that has one, as signed.
    pub notices: Vec<(String, SignedNotice)>,
    /// When this reading was made: the issue time of exemption sets signed from it.
    made_ms: i64,
    /// Each group's exemption set as compared and as sent, signed on first use.
    sets: Mutex<HashMap<String, (ExemptionSet, RulesUpdate)>>,
}

impl Published {
    /// The exemption set an agent of `group` must hold (issue time 0, for
    /// comparing), and the signed update that carries it.
    fn exemptions_for(
        &self,
        group: &str,
        signer: &ring::signature::Ed25519KeyPair,
    ) -> (ExemptionSet, RulesUpdate) {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = sets.get(group) {
            return found.clone();
        }
        let set = ExemptionSet {
            exemptions: self
                .exemptions
                .iter()
                .filter(|e| !group.is_empty() && e.grp == group)
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
        sets.insert(group.to_owned(), (set.clone(), update.clone()));
        (set, update)
    }

    /// The signed notice an agent of `group` must show, if its group has one.
    fn notice_for(&self, group: &str) -> Option<&SignedNotice> {
        self.notices
            .iter()
            .find(|(g, _)| !group.is_empty() && g == group)
            .map(|(_, n)| n)
    }
}

/// What the reader compares to tell whether anything changed.
#[derive(Debug, PartialEq)]
struct Versions {
    live: Option<u32>,
    shadow: Option<u32>,
    exemptions: Vec<Exemption>,
    revoked: HashSet<String>,
    notices: Vec<(String, SignedNotice)>,
}

fn read_versions(conn: &Connection) -> rusqlite::Result<Versions> {
    // One read transaction: a revocation committed before a publication is
    // seen with it.
    let tx = conn.unchecked_transaction()?;
    let newest = |shadow: bool| -> rusqlite::Result<Option<u32>> {
        tx.query_row(
            "SELECT MAX(version) FROM rule_bundles WHERE shadow = ?1",
            [shadow],
            |r| r.get(0),
        )
    };
    let mut revoked = HashSet::new();
    {
        let mut stmt = tx.prepare_cached("SELECT agent_id FROM agents WHERE revoked = 1")?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            revoked.insert(id?);
        }
    }
    let versions = Versions {
        live: newest(false)?,
        shadow: newest(true)?,
        exemptions: crate::exemption::pending(&tx, store::now_ms())?,
        revoked,
        notices: crate::notice::current_all(&tx)?
            .into_iter()
            .map(|n| (n.grp, n.signed))
            .collect(),
    };
    tx.finish()?;
    Ok(versions)
}

/// The bundle of `version`, release-signed.
fn read_release(
    conn: &Connection,
    signer: &ring::signature::Ed25519KeyPair,
    version: Option<u32>,
    shadow: bool,
    current: Option<&Release>,
) -> rusqlite::Result<Option<Release>> {
    let Some(version) = version else {
        return Ok(None);
    };
    if let Some(current) = current.filter(|c| c.version == version) {
        return Ok(Some(current.clone()));
    }
    let bundle: Option<Vec<u8>> = conn
        .query_row(
            "SELECT bundle FROM rule_bundles WHERE shadow = ?1 AND version = ?2",
            rusqlite::params![shadow, version],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bundle.map(|bundle| Release {
        version,
        update: RulesUpdate {
            update: Some(Update::Bundle(release(signer, &bundle, version, shadow))),
        },
    }))
}

/// What agents should hold at `versions`, reusing `current`'s signed
/// bundles where their versions are unchanged.
fn reading(
    conn: &Connection,
    signer: &ring::signature::Ed25519KeyPair,
    versions: &Versions,
    current: &Published,
) -> rusqlite::Result<Published> {
    Ok(Published {
        live: read_release(conn, signer, versions.live, false, current.live.as_ref())?,
        shadow: read_release(conn, signer, versions.shadow, true, current.shadow.as_ref())?,
        exemptions: versions.exemptions.clone(),
        revoked: versions.revoked.clone(),
        notices: versions.notices.clone(),
        made_ms: store::now_ms(),
        sets: Mutex::new(HashMap::new()),
    })
}

/// Reads what agents should hold and, on every change, tells every subscriber.
pub fn watch_publications(
    dir: &Path,
    signer: Arc<ring::signature::Ed25519KeyPair>,
) -> rusqlite::Result<watch::Receiver<Arc<Published>>> {
    let conn = store::open(dir)?;
    ensure_schema(&conn)?;
    crate::notice::ensure_schema(&conn)?;
    let mut versions = read_versions(&conn)?;
    let first = reading(&conn, &signer, &versions, &Published::default())?;
    let (tx, rx) = watch::channel(Arc::new(first));
    std::thread::Builder::new()
        .name("tutela-publications".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                wait_for_nudge(&mut seen, POLL);
                if tx.is_closed() {
                    return;
                }
                let changed = read_versions(&conn).and_then(|now| {
                    if now == versions {
                        return Ok(None);
                    }
                    let current = tx.borrow().clone();
                    let published = reading(&conn, &signer, &now, &current)?;
                    Ok(Some((now, published)))
                });
                match changed {
                    Ok(None) => {}
                    Ok(Some((now, published))) => {
                        versions = now;
                        tracing::info!(
                            live = versions.live.unwrap_or(0),
                            shadow = versions.shadow.unwrap_or(0),
                            subscribers = tx.receiver_count().saturating_sub(1),
                            "publication read once for every subscriber"
                        );
                        if tx.send(Arc::new(published)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read published rule bundles"),
                }
            }
        })
        .expect("the publications thread starts");
    Ok(rx)
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
    pub fn open(
        dir: &Path,
        keys: Arc<AgentKeys>,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let signer = Arc::new(
            crate::secrets::load_signing_key(dir)
                .map_err(|e| anyhow::anyhow!("loading the rule-signing key: {e}"))?,
        );
        Ok(Self {
            keys,
            published: watch_publications(dir, signer.clone())?,
            signer,
            stopping,
        })
    }

    /// The subscriber's group, if it is enrolled and not revoked (read from
    /// the store, not a cache).
    async fn group_of(&self, agent_id: &str) -> Result<String, Status> {
        let row = self.keys.store().agent_key(agent_id).await.map_err(|e| {
            tracing::error!(error = %e, "agent group lookup failed");
            Status::unavailable("the collector cannot read its agent list; retry later")
        })?;
        match row {
            Some(a) if !a.revoked => Ok(a.group),
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
        let group = self.group_of(&body.agent_id).await?;
        tracing::debug!(agent_id = %body.agent_id, "agent subscribed to rule updates");
        let subscriber = Subscriber {
            agent_id: body.agent_id,
            group,
            sent_live: body.current_version,
            sent_shadow: body.current_shadow_version,
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
    sent_live: u32,
    sent_shadow: u32,
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
        // The whole set on connect and whenever this group's set changes.
        let (set, update) = now.exemptions_for(&self.group, &self.signer);
        if self.sent_exemptions.as_ref() != Some(&set) {
            self.sent_exemptions = Some(set);
            self.waiting.push_back(Ok(update));
        }
        // The group's notice on connect and after every new version.
        if let Some(notice) = now.notice_for(&self.group) {
            if self.sent_notice.as_ref() != Some(notice) {
                self.sent_notice = Some(notice.clone());
                self.waiting.push_back(Ok(RulesUpdate {
                    update: Some(Update::Notice(notice.clone())),
                }));
            }
        }
    }
}
