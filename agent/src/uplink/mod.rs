//! The uplink: streams spooled events to the collector over pinned TLS and
//! deletes each one only when the collector acknowledges it as stored.
//! Reconnects with exponential backoff and full jitter, and always resumes
//! from the first unacknowledged event.
//!
//! The event stream is open only while there is something to send: it is
//! opened when the spool holds an event, and once every event sent on it
//! has been acknowledged and nothing new has come for
//! [`UplinkConfig::idle_close`] (by default [`IDLE_CLOSE`]), the agent ends
//! its side cleanly. The stream runs on the agent's one connection to the
//! collector ([`crate::link`]), which stays for its other parts. An agent
//! sends an event only on a match, so an idle agent then costs the collector
//! nothing for its events. Opening again is a reconnect: it resumes from the
//! first unacknowledged event, under the same rules.
//!
//! An event the collector refuses for good is set aside in the spool's
//! quarantine so the events after it flow: at once when the refusal names its
//! sequence number, and otherwise (a refusal for size or format, which the
//! collector gives before it can read the event) when the first
//! unacknowledged event has been refused [`REFUSALS_BEFORE_QUARANTINE`] times
//! in a row.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::AckStatus;

use crate::link::CollectorLink;
use crate::pinning;
use crate::spool::{Spool, SpoolError};

/// Events sent but not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 1024;
const READ_BATCH: usize = 256;
const ACK_BATCH: usize = 512;
/// How often an open stream looks at the spool for events when no append
/// was signalled (events written by another path).
const SPOOL_POLL: Duration = Duration::from_secs(1);
/// How often the spool is looked at while no stream is open and no append
/// was signalled. Every append in this process signals `appended`, so this
/// look is only a safety net; reading the spool each second was most of an
/// idle agent's runtime work (a read transaction each time).
const IDLE_SPOOL_CHECK: Duration = Duration::from_secs(30);

/// How long the event stream stays open once every event sent on it is
/// acknowledged, by default: a match often comes with others (a burst of
/// shots, repeats), which then share one stream.
pub const IDLE_CLOSE: Duration = Duration::from_secs(20);

/// Untagged size or format refusals of the same first event, in a row,
/// before it is set aside.
pub const REFUSALS_BEFORE_QUARANTINE: u32 = 3;

pub type SharedSpool = Arc<Mutex<Spool>>;

/// Sequence numbers sent on the current stream and not yet acknowledged, in
/// the order sent.
type Sent = Arc<Mutex<VecDeque<u64>>>;

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error(transparent)]
    Connect(#[from] pinning::PinningError),
    #[error("the collector refused the stream: {0}")]
    Refused(tonic::Status),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the collector closed the stream")]
    Closed,
    #[error("the collector acknowledged {0}; dropping the stream and deleting nothing")]
    BadAck(String),
}

/// What an acknowledgement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCheck {
    /// The first `n` events sent and not yet acknowledged on this stream.
    Covers(usize),
    /// It names another agent.
    WrongAgent,
    /// It names an event not sent (or already acknowledged) on this stream.
    NotSent,
}

/// Checks an acknowledgement against this agent and the events sent on this
/// stream (`sent`, in the order sent, so ascending).
pub fn check_ack(sent: &VecDeque<u64>, agent_id: &str, ack: &tutela_proto::v1::Ack) -> AckCheck {
    if ack.agent_id != agent_id {
        return AckCheck::WrongAgent;
    }
    match sent.binary_search(&ack.seq) {
        Ok(i) => AckCheck::Covers(i + 1),
        Err(_) => AckCheck::NotSent,
    }
}

/// Where to send, and how patiently to retry.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// The collector's addresses, tried in order (see [`pinning::connect_any`]).
    pub collectors: Vec<String>,
    pub fingerprint: String,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_message_bytes: usize,
    /// Ends the event stream (not the connection, which the agent's other
    /// parts share) when every event sent on it has been acknowledged and nothing new has come for this long;
    /// it is opened again when the spool has an event to send. `None`
    /// keeps it open for good.
    pub idle_close: Option<Duration>,
}

/// Exponential backoff with full jitter.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: uniform in [cap/2, cap] where cap doubles per attempt.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let mut b = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("the system random source works");
        let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
        cap.mul_f64(0.5 + 0.5 * frac)
    }
}

/// The spool, locked; a panic elsewhere while it was held does not stop
/// events from being spooled and sent.
pub fn lock(spool: &SharedSpool) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts how often in a row the first unacknowledged event was refused
/// with a status that does not name it (so it cannot be quarantined at once)
/// but says the event itself is unacceptable: too large or malformed.
#[derive(Debug, Default)]
pub struct RefusalStreak {
    seq: Option<u64>,
    count: u32,
}

impl RefusalStreak {
    /// Records how a session ended: `first_unacked` is the first event still
    /// in the spool afterwards, `acked` how many the session acknowledged,
    /// `refusal` the collector's status if it refused the stream. Returns the
    /// event to set aside, if it has now been refused often enough.
    pub fn record(
        &mut self,
        first_unacked: Option<u64>,
        acked: u64,
        refusal: Option<&tonic::Status>,
    ) -> Option<u64> {
        let untagged_refusal = refusal.is_some_and(|s| {
            matches!(
                s.code(),
                tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
            ) && s
                .metadata()
                .get(tutela_proto::REJECTED_SEQ_METADATA)
                .is_none()
        });
        let (Some(seq), true) = (first_unacked, untagged_refusal) else {
            *self = Self::default();
            return None;
        };
        if acked > 0 || self.seq != Some(seq) {
            *self = Self {
                seq: Some(seq),
                count: 0,
            };
        }
        self.count += 1;
        if self.count >= REFUSALS_BEFORE_QUARANTINE {
            *self = Self::default();
            return Some(seq);
        }
        None
    }
}

/// Runs forever: waits for an event to send, connects, streams, and on any
/// failure backs off and resumes.
/// The connection is the agent's shared one ([`CollectorLink::shared`]).
pub async fn run(config: UplinkConfig, spool: SharedSpool, appended: Arc<Notify>) {
    let agent_id = lock(&spool).agent_id().to_owned();
    let link = CollectorLink::shared(&agent_id, &config.collectors, &config.fingerprint);
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut streak = RefusalStreak::default();
    loop {
        if config.idle_close.is_some() {
            wait_for_events(&spool, &appended).await;
        }
        match session(&link, &config, &spool, &appended).await {
            Ok(acked) => {
                backoff.reset();
                streak = RefusalStreak::default();
                tracing::debug!(
                    acked,
                    "event stream closed while idle; it opens again when there is an event to send"
                );
                continue;
            }
            Err((acked, e)) => {
                if acked > 0 {
                    backoff.reset();
                }
                tracing::warn!(collectors = ?config.collectors, acked, error = %e, "uplink interrupted; will retry");
                let refusal = match &e {
                    UplinkError::Refused(status) => Some(status),
                    _ => None,
                };
                let first = match lock(&spool).first_pending() {
                    Ok(first) => first,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the spool");
                        None
                    }
                };
                if let Some(seq) = streak.record(first, acked, refusal) {
                    let code = refusal.map(|s| s.code());
                    tracing::warn!(
                        seq,
                        ?code,
                        refusals = REFUSALS_BEFORE_QUARANTINE,
                        "the collector refused the first unsent event repeatedly without naming it; set aside in quarantine so later events flow"
                    );
                    let reason = refusal.map(|s| s.message()).unwrap_or_default();
                    if let Err(e) = lock(&spool).quarantine(seq, reason) {
                        tracing::error!(error = %e, "could not quarantine the refused event");
                    }
                }
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(delay_ms = delay.as_millis() as u64, "uplink backing off");
        tokio::time::sleep(delay).await;
    }
}

/// Returns once the spool holds an event waiting to be sent (or cannot be
/// read: the session then says so).
async fn wait_for_events(spool: &SharedSpool, appended: &Notify) {
    loop {
        // Made before the spool is read, so an append in between is seen.
        let notified = appended.notified();
        match lock(spool).first_pending() {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                return;
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(IDLE_SPOOL_CHECK) => {}
        }
    }
}

/// One stream: `Ok` with the events acknowledged when it was closed for
/// idleness, else how many were acknowledged and why it ended.
async fn session(
    link: &CollectorLink,
    config: &UplinkConfig,
    spool: &SharedSpool,
    appended: &Arc<Notify>,
) -> Result<u64, (u64, UplinkError)> {
    let lease = link.channel().await.map_err(|e| (0, e.into()))?;
    let mut client = IngestClient::new(lease.channel.clone())
        .max_encoding_message_size(config.max_message_bytes)
        .max_decoding_message_size(64 * 1024);
    let (tx, rx) = mpsc::channel(READ_BATCH);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let sent: Sent = Arc::default();
    let idle = Idle {
        after: config.idle_close,
        closed: Arc::default(),
    };
    let sender = tokio::spawn(send_loop(
        spool.clone(),
        appended.clone(),
        tx,
        in_flight.clone(),
        sent.clone(),
        idle.clone(),
    ));
    let result = receive_acks(&mut client, rx, spool, &in_flight, &sent).await;
    sender.abort();
    match result {
        // Everything sent was acknowledged before this side ended.
        Ok(acked) if idle.closed.load(Ordering::Acquire) => Ok(acked),
        Ok(acked) => {
            tracing::info!(acked, "uplink stream ended");
            Err((acked, UplinkError::Closed))
        }
        Err((acked, UplinkError::Refused(status))) => {
            link.check(&lease, &status).await;
            if let Some(seq) = status
                .metadata()
                .get(tutela_proto::REJECTED_SEQ_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                tracing::error!(seq, code = ?status.code(), reason = status.message(), "collector refused an event for good; set aside in quarantine");
                let mut s = lock(spool);
                if let Err(e) = s.quarantine(seq, status.message()) {
                    tracing::error!(error = %e, "could not quarantine the refused event");
                }
            }
            Err((acked, UplinkError::Refused(status)))
        }
        Err(e) => Err(e),
    }
}

/// Receives acknowledgements and deletes what they cover from the spool. An
/// acknowledgement of event `seq` covers it and every event sent before it
/// on this stream (the collector commits a stream's events in order).
async fn receive_acks(
    client: &mut IngestClient<tonic::transport::Channel>,
    rx: mpsc::Receiver<tutela_proto::v1::SignedEvent>,
    spool: &SharedSpool,
    in_flight: &Semaphore,
    sent: &Sent,
) -> Result<u64, (u64, UplinkError)> {
    let agent_id = lock(spool).agent_id().to_owned();
    let agent_id = agent_id.as_str();
    let mut acks = client
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| (0, UplinkError::Refused(s)))?
        .into_inner();
    tracing::info!("uplink connected");
    let mut acked = 0u64;
    let mut batch: Vec<u64> = Vec::with_capacity(ACK_BATCH);
    loop {
        let next = if batch.is_empty() {
            Ok(acks.message().await)
        } else {
            tokio::time::timeout(Duration::from_millis(5), acks.message()).await
        };
        let flush = match &next {
            Ok(Ok(Some(_))) => batch.len() >= ACK_BATCH,
            _ => true,
        };
        if let Ok(Ok(Some(ack))) = &next {
            match AckStatus::try_from(ack.status) {
                Ok(AckStatus::Stored) | Ok(AckStatus::Duplicate) => {
                    let mut sent = lock_sent(sent);
                    match check_ack(&sent, agent_id, ack) {
                        AckCheck::Covers(n) => batch.extend(sent.drain(..n)),
                        bad => {
                            tracing::warn!(
                                seq = ack.seq,
                                check = ?bad,
                                "the collector acknowledged an event this stream did not send; reconnecting"
                            );
                            let what = match bad {
                                AckCheck::WrongAgent => {
                                    format!("event {} of another agent", ack.seq)
                                }
                                _ => {
                                    format!("event {}, which was not sent on this stream", ack.seq)
                                }
                            };
                            return Err((acked, UplinkError::BadAck(what)));
                        }
                    }
                }
                _ => tracing::warn!(
                    seq = ack.seq,
                    "ignoring an acknowledgement with an unknown status"
                ),
            }
        }
        if flush && !batch.is_empty() {
            let n = batch.len();
            lock(spool)
                .acknowledge(&batch)
                .map_err(|e| (acked, e.into()))?;
            in_flight.add_permits(n);
            acked += n as u64;
            batch.clear();
        }
        match next {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) => return Ok(acked),
            Ok(Err(status)) => return Err((acked, UplinkError::Refused(status))),
        }
    }
}

/// When the send loop ends the stream for idleness, and whether it did.
#[derive(Debug, Clone)]
struct Idle {
    after: Option<Duration>,
    closed: Arc<AtomicBool>,
}

async fn send_loop(
    spool: SharedSpool,
    appended: Arc<Notify>,
    tx: mpsc::Sender<tutela_proto::v1::SignedEvent>,
    in_flight: Arc<Semaphore>,
    sent: Sent,
    idle: Idle,
) {
    let mut cursor = 0u64;
    // Since when nothing has been waiting for an acknowledgement.
    let mut quiet_since = Instant::now();
    loop {
        let notified = appended.notified();
        let batch = match lock(&spool).pending_after(cursor, READ_BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                return;
            }
        };
        if batch.is_empty() {
            // While events await acknowledgement, look again each
            // `SPOOL_POLL` (the idle time counts from the last ack); once
            // all are acknowledged, only an append or the idle time wakes it.
            let wait = if !lock_sent(&sent).is_empty() {
                quiet_since = Instant::now();
                SPOOL_POLL
            } else if let Some(after) = idle.after {
                let quiet = quiet_since.elapsed();
                if quiet >= after {
                    // Returning drops `tx`: the stream ends cleanly on this
                    // side, and the collector ends its side in turn.
                    idle.closed.store(true, Ordering::Release);
                    return;
                }
                after - quiet
            } else {
                IDLE_SPOOL_CHECK
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        // Nothing leaves the machine that a power cut could take back.
        if let Err(e) = lock(&spool).make_durable() {
            tracing::error!(error = %e, "cannot sync the spool to the disk; not sending");
            return;
        }
        for event in batch {
            match in_flight.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return,
            }
            cursor = event.seq;
            lock_sent(&sent).push_back(event.seq);
            if tx.send(event.to_wire()).await.is_err() {
                return;
            }
        }
        quiet_since = Instant::now();
    }
}

fn lock_sent(sent: &Sent) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
    sent.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
