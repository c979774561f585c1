//! The uplink: streams spooled events to the collector over pinned TLS and
//! deletes each one only when the collector acknowledges it as stored.
//! Reconnects with exponential backoff and full jitter, and always resumes
//! from the first unacknowledged event.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::AckStatus;

use crate::pinning;
use crate::spool::{Spool, SpoolError};

/// Events sent but not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 1024;
const READ_BATCH: usize = 256;
const ACK_BATCH: usize = 512;

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
}

/// Where to send, and how patiently to retry.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub collector: String,
    pub fingerprint: String,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_message_bytes: usize,
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

fn lock(spool: &SharedSpool) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs forever: connect, stream, and on any failure back off and resume.
pub async fn run(config: UplinkConfig, spool: SharedSpool, appended: Arc<Notify>) {
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    loop {
        match session(&config, &spool, &appended).await {
            Ok(()) => backoff.reset(),
            Err((acked, e)) => {
                if acked > 0 {
                    backoff.reset();
                }
                tracing::warn!(collector = %config.collector, acked, error = %e, "uplink interrupted; will retry");
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(delay_ms = delay.as_millis() as u64, "uplink backing off");
        tokio::time::sleep(delay).await;
    }
}

async fn session(
    config: &UplinkConfig,
    spool: &SharedSpool,
    appended: &Arc<Notify>,
) -> Result<(), (u64, UplinkError)> {
    let channel = pinning::connect(&config.collector, &config.fingerprint)
        .await
        .map_err(|e| (0, e.into()))?;
    let mut client = IngestClient::new(channel)
        .max_encoding_message_size(config.max_message_bytes)
        .max_decoding_message_size(64 * 1024);
    let (tx, rx) = mpsc::channel(READ_BATCH);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let sent: Sent = Arc::default();
    let sender = tokio::spawn(send_loop(
        spool.clone(),
        appended.clone(),
        tx,
        in_flight.clone(),
        sent.clone(),
    ));
    let result = receive_acks(&mut client, rx, spool, &in_flight, &sent).await;
    sender.abort();
    match result {
        Ok(acked) => {
            tracing::info!(acked, "uplink stream ended");
            Err((acked, UplinkError::Closed))
        }
        Err((acked, UplinkError::Refused(status))) => {
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
                    while sent.front().is_some_and(|&s| s <= ack.seq) {
                        batch.extend(sent.pop_front());
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

async fn send_loop(
    spool: SharedSpool,
    appended: Arc<Notify>,
    tx: mpsc::Sender<tutela_proto::v1::SignedEvent>,
    in_flight: Arc<Semaphore>,
    sent: Sent,
) {
    let mut cursor = 0u64;
    loop {
        let batch = match lock(&spool).pending_after(cursor, READ_BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                return;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = appended.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
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
    }
}

fn lock_sent(sent: &Sent) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
    sent.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d0 = b.next_delay();
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        for _ in 0..10 {
            b.next_delay();
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1) && late <= Duration::from_secs(2),
            "{late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
