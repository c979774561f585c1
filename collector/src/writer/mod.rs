//! The single writer: commits verified events in batched transactions and
//! acknowledges each one only after its transaction has committed. The
//! serving collector's other writes (heartbeats, enrolments) run on the same
//! thread and connection, each in a savepoint of the batch's transaction, so
//! they never wait on one another for SQLite's write lock (under load, two
//! writing connections in one process starved each other until one gave up
//! with "database is locked").
//!
//! Sequence rules, per agent: a sequence number already stored with the same
//! bytes is a duplicate (acknowledged, nothing stored); with other bytes it is
//! a conflict (refused). A jump forward is stored and the skipped range is
//! recorded as a gap. A number below the last stored one that was never
//! stored is out of order (refused).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::mpsc;
use tonic::Status;
use tutela_proto::v1::{Ack, AckStatus, EventBody};

use crate::store;

mod write;

pub use write::store_failed;
use write::{Delivery, Write};

/// Page cache of the writer's connection, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// A batch that starts smaller than this waits `LINGER` once for more
/// events (group commit). Every commit rewrites each index page it touched,
/// so under load a transaction per one or two events costs several times
/// more per event than a larger batch; the wait delays acknowledgements by
/// a millisecond and changes nothing else.
const LINGER_BELOW: usize = 64;
const LINGER: Duration = Duration::from_millis(1);
/// Most refused streams remembered while their receivers are still open.
const MAX_ENDED: usize = 4096;

/// How many times a batch tries to take the write lock (each try waits up
/// to `BUSY_WAIT`) while another process writes: about 9 s in all, so an
/// agent hears `UNAVAILABLE` (and retries) well inside its call deadline.
const BEGIN_TRIES: u32 = 3;
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// A verified event on its way to storage.
#[derive(Debug)]
pub struct Verified {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub body_hash: [u8; 32],
    pub event: EventBody,
    /// The capture, already encrypted for storage.
    pub sealed_capture: Option<Vec<u8>>,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub reply: Reply,
}

#[derive(Debug, Clone, Copy)]
struct AgentChain {
    last_seq: u64,
    last_hash: [u8; 32],
    dirty: bool,
}

enum Outcome {
    Stored,
    Duplicate,
    Refused(Status),
    /// Sent after a refused event on its stream: neither stored nor answered.
    Skipped,
}

/// Where a stream's acknowledgements and refusal go.
pub type Reply = mpsc::UnboundedSender<Result<Ack, Status>>;

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
    Write(Write),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Event(v) => f.debug_tuple("Event").field(v).finish(),
            Job::Refusal(status, _) => f.debug_tuple("Refusal").field(status).finish(),
            Job::Write(_) => f.write_str("Write"),
        }
    }
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on its own connection to the store in `dir`.
    pub fn start(dir: PathBuf, batch_max: usize) -> Result<Self, rusqlite::Error> {
        let conn = store::open(&dir)?;
        conn.busy_timeout(BUSY_WAIT)?;
        // This connection writes nearly everything: a bigger page cache keeps
        // the indexes' pages in memory instead of re-reading them and
        // spilling mid-batch.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 8);
        std::thread::Builder::new()
            .name("tutela-writer".into())
            .spawn(move || run(conn, rx, batch_max.max(1)))
            .expect("the writer thread starts");
        Ok(Self { tx })
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

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, batch_max: usize) {
    let mut chains: HashMap<String, AgentChain> = HashMap::new();
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
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        drain(&mut rx, &mut batch);
        if batch.len() < LINGER_BELOW.min(batch_max) {
            std::thread::sleep(LINGER);
            drain(&mut rx, &mut batch);
        }
        let n = batch.len();
        let mut writes: Vec<Write> = Vec::new();
        if batch.iter().any(|job| matches!(job, Job::Write(_))) {
            for job in std::mem::take(&mut batch) {
                match job {
                    Job::Write(w) => writes.push(w),
                    other => batch.push(other),
                }
            }
        }
        let events = batch.iter().filter_map(|job| match job {
            Job::Event(v) => Some(v),
            Job::Refusal(..) | Job::Write(_) => None,
        });
        ended.retain(|r| !r.is_closed());
        if ended.len() > MAX_ENDED {
            ended.drain(..ended.len() - MAX_ENDED);
        }
        let mut deliveries = Vec::with_capacity(writes.len());
        match commit_batch(
            &mut conn,
            &mut chains,
            &mut ended,
            events,
            writes,
            &mut deliveries,
        ) {
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
                chains.clear();
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
                        Job::Write(_) => continue,
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
            Job::Write(_) => continue,
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

fn load_chain(conn: &Connection, agent_id: &str) -> rusqlite::Result<AgentChain> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT last_seq, last_hash FROM agents WHERE agent_id = ?1",
            [agent_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (last_seq, last_hash) = row.unwrap_or((0, None));
    Ok(AgentChain {
        last_seq: last_seq as u64,
        last_hash: last_hash
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .unwrap_or([0; 32]),
        dirty: false,
    })
}

/// Begins the batch's transaction. Immediate: the batch holds the write
/// lock from its first read, so a revocation commits either before it (and
/// is seen below) or after it, and nothing read can go stale before the
/// batch writes. Another process (the CLI) may hold the lock: each try waits
/// the busy timeout.
fn begin(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    let mut tries = 0;
    loop {
        tries += 1;
        match rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => return Ok(tx),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < BEGIN_TRIES =>
            {
                tracing::warn!(error = %e, tries, "the store is busy with another writer; trying again");
            }
            Err(e) => return Err(e),
        }
    }
}

fn commit_batch<'a>(
    conn: &mut Connection,
    chains: &mut HashMap<String, AgentChain>,
    ended: &mut Vec<Reply>,
    batch: impl Iterator<Item = &'a Verified>,
    writes: Vec<Write>,
    deliveries: &mut Vec<Delivery>,
) -> rusqlite::Result<Vec<Outcome>> {
    let tx = begin(conn)?;
    // Other writes first, each in its own savepoint: one failing is undone
    // alone and does not fail the events.
    for write in writes {
        deliveries.push(write(&tx));
    }
    let mut outcomes = Vec::new();
    // Whether each agent of the batch may store events, read in this
    // transaction: a revocation takes effect at once, whatever ingest's key
    // cache still says.
    let mut standing: HashMap<String, bool> = HashMap::new();
    // Chains advance in place; if the transaction fails, the caller forgets
    // them all and they are reloaded from the store.
    let staged = chains;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, clock_skew, chain_ok,
                user, station, source, context, app, app_path, window_title, url, search_query,
                category, severity, rule_id, term, matches, rules_version, repeat_count, has_capture,
                body, signature, body_hash, state, repeat_of, signed_as)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
        )?;
        let mut existing =
            tx.prepare_cached("SELECT body_hash FROM alerts WHERE agent_id = ?1 AND seq = ?2")?;
        let mut insert_capture = tx.prepare_cached(
            "INSERT INTO captures (alert_id, sha256, size, width, height, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut fold = tx.prepare_cached(
            "UPDATE alerts SET repeat_count = repeat_count + ?3 WHERE agent_id = ?1 AND event_id = ?2 AND repeat_of = ''",
        )?;
        let mut insert_gap = tx.prepare_cached(
            "INSERT INTO gaps (agent_id, from_seq, to_seq, detected_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut revoked_of = tx.prepare_cached("SELECT revoked FROM agents WHERE agent_id = ?1")?;
        for v in batch {
            let e = &v.event;
            // A refusal ends its stream: the events sent after the refused
            // one are not stored (the agent resends them).
            if v.reply.is_closed() || ended.iter().any(|r| r.same_channel(&v.reply)) {
                outcomes.push(Outcome::Skipped);
                continue;
            }
            let allowed = match standing.get(&e.agent_id) {
                Some(allowed) => *allowed,
                None => {
                    let revoked: Option<bool> = revoked_of
                        .query_row([&e.agent_id], |r| r.get(0))
                        .optional()?;
                    let allowed = revoked == Some(false);
                    standing.insert(e.agent_id.clone(), allowed);
                    allowed
                }
            };
            if !allowed {
                tracing::warn!(agent_id = %e.agent_id, seq = e.seq, "refused: the agent is revoked");
                outcomes.push(Outcome::Refused(crate::ingest::revoked_status(&e.agent_id)));
                ended.push(v.reply.clone());
                continue;
            }
            let chain = match staged.get_mut(&e.agent_id) {
                Some(c) => c,
                None => {
                    let c = load_chain(&tx, &e.agent_id)?;
                    staged.entry(e.agent_id.clone()).or_insert(c)
                }
            };
            if e.seq <= chain.last_seq {
                let stored: Option<Vec<u8>> = existing
                    .query_row(params![e.agent_id, e.seq as i64], |r| r.get(0))
                    .optional()?;
                outcomes.push(match stored {
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
                if matches!(outcomes.last(), Some(Outcome::Refused(_))) {
                    ended.push(v.reply.clone());
                }
                continue;
            }
            if e.seq > chain.last_seq + 1 {
                insert_gap.execute(params![
                    e.agent_id,
                    (chain.last_seq + 1) as i64,
                    (e.seq - 1) as i64,
                    v.received_ms
                ])?;
                tracing::warn!(agent_id = %e.agent_id, from = chain.last_seq + 1, to = e.seq - 1, "sequence gap recorded");
            }
            let chain_ok = e.seq == chain.last_seq + 1 && e.prev_hash == chain.last_hash
                || e.seq > chain.last_seq + 1
                || chain.last_seq == 0;
            if !chain_ok {
                tracing::warn!(agent_id = %e.agent_id, seq = e.seq, "hash chain broken: previous-event hash does not match");
            }
            let empty = tutela_proto::v1::Observation::default();
            let obs = e.observation.as_ref().unwrap_or(&empty);
            let top = e.matches.iter().max_by_key(|m| m.severity);
            let matches =
                serde_json::to_string(&e.matches.iter().map(MatchRow::from).collect::<Vec<_>>())
                    .unwrap_or_else(|_| "[]".into());
            insert.execute(params![
                e.event_id,
                e.agent_id,
                e.seq as i64,
                e.time_ms,
                v.received_ms,
                v.clock_skew,
                chain_ok,
                e.user,
                e.station,
                crate::source_name(obs.source),
                obs.context,
                obs.app,
                obs.app_path,
                obs.window_title,
                obs.url,
                obs.search_query,
                top.map(|m| m.category.as_str()).unwrap_or(""),
                top.map(|m| m.severity).unwrap_or(0),
                top.map(|m| m.rule_id.as_str()).unwrap_or(""),
                top.map(|m| m.term.as_str()).unwrap_or(""),
                matches,
                e.rules_version,
                e.count,
                v.sealed_capture.is_some(),
                v.body,
                v.signature,
                v.body_hash.to_vec(),
                if e.repeat_of.is_empty() {
                    "new"
                } else {
                    "folded"
                },
                e.repeat_of,
                tutela_proto::PROTOCOL_VERSION,
            ])?;
            let inserted = tx.last_insert_rowid();
            if !e.repeat_of.is_empty() && e.count > 0 {
                fold.execute(params![e.agent_id, e.repeat_of, e.count])?;
            }
            if let (Some(sealed), Some(info)) = (&v.sealed_capture, &e.capture) {
                insert_capture.execute(params![
                    inserted,
                    info.sha256,
                    info.size as i64,
                    info.width,
                    info.height,
                    sealed
                ])?;
            }
            chain.last_seq = e.seq;
            chain.last_hash = v.body_hash;
            chain.dirty = true;
            outcomes.push(Outcome::Stored);
        }
        let mut update = tx.prepare_cached(
            "UPDATE agents SET last_seq = ?2, last_hash = ?3, last_seen_ms = ?4 WHERE agent_id = ?1",
        )?;
        let now = store::now_ms();
        for (agent_id, chain) in staged.iter_mut().filter(|(_, c)| c.dirty) {
            update.execute(params![
                agent_id,
                chain.last_seq as i64,
                chain.last_hash.to_vec(),
                now
            ])?;
            chain.dirty = false;
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// One match as the `matches` column stores it (JSON).
#[derive(serde::Serialize)]
struct MatchRow<'a> {
    rule_id: &'a str,
    category: &'a str,
    severity: u32,
    term: &'a str,
    start: u32,
    end: u32,
}

impl<'a> From<&'a tutela_proto::v1::RuleMatch> for MatchRow<'a> {
    fn from(m: &'a tutela_proto::v1::RuleMatch) -> Self {
        Self {
            rule_id: &m.rule_id,
            category: &m.category,
            severity: m.severity,
            term: &m.term,
            start: m.start,
            end: m.end,
        }
    }
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
