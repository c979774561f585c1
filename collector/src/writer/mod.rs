//! The single writer: commits verified events in batched transactions and
//! acknowledges each one only after its transaction has committed. The
//! serving collector's other writes (heartbeats, enrolments) run on the same
//! thread and connection, each in a savepoint of the batch's transaction, so
//! they never wait on one another for SQLite's write lock (under load, two
//! writing connections in one process starved each other until one gave up
//! with "database is locked").
//!
//! The writer speaks to the store only through [`store::Tx`]; it runs on a
//! thread of its own with a single-threaded runtime (a PostgreSQL session's
//! connection is driven there). Each batch reads the standing of its agents
//! in its own transaction (locked, on PostgreSQL), so the sequence rules
//! hold when an agent's events reach several collectors sharing a store.
//!
//! Sequence rules, per agent: a sequence number already stored with the same
//! bytes is a duplicate (acknowledged, nothing stored); with other bytes it is
//! a conflict (refused). A jump forward is stored and the skipped range is
//! recorded as a gap. A number below the last stored one that was never
//! stored is out of order (refused).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;
use tutela_proto::v1::{Ack, AckStatus, EventBody};

use crate::store::ingest::AlertRow;
use crate::store::{self, Location, Session, StoreError, Tx};

mod reply;
mod write;

pub use reply::{channel as reply_channel, Replies, Reply};
pub use write::store_failed;
use write::{Delivery, Write};

/// A batch that starts smaller than this waits `LINGER` once for more
/// events (group commit). Every commit rewrites each index page it touched,
/// so under load a transaction per one or two events costs several times
/// more per event than a larger batch; the wait delays acknowledgements by
/// a millisecond and changes nothing else.
const LINGER_BELOW: usize = 64;
const LINGER: Duration = Duration::from_millis(1);
/// How often the writer tries to reach a store it lost.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Most refused streams remembered while their receivers are still open.
const MAX_ENDED: usize = 4096;

/// A verified event on its way to storage.
#[derive(Debug)]
pub struct Verified {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub body_hash: [u8; 32],
    pub event: EventBody,
    /// The capture, already encrypted for storage.
    pub sealed_capture: Option<Vec<u8>>,
    /// The object holding the sealed capture when captures are in object
    /// storage (`sealed_capture` is then empty).
    pub capture_key: Option<String>,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub reply: Reply,
}

enum Outcome {
    Stored,
    Duplicate,
    Refused(Status),
    /// Sent after a refused event on its stream: neither stored nor answered.
    Skipped,
}

/// What a stream hands the writer, in the stream's order.
// Events are nearly every job: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Job {
    Event(Verified),
    /// The stream ends with this refusal, sent after the acknowledgements
    /// of the events before it.
    Refusal(Status, Reply),
    /// Another write, run in the batch's transaction; what it returns is
    /// called once the transaction has ended, with whether it committed.
    /// With the agent whose row it changes, if any.
    Write(Write, Option<String>),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Event(v) => f.debug_tuple("Event").field(v).finish(),
            Job::Refusal(status, _) => f.debug_tuple("Refusal").field(status).finish(),
            Job::Write(..) => f.write_str("Write"),
        }
    }
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on its own session with the store at
    /// `location`; returns once the session is open.
    pub fn start(location: Location, batch_max: usize) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 8);
        let (opened_tx, opened) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tutela-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "the writer's runtime cannot start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Session::open(&location).await {
                        Ok(session) => {
                            let _ = opened_tx.send(Ok(()));
                            run(session, &location, rx, batch_max.max(1)).await;
                        }
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                        }
                    }
                });
            })
            .expect("the writer thread starts");
        match opened.recv() {
            Ok(Ok(())) => Ok(Self { tx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unreachable {
                target: "the store".into(),
                reason: "the writer stopped while opening it".into(),
            }),
        }
    }

    pub async fn submit(&self, event: Verified) -> Result<(), Status> {
        self.tx
            .send(Job::Event(event))
            .await
            .map_err(|_| Status::unavailable("the collector's writer has stopped; retry later"))
    }

    /// Ends a stream with `status`, after the acknowledgements of the events
    /// it submitted before, so the agent learns which of them were stored.
    pub async fn refuse(&self, status: Status, reply: Reply) {
        if let Err(mpsc::error::SendError(Job::Refusal(status, reply))) =
            self.tx.send(Job::Refusal(status, reply)).await
        {
            // The writer has stopped: nothing is coming back from it.
            let _ = reply.send(Err(status));
        }
    }
}

async fn run(
    mut session: Session,
    location: &Location,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
) {
    let mut reconnected = std::time::Instant::now();
    // Streams the writer refused: nothing more of theirs is stored. Kept
    // until the stream is gone (its receiver dropped), at most a few.
    let mut ended: Vec<Reply> = Vec::new();
    let mut batch = Vec::with_capacity(batch_max);
    let drain = |rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>| {
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(v) => batch.push(v),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = rx.recv().await {
        batch.push(first);
        drain(&mut rx, &mut batch);
        if batch.len() < LINGER_BELOW.min(batch_max) {
            tokio::time::sleep(LINGER).await;
            drain(&mut rx, &mut batch);
        }
        if session.is_broken() && reconnected.elapsed() >= RECONNECT_EVERY {
            // The database went away: every batch is refused (agents keep
            // their spools) until a new session opens.
            reconnected = std::time::Instant::now();
            match Session::open(location).await {
                Ok(s) => {
                    session = s;
                    tracing::info!(store = ?location, "the store is reachable again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the store is still unreachable; agents are told to retry");
                }
            }
        }
        let n = batch.len();
        let mut writes: Vec<Write> = Vec::new();
        let mut written: Vec<String> = Vec::new();
        if batch.iter().any(|job| matches!(job, Job::Write(..))) {
            for job in std::mem::take(&mut batch) {
                match job {
                    Job::Write(w, agent) => {
                        writes.push(w);
                        written.extend(agent);
                    }
                    other => batch.push(other),
                }
            }
        }
        let events = batch.iter().filter_map(|job| match job {
            Job::Event(v) => Some(v),
            Job::Refusal(..) | Job::Write(..) => None,
        });
        ended.retain(|r| !r.is_closed());
        if ended.len() > MAX_ENDED {
            ended.drain(..ended.len() - MAX_ENDED);
        }
        let mut deliveries = Vec::with_capacity(writes.len());
        let writes = Writes {
            writes,
            agents: written,
        };
        match commit_batch(&mut session, &mut ended, events, writes, &mut deliveries).await {
            Ok(outcomes) => {
                for deliver in deliveries {
                    deliver(Ok(()));
                }
                acknowledge(batch.drain(..), outcomes);
                tracing::debug!(jobs = n, "batch committed");
            }
            Err(e) => {
                // Nothing acknowledged: the agents will resend.
                tracing::error!(error = %e, jobs = n, "batch failed to commit; agents will resend");
                for deliver in deliveries {
                    deliver(Err(Status::unavailable(
                        "the collector could not commit the change; retry later",
                    )));
                }
                for job in batch.drain(..) {
                    let (status, reply) = match job {
                        Job::Event(v) => (
                            Status::unavailable(
                                "the collector could not store the event; it will be resent",
                            ),
                            v.reply,
                        ),
                        Job::Refusal(status, reply) => (status, reply),
                        Job::Write(..) => continue,
                    };
                    let _ = reply.send(Err(status));
                }
            }
        }
    }
}

/// Sends the batch's acknowledgements. Jobs from one stream arrive in the
/// order sent and events are committed in that order, so one
/// acknowledgement per stream per batch covers every event before it on
/// that stream (see `Ack` in the protocol): the last stored or duplicate one
/// is sent, and a refusal (the writer's own, or one the stream handed in) is
/// sent after the acknowledgement of what preceded it.
fn acknowledge(jobs: impl Iterator<Item = Job>, outcomes: Vec<Outcome>) {
    let mut outcomes = outcomes.into_iter();
    let mut pending: Vec<(Reply, Ack)> = Vec::new();
    // A refusal ends its stream: nothing more is sent on that channel.
    let mut ended: Vec<Reply> = Vec::new();
    for job in jobs {
        let (reply, outcome, ack) = match job {
            Job::Event(v) => {
                let outcome = outcomes.next().unwrap_or_else(|| {
                    Outcome::Refused(Status::internal(
                        "the collector lost track of an event; it will be resent",
                    ))
                });
                let ack = Ack {
                    agent_id: v.event.agent_id,
                    seq: v.event.seq,
                    status: 0,
                };
                (v.reply, outcome, ack)
            }
            Job::Refusal(status, reply) => (reply, Outcome::Refused(status), Ack::default()),
            Job::Write(..) => continue,
        };
        if ended.iter().any(|r| r.same_channel(&reply)) {
            continue;
        }
        let slot = pending.iter().position(|(r, _)| r.same_channel(&reply));
        let status = match outcome {
            Outcome::Skipped => continue,
            Outcome::Stored => AckStatus::Stored,
            Outcome::Duplicate => AckStatus::Duplicate,
            Outcome::Refused(status) => {
                if let Some(i) = slot {
                    let (pending_reply, ack) = pending.swap_remove(i);
                    let _ = pending_reply.send(Ok(ack));
                }
                let _ = reply.send(Err(status));
                ended.push(reply);
                continue;
            }
        };
        let ack = Ack {
            status: status as i32,
            ..ack
        };
        match slot {
            Some(i) => pending[i].1 = ack,
            None => pending.push((reply, ack)),
        }
    }
    for (reply, ack) in pending {
        let _ = reply.send(Ok(ack));
    }
}

/// A batch's other writes, and the agents whose rows they change.
struct Writes {
    writes: Vec<Write>,
    agents: Vec<String>,
}

async fn commit_batch<'a>(
    session: &mut Session,
    ended: &mut Vec<Reply>,
    batch: impl Iterator<Item = &'a Verified> + Clone,
    writes: Writes,
    deliveries: &mut Vec<Delivery>,
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = session.begin().await?;
    // Whether each agent of the batch may store events, and where its chain
    // stands, read in this transaction: a revocation takes effect at once,
    // whatever ingest's key cache still says, and on a shared store another
    // collector's batch for the same agent waits for this one (or this one
    // for it) and then sees what it stored. The rows heartbeats change are
    // locked with them, first and in order, so two collectors' batches never
    // wait on each other in a cycle.
    let mut agent_ids: Vec<&str> = batch
        .clone()
        .map(|v| v.event.agent_id.as_str())
        .chain(writes.agents.iter().map(String::as_str))
        .collect();
    agent_ids.sort_unstable();
    agent_ids.dedup();
    let mut standing = tx.lock_agents(&agent_ids).await?;
    // Other writes next, each in its own savepoint: one failing is undone
    // alone and does not fail the events. (None of them changes what was
    // read above: revocations come from other connections.)
    for write in writes.writes {
        deliveries.push(write(&mut tx).await);
    }
    let mut advanced: Vec<&str> = Vec::new();
    let mut outcomes = Vec::new();
    let mut staged = Staged::default();
    for v in batch {
        let e = &v.event;
        // A refusal ends its stream: the events sent after the refused
        // one are not stored (the agent resends them).
        if v.reply.is_closed() || ended.iter().any(|r| r.same_channel(&v.reply)) {
            outcomes.push(Outcome::Skipped);
            continue;
        }
        let outcome = store_event(&mut tx, &mut standing, &mut staged, v).await?;
        match &outcome {
            Outcome::Refused(_) => ended.push(v.reply.clone()),
            Outcome::Stored if !advanced.contains(&e.agent_id.as_str()) => {
                advanced.push(&e.agent_id)
            }
            _ => {}
        }
        outcomes.push(outcome);
    }
    tx.insert_alerts(&staged.rows).await?;
    let chains: Vec<(&str, u64, [u8; 32])> = advanced
        .into_iter()
        .map(|id| (id, standing[id].last_seq, standing[id].last_hash))
        .collect();
    tx.advance_chains(&chains, store::now_ms()).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The batch's events that passed the sequence rules, inserted together
/// once all are decided (on PostgreSQL, sent at once rather than one round
/// trip each), with their hashes, so that a repeat within the batch is
/// recognised before they are stored.
#[derive(Default)]
struct Staged<'a> {
    rows: Vec<AlertRow<'a>>,
    hashes: HashMap<(&'a str, u64), &'a [u8; 32]>,
}

/// Applies the sequence rules to one event and stages it when they allow.
async fn store_event<'a>(
    tx: &mut Tx<'_>,
    standing: &mut HashMap<String, store::ingest::Standing>,
    staged: &mut Staged<'a>,
    v: &'a Verified,
) -> Result<Outcome, StoreError> {
    let e = &v.event;
    let chain = match standing.get_mut(&e.agent_id) {
        Some(s) if !s.revoked => s,
        _ => {
            tracing::warn!(agent_id = %e.agent_id, seq = e.seq, "refused: the agent is revoked");
            return Ok(Outcome::Refused(crate::ingest::revoked_status(&e.agent_id)));
        }
    };
    if e.seq <= chain.last_seq {
        let stored = match staged.hashes.get(&(e.agent_id.as_str(), e.seq)) {
            Some(h) => Some(h.to_vec()),
            None => tx.stored_body_hash(&e.agent_id, e.seq).await?,
        };
        return Ok(match stored {
            Some(h) if h == v.body_hash => Outcome::Duplicate,
            Some(_) => {
                tracing::warn!(agent_id = %e.agent_id, seq = e.seq, "refused: sequence number reused with different content");
                Outcome::Refused(with_seq(
                    Status::already_exists(format!(
                        "event {} of agent {} is already stored with different content",
                        e.seq, e.agent_id
                    )),
                    e.seq,
                ))
            }
            None => {
                tracing::warn!(agent_id = %e.agent_id, seq = e.seq, last_seq = chain.last_seq, "refused: out-of-order event");
                Outcome::Refused(with_seq(
                    Status::failed_precondition(format!(
                        "event {} arrived after event {}: out of order",
                        e.seq, chain.last_seq
                    )),
                    e.seq,
                ))
            }
        });
    }
    if e.seq > chain.last_seq + 1 {
        tx.insert_gap(&e.agent_id, chain.last_seq + 1, e.seq - 1, v.received_ms)
            .await?;
        tracing::warn!(agent_id = %e.agent_id, from = chain.last_seq + 1, to = e.seq - 1, "sequence gap recorded");
    }
    let chain_ok = e.seq == chain.last_seq + 1 && e.prev_hash == chain.last_hash
        || e.seq > chain.last_seq + 1
        || chain.last_seq == 0;
    if !chain_ok {
        tracing::warn!(agent_id = %e.agent_id, seq = e.seq, "hash chain broken: previous-event hash does not match");
    }
    staged.rows.push(AlertRow {
        event: e,
        body: &v.body,
        signature: &v.signature,
        body_hash: &v.body_hash,
        sealed_capture: v.sealed_capture.as_deref(),
        capture_key: v.capture_key.as_deref(),
        received_ms: v.received_ms,
        clock_skew: v.clock_skew,
        chain_ok,
    });
    staged.hashes.insert((&e.agent_id, e.seq), &v.body_hash);
    chain.last_seq = e.seq;
    chain.last_hash = v.body_hash;
    Ok(Outcome::Stored)
}

/// Attaches the refused event's sequence number so the agent can set it aside.
pub fn with_seq(mut status: Status, seq: u64) -> Status {
    if let Ok(v) = seq.to_string().parse() {
        status
            .metadata_mut()
            .insert(tutela_proto::REJECTED_SEQ_METADATA, v);
    }
    status
}

#[cfg(test)]
mod tests;
