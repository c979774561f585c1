//! Simulated agents for load and concurrency tests: many in one process,
//! each with its own key and pinned TLS connection, enrolling with a
//! technician's token, holding a rules subscription and an event stream
//! open, sending signed, chained events and heartbeats. Everything the
//! collector refused is counted by code and message. With
//! [`Fleet::set_idle_close`] an agent opens its event stream only when an
//! event is due and closes it when idle, as the agent does.
//!
//! Each agent is given every address in the token (the collector and its
//! fallbacks), as a real agent is. When its connection is lost (the
//! collector went away) it connects to the next address that answers and
//! resends the events not yet acknowledged, with their sequence numbers and
//! hash chain unchanged.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tutela_agent::event::{seal, EventDraft};
use tutela_agent::identity::Identity;
use tutela_proto::v1::enrolment_client::EnrolmentClient;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::rules_client::RulesClient;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{
    EnrolRequest, HeartbeatBody, Observation, RuleMatch, SignedEvent, SignedHeartbeat,
    SignedSubscribe, Source, SubscribeBody,
};

mod outbox;
mod stats;
use outbox::{End, Outbox};
use stats::Decrement;

/// How long an agent waits for the collector to end an event stream it
/// ended for idleness.
const IDLE_END_WAIT: Duration = Duration::from_secs(30);
pub use stats::{connection_lost, Stats};

/// How a fleet behaves; see [`Fleet::with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Each agent sends an event this often (changeable later with
    /// [`Fleet::set_event_every`]).
    pub event_every: Duration,
    /// Events each agent sends in all.
    pub events_each: u64,
    /// Agents numbered below this send one event more, so that a total need
    /// not be a multiple of the fleet's size.
    pub one_more_below: usize,
    pub heartbeat_every: Duration,
    /// Agents connecting (TLS, enrolment, subscription) at once.
    pub connecting: usize,
    /// Agent `n` tries address `n % addresses` first instead of the token's
    /// first, as agents enrolled with tokens naming the nodes in turn would,
    /// so that a fleet spreads over every node.
    pub spread: bool,
}

/// What every simulated agent shares.
pub struct Fleet {
    /// The collector's addresses, in the token's order.
    pub addrs: Vec<String>,
    pub fingerprint: String,
    pub token_secret: String,
    pub stats: Stats,
    /// Agents numbered below this stay connected.
    pub population: watch::Receiver<usize>,
    /// How often each agent sends an event; agents follow a change at once.
    event_every: watch::Sender<Duration>,
    /// Events each agent sends together (one write, as an agent sends its
    /// spool after an outage); the interval between sends grows to match.
    batch: AtomicUsize,
    /// Events each agent seals ahead of sending (see [`Fleet::prepare`]).
    prepare: watch::Sender<u64>,
    /// See [`Fleet::set_idle_close`]; in milliseconds, 0 for never.
    idle_close_ms: AtomicU64,
    pub events_each: u64,
    pub one_more_below: usize,
    pub heartbeat_every: Duration,
    pub connecting: Semaphore,
    pub spread: bool,
}

impl Fleet {
    /// A fleet enrolling with `token` (its text) that sends `events_each`
    /// events per agent, one every `event_every`, and a heartbeat every
    /// `heartbeat_every`; `connecting` agents connect at once. Returns it and
    /// its population: agents numbered below it stay connected.
    pub fn new(
        token: &str,
        event_every: Duration,
        events_each: u64,
        heartbeat_every: Duration,
        connecting: usize,
    ) -> (Arc<Self>, watch::Sender<usize>) {
        Self::with(
            token,
            Options {
                event_every,
                events_each,
                one_more_below: 0,
                heartbeat_every,
                connecting,
                spread: false,
            },
        )
    }

    /// A fleet enrolling with `token` (its text) that behaves as `o` says.
    pub fn with(token: &str, o: Options) -> (Arc<Self>, watch::Sender<usize>) {
        let token = tutela_proto::token::EnrolmentToken::decode(token, now_ms())
            .expect("a valid enrolment token");
        let (population, watching) = watch::channel(0usize);
        let mut addrs = vec![token.collector];
        addrs.extend(token.fallbacks);
        let fleet = Self {
            addrs,
            fingerprint: token.fingerprint,
            token_secret: token.secret,
            stats: Stats::default(),
            population: watching,
            event_every: watch::Sender::new(o.event_every),
            batch: AtomicUsize::new(1),
            prepare: watch::Sender::new(0),
            idle_close_ms: AtomicU64::new(0),
            events_each: o.events_each,
            one_more_below: o.one_more_below,
            heartbeat_every: o.heartbeat_every,
            connecting: Semaphore::new(o.connecting),
            spread: o.spread,
        };
        (Arc::new(fleet), population)
    }

    /// How often each agent sends an event.
    pub fn event_every(&self) -> Duration {
        *self.event_every.borrow()
    }

    /// Changes how often each agent sends an event: each agent's next event
    /// comes within the new interval (spread over it), then at the new rate.
    pub fn set_event_every(&self, every: Duration) {
        self.event_every.send_replace(every);
    }

    /// Events each agent sends at once from now on (at least 1): an agent
    /// then sends every `batch` event intervals, `batch` events together,
    /// so the rate stays the same and the messages arrive in one write.
    pub fn set_batch(&self, batch: usize) {
        self.batch.store(batch.max(1), Relaxed);
    }

    /// Asks every agent to seal (sign and chain) its next `events` events
    /// now and hold them, so that a timed phase spends no time signing:
    /// the generator then offers a rate its cores could not sign at.
    /// [`Stats::agents_prepared`] counts the agents that have done so;
    /// reset it before asking. Events sent use the sealed ones first.
    pub fn prepare(&self, events: u64) {
        self.prepare.send_replace(events);
    }

    /// Makes agents close their event stream, as the agent does, once
    /// nothing has waited for an acknowledgement for `idle` (`None`: kept
    /// open, the default), and open it again when an event is due. Agents
    /// follow a change from their next stream on.
    pub fn set_idle_close(&self, idle: Option<Duration>) {
        let ms = idle.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.idle_close_ms.store(ms, Relaxed);
    }

    /// See [`Fleet::set_idle_close`].
    pub fn idle_close(&self) -> Option<Duration> {
        let ms = self.idle_close_ms.load(Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Events agent `n` sends in all.
    pub fn events_for(&self, n: usize) -> u64 {
        self.events_each + u64::from(n < self.one_more_below)
    }

    /// Connects to the first of the addresses that answers, from `start`
    /// on; returns the channel and the address's index. Keeps trying.
    async fn connect_from(&self, start: usize, n: usize) -> (Channel, usize) {
        let count = self.addrs.len();
        loop {
            for i in (0..count).map(|k| (start + k) % count) {
                match tutela_agent::pinning::connect(&self.addrs[i], &self.fingerprint).await {
                    Ok(c) => return (c, i),
                    Err(_) => {
                        self.stats.connect_failures.fetch_add(1, Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1) + jitter(Duration::from_secs(2), n, 1)).await;
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A pseudo-random delay in [0, max), different per agent and call.
fn jitter(max: Duration, n: usize, salt: u64) -> Duration {
    let x = (n as u64 ^ salt.rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_right(29);
    max.mul_f64((x % 10_000) as f64 / 10_000.0)
}

/// Resolves once agent `n` is no longer part of the fleet.
async fn dropped(mut population: watch::Receiver<usize>, n: usize) {
    while *population.borrow_and_update() > n {
        if population.changed().await.is_err() {
            return;
        }
    }
}

/// One simulated agent: connects, enrols, then runs its subscription, event
/// stream and heartbeats until it is dropped from the fleet.
pub async fn agent(fleet: Arc<Fleet>, n: usize) {
    let station = format!("LOAD-PC{n:05}");
    let identity = Arc::new(Identity::generate());
    let permit = fleet.connecting.acquire().await.unwrap();
    let first = if fleet.spread {
        n % fleet.addrs.len()
    } else {
        0
    };
    let (mut channel, mut at) = fleet.connect_from(first, n).await;
    let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof.extend_from_slice(fleet.token_secret.as_bytes());
    let request = EnrolRequest {
        token_secret: fleet.token_secret.clone(),
        public_key: identity.public_key().to_vec(),
        station: station.clone(),
        agent_version: "load".into(),
        proof: identity.sign(&proof),
        machine_id: String::new(),
    };
    let agent_id = loop {
        match EnrolmentClient::new(channel.clone())
            .enrol(request.clone())
            .await
        {
            Ok(r) => break r.into_inner().agent_id,
            Err(status) if connection_lost(&status) => {
                let stats = &fleet.stats;
                stats.connections_lost.fetch_add(1, Relaxed);
                let was = at;
                (channel, at) = fleet.connect_from(at + 1, n).await;
                if at != was {
                    stats.reconnects.fetch_add(1, Relaxed);
                    stats.moved.lock().unwrap().insert(n);
                }
            }
            Err(status) => {
                fleet.stats.enrol_refusals.fetch_add(1, Relaxed);
                fleet.stats.refused("enrol", &status);
                tokio::time::sleep(Duration::from_secs(1) + jitter(Duration::from_secs(2), n, 2))
                    .await;
            }
        }
    };
    fleet.stats.address_of.lock().unwrap().insert(n, at);
    let agent = Arc::new(Agent {
        n,
        agent_id,
        identity,
        machine_id: format!("{:064x}", n as u128 * 0x1_0000_0001 + 7),
        link: Mutex::new(Link {
            channel,
            at,
            generation: 0,
        }),
        reconnecting: tokio::sync::Mutex::new(()),
        rules_version: AtomicU32::new(0),
    });
    let subscribed = tokio::spawn(agent.clone().subscription(fleet.clone()));
    drop(permit);
    let streaming = tokio::spawn(agent.clone().events(fleet.clone()));
    let beating = tokio::spawn(agent.clone().heartbeats(fleet.clone()));
    dropped(fleet.population.clone(), n).await;
    subscribed.abort();
    streaming.abort();
    beating.abort();
    fleet.stats.address_of.lock().unwrap().remove(&n);
}

/// An agent's connection now: the channel, the address it goes to, and how
/// many times it was replaced.
struct Link {
    channel: Channel,
    at: usize,
    generation: u64,
}

struct Agent {
    n: usize,
    agent_id: String,
    identity: Arc<Identity>,
    machine_id: String,
    link: Mutex<Link>,
    /// Held while connecting again, so that the agent's three tasks, which
    /// all see the connection fail, connect once.
    reconnecting: tokio::sync::Mutex<()>,
    rules_version: AtomicU32,
}

impl Agent {
    /// The channel now and its generation.
    fn channel(&self) -> (Channel, u64) {
        let link = self.link.lock().unwrap();
        (link.channel.clone(), link.generation)
    }

    /// The connection of generation `lost` failed: connects to the next
    /// address that answers (unless another task already did).
    async fn reconnect(&self, fleet: &Fleet, lost: u64) {
        let _one = self.reconnecting.lock().await;
        let at = {
            let link = self.link.lock().unwrap();
            if link.generation != lost {
                return;
            }
            link.at
        };
        let stats = &fleet.stats;
        stats.connections_lost.fetch_add(1, Relaxed);
        let (channel, now_at) = fleet.connect_from(at + 1, self.n).await;
        if now_at != at {
            stats.reconnects.fetch_add(1, Relaxed);
            stats.moved.lock().unwrap().insert(self.n);
        }
        stats.address_of.lock().unwrap().insert(self.n, now_at);
        let mut link = self.link.lock().unwrap();
        *link = Link {
            channel,
            at: now_at,
            generation: lost + 1,
        };
    }

    async fn subscription(self: Arc<Self>, fleet: Arc<Fleet>) {
        let stats = &fleet.stats;
        loop {
            let body = SubscribeBody {
                agent_id: self.agent_id.clone(),
                current_version: self.rules_version.load(Relaxed),
                time_ms: now_ms(),
                current_shadow_version: 0,
            }
            .encode_to_vec();
            let signed = SignedSubscribe {
                signature: self.identity.sign(&tutela_proto::subscribe_message(&body)),
                body,
            };
            let (channel, generation) = self.channel();
            match RulesClient::new(channel).subscribe(signed).await {
                Ok(updates) => {
                    let mut updates = updates.into_inner();
                    stats.subscribed.fetch_add(1, Relaxed);
                    let _counted = Decrement(&stats.subscribed);
                    loop {
                        match updates.message().await {
                            Ok(Some(update)) => {
                                if let Some(Update::Bundle(b)) = update.update {
                                    self.rules_version.fetch_max(b.version, Relaxed);
                                    if b.version == stats.fanout_version.load(Relaxed) {
                                        stats.fanout_received.fetch_add(1, Relaxed);
                                        *stats.fanout_last.lock().unwrap() = Some(Instant::now());
                                    }
                                }
                            }
                            Ok(None) => break,
                            Err(status) if connection_lost(&status) => {
                                self.reconnect(&fleet, generation).await;
                                break;
                            }
                            Err(status) => {
                                stats.refused("subscription", &status);
                                break;
                            }
                        }
                    }
                }
                Err(status) if connection_lost(&status) => {
                    self.reconnect(&fleet, generation).await;
                }
                Err(status) => stats.refused("subscribe", &status),
            }
            tokio::time::sleep(Duration::from_secs(1) + jitter(Duration::from_secs(2), self.n, 3))
                .await;
        }
    }

    async fn events(self: Arc<Self>, fleet: Arc<Fleet>) {
        let stats = &fleet.stats;
        let last = fleet.events_for(self.n);
        let mut out = Outbox::default();
        let mut every = fleet.event_every.subscribe();
        let mut prepare = fleet.prepare.subscribe();
        prepare.mark_changed();
        let mut next = tokio::time::Instant::now() + jitter(*every.borrow_and_update(), self.n, 4);
        let mut done = last == 0;
        if done {
            stats.agents_done.fetch_add(1, Relaxed);
        }
        loop {
            let idle_close = fleet.idle_close();
            // Opened on demand, as the agent does: with nothing waiting for
            // an acknowledgement, no stream until an event is due.
            let mut due = false;
            if idle_close.is_some() && out.unacked.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep_until(next), if out.sent_seq < last => due = true,
                    Ok(()) = every.changed() => {
                        let batch = fleet.batch.load(Relaxed) as f64;
                        next = tokio::time::Instant::now()
                            + jitter(every.borrow_and_update().mul_f64(batch), self.n, 7);
                        continue;
                    }
                    Ok(()) = prepare.changed() => {
                        let want = *prepare.borrow_and_update();
                        out.prepare(&self, stats, want, last).await;
                        continue;
                    }
                    else => std::future::pending::<()>().await,
                }
            }
            let (channel, generation) = self.channel();
            let (tx, rx) = mpsc::channel(64);
            let opening = Instant::now();
            // The due event goes with the stream's opening, as the agent's
            // does: opening the stream is part of its acknowledgement time.
            if due {
                let batch = fleet.batch.load(Relaxed) as u64;
                next =
                    (next + every.borrow().mul_f64(batch as f64)).max(tokio::time::Instant::now());
                out.send(&self, &fleet, &tx, batch.min(last - out.sent_seq), opening)
                    .await;
            }
            let opened = IngestClient::new(channel)
                .stream(ReceiverStream::new(rx))
                .await;
            let mut acks = match opened {
                Ok(acks) => acks.into_inner(),
                Err(status) if connection_lost(&status) => {
                    self.reconnect(&fleet, generation).await;
                    continue;
                }
                Err(status) => {
                    stats.refused("stream", &status);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            stats.stream_opens.fetch_add(1, Relaxed);
            stats
                .stream_open_us
                .lock()
                .unwrap()
                .push(opening.elapsed().as_micros().min(u32::MAX as u128) as u32);
            stats.streams_open.fetch_add(1, Relaxed);
            let _open = Decrement(&stats.streams_open);
            if !due {
                stats
                    .events_resent
                    .fetch_add(out.unacked.len() as u64, Relaxed);
                for (_, _, e) in &out.unacked {
                    let _ = tx.send(e.clone()).await;
                }
            }
            // Since when nothing has waited for an acknowledgement.
            let mut quiet_since = tokio::time::Instant::now();
            let far = quiet_since + Duration::from_secs(365 * 86_400);
            let ended = loop {
                let idle_at = idle_close.map_or(far, |idle| quiet_since + idle);
                tokio::select! {
                    _ = tokio::time::sleep_until(next), if out.sent_seq < last => {
                        // Late (the process is busy): at most one send
                        // follows at once, no catching up beyond that.
                        let batch = fleet.batch.load(Relaxed) as u64;
                        let now = tokio::time::Instant::now();
                        next = (next + every.borrow().mul_f64(batch as f64)).max(now);
                        out.send(&self, &fleet, &tx, batch.min(last - out.sent_seq), Instant::now())
                            .await;
                    }
                    _ = tokio::time::sleep_until(idle_at), if idle_close.is_some() && out.unacked.is_empty() => {
                        break End::Idle;
                    }
                    Ok(()) = every.changed() => {
                        let now = tokio::time::Instant::now();
                        let batch = fleet.batch.load(Relaxed) as f64;
                        next = now + jitter(every.borrow_and_update().mul_f64(batch), self.n, 7);
                    }
                    Ok(()) = prepare.changed() => {
                        let want = *prepare.borrow_and_update();
                        out.prepare(&self, stats, want, last).await;
                    }
                    ack = acks.message() => match ack {
                        Ok(Some(ack)) => {
                            out.acknowledged(&ack, stats);
                            quiet_since = tokio::time::Instant::now();
                            if !done && out.sent_seq == last && out.unacked.is_empty() {
                                done = true;
                                stats.agents_done.fetch_add(1, Relaxed);
                            }
                        }
                        Ok(None) => break End::Closed,
                        Err(status) => break End::Failed(status),
                    }
                }
            };
            // Idle: this side ends the stream (everything sent is
            // acknowledged), and the collector ends its side in turn.
            drop(tx);
            let ended = match ended {
                End::Idle => match tokio::time::timeout(IDLE_END_WAIT, acks.message()).await {
                    Ok(Ok(None)) => {
                        stats.idle_closes.fetch_add(1, Relaxed);
                        continue;
                    }
                    Ok(Ok(Some(_))) => End::Closed,
                    Ok(Err(status)) => End::Failed(status),
                    Err(_) => End::Failed(tonic::Status::deadline_exceeded(
                        "the collector did not end an event stream this side ended",
                    )),
                },
                other => other,
            };
            match ended {
                End::Failed(status) if connection_lost(&status) => {
                    self.reconnect(&fleet, generation).await;
                    continue;
                }
                End::Failed(status) => {
                    if status.code() == tonic::Code::Unavailable {
                        stats.commit_failures.fetch_add(1, Relaxed);
                    }
                    stats.refused("events", &status);
                }
                End::Closed | End::Idle => {}
            }
            tokio::time::sleep(Duration::from_secs(1) + jitter(Duration::from_secs(2), self.n, 5))
                .await;
        }
    }

    async fn heartbeats(self: Arc<Self>, fleet: Arc<Fleet>) {
        let stats = &fleet.stats;
        tokio::time::sleep(jitter(fleet.heartbeat_every, self.n, 6)).await;
        let mut tick = tokio::time::interval(fleet.heartbeat_every);
        loop {
            tick.tick().await;
            let body = HeartbeatBody {
                agent_id: self.agent_id.clone(),
                time_ms: now_ms(),
                agent_version: "load".into(),
                rules_version: self.rules_version.load(Relaxed),
                station: format!("LOAD-PC{:05}", self.n),
                machine_id: self.machine_id.clone(),
                ..HeartbeatBody::default()
            }
            .encode_to_vec();
            let signed = SignedHeartbeat {
                signature: self.identity.sign(&tutela_proto::heartbeat_message(&body)),
                body,
            };
            let (channel, generation) = self.channel();
            match IngestClient::new(channel).heartbeat(signed).await {
                Ok(_) => {
                    stats.heartbeats.fetch_add(1, Relaxed);
                }
                Err(status) if connection_lost(&status) => {
                    self.reconnect(&fleet, generation).await;
                }
                Err(status) => {
                    stats.heartbeat_refusals.fetch_add(1, Relaxed);
                    stats.refused("heartbeat", &status);
                }
            }
        }
    }
}

/// An agent's event chain: the last number sealed and its hash.
#[derive(Default)]
struct Chain {
    sealed: u64,
    prev_hash: [u8; 32],
}

impl Chain {
    /// Seals the agent's next event (signed, chained to the one before).
    fn seal(&mut self, agent: &Agent) -> (u64, SignedEvent) {
        self.sealed += 1;
        let sealed = seal(
            &agent.identity,
            &agent.agent_id,
            self.sealed,
            self.prev_hash,
            0,
            draft(agent.n),
        );
        self.prev_hash = sealed.body_hash();
        let event = SignedEvent {
            body: sealed.body,
            signature: sealed.signature,
            capture: sealed.capture,
        };
        (self.sealed, event)
    }
}

fn draft(n: usize) -> EventDraft {
    EventDraft {
        time_ms: now_ms(),
        user: format!("pupil.{n:05}"),
        station: format!("LOAD-PC{n:05}"),
        observation: Observation {
            source: Source::Typed as i32,
            context: "they said they would hurt themselves after school today".into(),
            app: "chromium".into(),
            window_title: "New Tab - Chromium".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "self-harm/hurt-myself".into(),
            category: "self-harm".into(),
            severity: 4,
            term: "hurt themselves".into(),
            start: 14,
            end: 29,
        }],
        evidence: None,
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}
