//! gRPC ingest: every event is checked at the boundary (sizes, format,
//! enrolled and unrevoked agent, Ed25519 signature over the exact received
//! bytes, capture hash) before it reaches the writer. Anything wrong ends
//! the stream with a specific status and a log line; nothing is stored.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use prost::Message;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tutela_proto::v1::ingest_server::Ingest;
use tutela_proto::v1::{
    EventBatch, EventBatchReply, EventBody, HeartbeatReply, SignedEvent, SignedHeartbeat,
};

use crate::config::Limits;
use crate::secrets::CaptureVault;
use crate::signature::{self, PublicKey};
use crate::store;
use crate::writer::{reply_channel, with_seq, Replies, Reply, Verified, Writer};

mod heartbeat;
mod keys;
#[cfg(test)]
mod tests;

pub use keys::{AgentKey, AgentKeys};

/// Most events of one stream whose signatures are checked together. Events
/// already received are taken up to this many at once; a larger batch saves
/// little more and holds a runtime thread longer.
const VERIFY_BATCH_MAX: usize = 64;
/// A run also ends once it holds this many bytes of bodies and captures, so
/// what a stream has the collector hold before its signatures are checked
/// stays small (one event over it still makes a run of its own).
const VERIFY_BATCH_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestService {
    pub keys: Arc<AgentKeys>,
    pub writer: Writer,
    pub vault: Arc<CaptureVault>,
    /// Where sealed captures go (the database, or a bucket).
    pub blobs: crate::store::blob::Blobs,
    pub limits: Limits,
    pub data_dir: PathBuf,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn refuse(status: Status, peer: &str) -> Status {
    tracing::warn!(peer, code = ?status.code(), reason = status.message(), "event refused");
    crate::metrics::event_refused(status.code());
    status
}

/// An event whose sizes, format and sender have been checked, waiting for
/// its signature to be checked.
#[derive(Debug)]
pub(crate) struct Received {
    signed: SignedEvent,
    event: EventBody,
    key: PublicKey,
}

impl IngestService {
    /// Checks what can be checked before the signature: sizes, format, and
    /// that the sender is enrolled and not revoked.
    pub(crate) async fn receive(&self, signed: SignedEvent) -> Result<Received, Status> {
        if signed.body.len() > self.limits.max_body_bytes {
            return Err(Status::resource_exhausted(format!(
                "event body of {} bytes exceeds the limit of {} bytes",
                signed.body.len(),
                self.limits.max_body_bytes
            )));
        }
        if signed.capture.len() > self.limits.max_capture_bytes {
            return Err(Status::resource_exhausted(format!(
                "capture of {} bytes exceeds the limit of {} bytes",
                signed.capture.len(),
                self.limits.max_capture_bytes
            )));
        }
        let event = EventBody::decode(signed.body.as_slice()).map_err(|_| {
            Status::invalid_argument("the event body is not a valid tutela.v1.EventBody")
        })?;
        if event.agent_id.is_empty() || event.agent_id.len() > tutela_proto::limits::MAX_ID_BYTES {
            return Err(Status::invalid_argument("the event has no valid agent id"));
        }
        let key = self.keys.get(&event.agent_id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "agent {} is not enrolled; enrol it with a token from a technician",
                event.agent_id
            ))
        })?;
        if key.revoked {
            return Err(revoked_status(&event.agent_id));
        }
        let key = *key.usable(&event.agent_id)?;
        Ok(Received { signed, event, key })
    }

    /// Checks the signatures of `received`, in order, over the exact bytes
    /// received. Returns the events before the first one that fails, and
    /// the refusal for that one.
    fn authenticate(&self, mut received: Vec<Received>) -> (Vec<Received>, Option<Status>) {
        let messages: Vec<Vec<u8>> = received
            .iter()
            .map(|r| tutela_proto::event_message(&r.signed.body))
            .collect();
        let items: Vec<signature::Item<'_>> = received
            .iter()
            .zip(&messages)
            .map(|(r, m)| (&r.key, m.as_slice(), r.signed.signature.as_slice()))
            .collect();
        let Err(bad) = signature::verify_all(&items) else {
            return (received, None);
        };
        let refusal = {
            let r = &received[bad];
            let event = &r.event;
            Status::unauthenticated(format!(
                "the signature of event {} does not verify against agent {}'s enrolled key{}",
                event.seq,
                event.agent_id,
                protocol_1_hint(&r.key, &r.signed.body, &r.signed.signature)
            ))
        };
        received.truncate(bad);
        (received, Some(refusal))
    }

    /// Checks an authentic event's content and makes it ready for the writer.
    fn accept(&self, received: Received, reply: &Reply) -> Result<Verified, Status> {
        let Received { signed, event, .. } = received;
        // The content is authentic: refusals name the event so the agent can
        // set it aside rather than resend it forever.
        let malformed = if event.seq == 0 {
            Some("seq is 0; sequence numbers start at 1".to_owned())
        } else if event.prev_hash.len() != 32 {
            Some(format!(
                "prev_hash is {} bytes; it must be 32 (zeros for the first event)",
                event.prev_hash.len()
            ))
        } else if event.event_id.len() > 64 {
            Some(format!(
                "event_id is {} bytes; the limit is 64",
                event.event_id.len()
            ))
        } else {
            None
        };
        if let Some(why) = malformed {
            return Err(with_seq(
                Status::invalid_argument(format!("the event is malformed: {why}")),
                event.seq,
            ));
        }
        if let Err(why) = crate::bounds::check_event(&event) {
            return Err(with_seq(
                Status::invalid_argument(format!(
                    "event {} is refused: {why}; agents must cut events to the protocol's limits",
                    event.seq
                )),
                event.seq,
            ));
        }
        let sealed_capture = match (&event.capture, signed.capture.is_empty()) {
            (None, true) => None,
            (None, false) => {
                return Err(with_seq(
                    Status::invalid_argument(
                        "a capture was sent that the signed event does not declare",
                    ),
                    event.seq,
                ))
            }
            (Some(info), _) => {
                if info.size != signed.capture.len() as u64 {
                    return Err(with_seq(
                        Status::data_loss(format!(
                            "the capture of event {} is {} bytes but its signed size is {} bytes: truncated or padded in transit",
                            event.seq,
                            signed.capture.len(),
                            info.size
                        )),
                        event.seq,
                    ));
                }
                if sha256(&signed.capture).as_slice() != info.sha256.as_slice() {
                    return Err(with_seq(
                        Status::data_loss(format!(
                            "the capture of event {} does not match its signed SHA-256: tampered or corrupted",
                            event.seq
                        )),
                        event.seq,
                    ));
                }
                Some(self.vault.seal(&event.event_id, &signed.capture))
            }
        };
        let received_ms = store::now_ms();
        let clock_skew = (received_ms - event.time_ms).unsigned_abs()
            > self.limits.skew_flag_secs.saturating_mul(1000);
        if clock_skew {
            tracing::warn!(agent_id = %event.agent_id, seq = event.seq, agent_ms = event.time_ms, received_ms, "agent clock skew over the limit; flagged");
        }
        Ok(Verified {
            body_hash: sha256(&signed.body),
            body: signed.body,
            signature: signed.signature,
            event,
            sealed_capture,
            capture_key: None,
            received_ms,
            clock_skew,
            reply: reply.clone(),
        })
    }

    /// With captures in object storage, writes the sealed capture to the
    /// bucket before its row is committed; a bucket that cannot be reached
    /// makes the agent keep the event in its spool and retry.
    async fn place_capture(&self, mut v: Verified) -> Result<Verified, Status> {
        if self.blobs.in_database() {
            return Ok(v);
        }
        let Some(sealed) = v.sealed_capture.as_mut().map(std::mem::take) else {
            return Ok(v);
        };
        let key = crate::store::blob::Blobs::new_key(&v.event.agent_id, v.event.seq);
        if let Err(e) = self.blobs.put(&key, sealed).await {
            tracing::error!(agent_id = %v.event.agent_id, seq = v.event.seq, error = %e, "cannot store a capture in the bucket");
            return Err(with_seq(
                Status::unavailable(
                    "the collector cannot store captures right now (object storage unreachable); keep the event and retry",
                ),
                v.event.seq,
            ));
        }
        v.capture_key = Some(key);
        Ok(v)
    }

    /// Checks the signatures of a run of received events from one stream,
    /// in order, and hands the good ones to the writer. Returns the refusal
    /// that ends the stream, if any.
    pub(crate) async fn ingest_run(&self, run: Vec<Received>, reply: &Reply) -> Option<Status> {
        let arrived = std::time::Instant::now();
        let (authentic, bad_signature) = self.authenticate(run);
        if !self.blobs.in_database() {
            return self
                .ingest_run_to_bucket(authentic, bad_signature, reply, arrived)
                .await;
        }
        for r in authentic {
            let verified = match self.accept(r, reply) {
                Ok(v) => v,
                Err(status) => return Some(status),
            };
            if let Err(status) = self.writer.submit(verified).await {
                return Some(status);
            }
            crate::metrics::event_acknowledged(arrived);
        }
        bad_signature
    }

    /// [`IngestService::ingest_run`] with captures in object storage: the
    /// run's captures are written to the bucket together, then its events
    /// go to the writer in order, up to the first refused.
    async fn ingest_run_to_bucket(
        &self,
        authentic: Vec<Received>,
        bad_signature: Option<Status>,
        reply: &Reply,
        arrived: std::time::Instant,
    ) -> Option<Status> {
        let mut accepted = Vec::with_capacity(authentic.len());
        let mut refused = bad_signature;
        for r in authentic {
            match self.accept(r, reply) {
                Ok(v) => accepted.push(v),
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
        let placed =
            futures_util::future::join_all(accepted.into_iter().map(|v| self.place_capture(v)))
                .await;
        for verified in placed {
            let verified = match verified {
                Ok(v) => v,
                Err(status) => return Some(status),
            };
            if let Err(status) = self.writer.submit(verified).await {
                return Some(status);
            }
            crate::metrics::event_acknowledged(arrived);
        }
        refused
    }

    /// Waits for the stream's next event, then takes whatever else it has
    /// already delivered (up to `VERIFY_BATCH_MAX` events or
    /// `VERIFY_BATCH_BYTES`), checking each as it comes: a run stops at the
    /// first event refused before its signature is checked.
    async fn gather(&self, inbound: &mut Streaming<SignedEvent>) -> (Vec<Received>, End) {
        let mut run = Vec::new();
        let mut bytes = 0;
        let mut next = Some(inbound.message().await);
        while let Some(result) = next.take() {
            let end = match result {
                Ok(Some(signed)) => {
                    bytes += signed.body.len() + signed.capture.len();
                    // Boxed: the look-up's state lives only while it runs,
                    // not in every idle stream's task (see `stream`).
                    match Box::pin(self.receive(signed)).await {
                        Ok(r) => {
                            run.push(r);
                            End::Open
                        }
                        Err(status) => End::Refused(status),
                    }
                }
                Ok(None) => End::Finished,
                Err(status) => End::Refused(frame_refusal(status)),
            };
            if !matches!(end, End::Open) {
                return (run, end);
            }
            if run.len() < VERIFY_BATCH_MAX && bytes < VERIFY_BATCH_BYTES {
                next = ready_now(inbound);
            }
        }
        (run, End::Open)
    }
}

/// How a run of events from a stream ended.
#[derive(Debug)]
enum End {
    /// The stream is still open.
    Open,
    /// The agent closed the stream.
    Finished,
    /// The event after the run, or the stream itself, was refused.
    Refused(Status),
}

/// What an agent revoked by a technician is told.
pub fn revoked_status(agent_id: &str) -> Status {
    Status::permission_denied(format!(
        "agent {agent_id} has been revoked; a technician must re-enrol the device"
    ))
}

/// When `signature` does not verify over the domain-separated bytes but does
/// over the bare body, the sender speaks protocol version 1: say so.
pub fn protocol_1_hint(key: &PublicKey, body: &[u8], signature: &[u8]) -> &'static str {
    if signature::verify(key, body, signature) {
        " (it is signed over the bare body, as protocol version 1 agents do; this collector speaks version 2: upgrade the agent)"
    } else {
        ""
    }
}

/// What the stream has already delivered, without waiting.
fn ready_now(inbound: &mut Streaming<SignedEvent>) -> Option<Result<Option<SignedEvent>, Status>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(inbound).poll_next(&mut cx) {
        Poll::Ready(next) => Some(next.transpose()),
        Poll::Pending => None,
    }
}

/// A stream error as the refusal the agent is sent.
fn frame_refusal(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange || status.message().contains("too large") {
        Status::resource_exhausted(format!("message refused: {}", status.message()))
    } else {
        Status::invalid_argument(format!(
            "malformed frame on the event stream: {}",
            status.message()
        ))
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = Replies;

    async fn stream(
        &self,
        request: Request<Streaming<SignedEvent>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let mut inbound = request.into_inner();
        let (tx, rx) = reply_channel();
        let service = self.clone();
        // One task per open stream, idle nearly all the time: its state is
        // kept small (about 1 KiB) by boxing the steps that hold much while
        // they run (the signature checks and the writer hand-over, the
        // refusal), so thousands of connected agents cost little.
        tokio::spawn(async move {
            let _open = crate::metrics::StreamOpen::new();
            loop {
                let (run, end) = service.gather(&mut inbound).await;
                // A refusal within the run comes before the one that ended it.
                let refusal = match (Box::pin(service.ingest_run(run, &tx)).await, end) {
                    (Some(status), _) | (None, End::Refused(status)) => status,
                    // The agent ended its side (it closes an idle stream
                    // once everything it sent is acknowledged): normal.
                    (None, End::Finished) => {
                        tracing::debug!(peer, "event stream ended by the agent");
                        break;
                    }
                    (None, End::Open) => continue,
                };
                // Through the writer, so the agent first hears which of the
                // events before the refused one were stored.
                Box::pin(service.writer.refuse(refuse(refusal, &peer), tx.clone())).await;
                break;
            }
        });
        Ok(Response::new(rx))
    }

    async fn submit(
        &self,
        request: Request<EventBatch>,
    ) -> Result<Response<EventBatchReply>, Status> {
        crate::batch::submit(self, request).await
    }

    async fn heartbeat(
        &self,
        request: Request<SignedHeartbeat>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let recorded = self.record_heartbeat(request.into_inner()).await;
        crate::metrics::heartbeat(recorded.as_ref().map(|_| ()).map_err(Status::code));
        recorded
    }
}
