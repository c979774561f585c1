//! gRPC ingest: every event is checked at the boundary (sizes, format,
//! enrolled and unrevoked agent, Ed25519 signature over the exact received
//! bytes, capture hash) before it reaches the writer. Anything wrong ends
//! the stream with a specific status and a log line; nothing is stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use prost::Message;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tutela_proto::v1::ingest_server::Ingest;
use tutela_proto::v1::{
    EventBatch, EventBatchReply, EventBody, HeartbeatBody, HeartbeatReply, SignedEvent,
    SignedHeartbeat,
};

use crate::config::Limits;
use crate::secrets::CaptureVault;
use crate::signature::{self, PublicKey};
use crate::store::agents::HeartbeatRow;
use crate::store::{self, Store, StoreError, Tx};
use crate::writer::{reply_channel, with_seq, Replies, Reply, Verified, Writer};

/// How long a looked-up agent key is trusted before re-reading (revocation latency).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most events of one stream whose signatures are checked together. Events
/// already received are taken up to this many at once; a larger batch saves
/// little more and holds a runtime thread longer.
const VERIFY_BATCH_MAX: usize = 64;
/// A run also ends once it holds this many bytes of bodies and captures, so
/// what a stream has the collector hold before its signatures are checked
/// stays small (one event over it still makes a run of its own).
const VERIFY_BATCH_BYTES: usize = 1024 * 1024;

/// An enrolled agent's key, parsed once, and whether it is revoked.
#[derive(Debug)]
pub struct AgentKey {
    key: Result<PublicKey, signature::KeyError>,
    pub revoked: bool,
    fetched: Instant,
}

impl AgentKey {
    /// The key to check `agent_id`'s signatures with. A stored key that
    /// cannot be used (enrolled before weak keys were refused) is refused.
    pub fn usable(&self, agent_id: &str) -> Result<&PublicKey, Status> {
        self.key.as_ref().map_err(|e| {
            tracing::warn!(agent_id, error = %e, "enrolled key unusable");
            Status::unauthenticated(format!(
                "agent {agent_id}'s enrolled key cannot be used ({e}); a technician must re-enrol the device"
            ))
        })
    }
}

/// Enrolled agents' keys, cached briefly.
#[derive(Debug)]
pub struct AgentKeys {
    store: Store,
    cache: RwLock<HashMap<String, Arc<AgentKey>>>,
}

impl AgentKeys {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The store the keys are read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The agent's key, or `None` when it is not enrolled.
    pub async fn get(&self, agent_id: &str) -> Result<Option<Arc<AgentKey>>, Status> {
        if let Some(k) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
        {
            if k.fetched.elapsed() < KEY_CACHE_TTL {
                return Ok(Some(k.clone()));
            }
        }
        let row = self.store.agent_key(agent_id).await.map_err(|e| {
            tracing::error!(error = %e, "agent lookup failed");
            Status::unavailable("the collector cannot read its agent list; retry later")
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key = Arc::new(AgentKey {
            key: PublicKey::parse(&row.public_key),
            revoked: row.revoked,
            fetched: Instant::now(),
        });
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_owned(), key.clone());
        Ok(Some(key))
    }
}

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

/// Why a heartbeat that passed its checks was not recorded: the agent was
/// revoked meanwhile, or the heartbeat is not newer than the last accepted.
async fn heartbeat_not_recorded(tx: &mut Tx<'_>, body: &HeartbeatBody) -> Status {
    match tx.heartbeat_standing(&body.agent_id).await.unwrap_or(None) {
        None => Status::not_found(format!("agent {} is not enrolled", body.agent_id)),
        Some(s) if s.revoked => revoked_status(&body.agent_id),
        Some(s) => {
            let last = s.last_heartbeat_ms;
            tracing::warn!(agent_id = %body.agent_id, agent_ms = body.time_ms, last, "replayed heartbeat refused");
            Status::already_exists(format!(
                "a heartbeat of agent {} at {} ms is not newer than the last accepted one ({last} ms): a replay or a repeat; each heartbeat needs a later time",
                body.agent_id, body.time_ms
            ))
        }
    }
}

/// Records a verified heartbeat (in the writer's transaction). Returns
/// whether the agent must re-key, or why the heartbeat was not recorded.
async fn record_heartbeat(
    tx: &mut Tx<'_>,
    body: HeartbeatBody,
) -> Result<Result<bool, Status>, StoreError> {
    let recorded = tx
        .record_heartbeat(&HeartbeatRow {
            agent_id: &body.agent_id,
            seen_ms: store::now_ms(),
            agent_version: &body.agent_version,
            rules_version: i64::from(body.rules_version),
            spool_backlog: body.spool_backlog.min(i64::MAX as u64) as i64,
            spool_dropped: body.spool_dropped.min(i64::MAX as u64) as i64,
            agent_ms: body.time_ms,
            problems: &agent_problems(&body.problems),
        })
        .await?;
    if !recorded {
        return Ok(Err(heartbeat_not_recorded(tx, &body).await));
    }
    if let Err(e) = tx.record_shadow_counts(&body).await {
        tracing::warn!(error = %e, agent_id = %body.agent_id, "cannot record shadow counts");
    }
    Ok(Ok(crate::enrolment::check_host(tx, &body)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, agent_id = %body.agent_id, "cannot check the agent's machine");
            false
        })))
}

/// The problems an agent reports, as stored: the first few, each on one line
/// and cut at a character boundary (status for the technician, so a long or
/// odd one is shortened rather than the heartbeat refused).
fn agent_problems(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .take(tutela_proto::limits::MAX_AGENT_PROBLEMS)
        .map(|mut p| {
            let mut end = p.len().min(tutela_proto::limits::MAX_NAME_BYTES);
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            p.truncate(end);
            p
        })
        .collect::<Vec<_>>()
        .join("\n")
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
                    (None, End::Finished) => break,
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

impl IngestService {
    async fn record_heartbeat(
        &self,
        signed: SignedHeartbeat,
    ) -> Result<Response<HeartbeatReply>, Status> {
        if signed.body.len() > tutela_proto::limits::MAX_HEARTBEAT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "heartbeat of {} bytes exceeds the limit of {} bytes",
                signed.body.len(),
                tutela_proto::limits::MAX_HEARTBEAT_BYTES
            )));
        }
        let body = HeartbeatBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.HeartbeatBody"))?;
        let key = self.keys.get(&body.agent_id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "agent {} is not enrolled; enrol it with a token from a technician",
                body.agent_id
            ))
        })?;
        if key.revoked {
            return Err(revoked_status(&body.agent_id));
        }
        let key = key.usable(&body.agent_id)?;
        let message = tutela_proto::heartbeat_message(&signed.body);
        if !signature::verify(key, &message, &signed.signature) {
            return Err(Status::unauthenticated(format!(
                "the heartbeat's signature does not verify against agent {}'s enrolled key{}",
                body.agent_id,
                protocol_1_hint(key, &signed.body, &signed.signature)
            )));
        }
        let now = store::now_ms();
        if (body.time_ms - now).abs() > tutela_proto::limits::HEARTBEAT_WINDOW_MS {
            tracing::warn!(agent_id = %body.agent_id, agent_ms = body.time_ms, now, "stale heartbeat refused");
            let mut status = Status::failed_precondition(format!(
                "the heartbeat's time is {} s from the collector's clock (at most {} s is accepted): a replayed heartbeat, or the station's clock is wrong; set the station's clock",
                (body.time_ms - now) / 1000,
                tutela_proto::limits::HEARTBEAT_WINDOW_MS / 1000
            ));
            if let Ok(v) = now.to_string().parse() {
                status
                    .metadata_mut()
                    .insert(tutela_proto::COLLECTOR_TIME_METADATA, v);
            }
            return Err(status);
        }
        // Through the single writer: a heartbeat never contends with the
        // event batches for the store's write lock.
        let agent_id = body.agent_id.clone();
        let rekey = self
            .writer
            .write_for(&agent_id, "heartbeat", move |tx| {
                Box::pin(async move {
                    record_heartbeat(tx, body)
                        .await
                        .map_err(crate::writer::store_failed("heartbeat"))?
                })
            })
            .await?;
        Ok(Response::new(HeartbeatReply {
            server_time_ms: store::now_ms(),
            latest_rules_version: 0,
            rekey,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::agent_problems;

    #[test]
    fn agent_problems_are_kept_short_one_per_line_and_few() {
        assert_eq!(agent_problems(&[]), "");
        let many: Vec<String> = (0..20).map(|i| format!("problem {i}")).collect();
        let kept = agent_problems(&many);
        assert_eq!(
            kept.lines().count(),
            tutela_proto::limits::MAX_AGENT_PROBLEMS
        );
        assert!(kept.starts_with("problem 0\nproblem 1\n"));
        // New lines inside a problem cannot forge another line; blanks are dropped.
        let odd = agent_problems(&["a\nforged\tline".into(), "  ".into(), "é".repeat(200)]);
        let lines: Vec<&str> = odd.lines().collect();
        assert_eq!(lines[0], "a forged line");
        assert_eq!(lines.len(), 2);
        assert!(lines[1].len() <= tutela_proto::limits::MAX_NAME_BYTES);
        assert!(
            lines[1].chars().all(|c| c == 'é'),
            "cut at a character boundary"
        );
    }
}
