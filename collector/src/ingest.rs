//! gRPC ingest: every event is checked at the boundary (sizes, format,
//! enrolled and unrevoked agent, Ed25519 signature over the exact received
//! bytes, capture hash) before it reaches the writer. Anything wrong ends
//! the stream with a specific status and a log line; nothing is stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tutela_proto::v1::ingest_server::Ingest;
use tutela_proto::v1::{
    Ack, EventBody, HeartbeatBody, HeartbeatReply, SignedEvent, SignedHeartbeat,
};

use crate::config::Limits;
use crate::secrets::CaptureVault;
use crate::store;
use crate::writer::{with_seq, Verified, Writer};

/// How long a looked-up agent key is trusted before re-reading (revocation latency).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct AgentKey {
    public_key: Vec<u8>,
    revoked: bool,
    fetched: Instant,
}

/// Enrolled agents' keys, cached briefly.
#[derive(Debug)]
pub struct AgentKeys {
    conn: Mutex<Connection>,
    cache: RwLock<HashMap<String, AgentKey>>,
}

impl AgentKeys {
    pub fn open(dir: &std::path::Path) -> Result<Self, rusqlite::Error> {
        Ok(Self {
            conn: Mutex::new(store::open(dir)?),
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The agent's public key and whether it is revoked.
    pub fn lookup(&self, agent_id: &str) -> Result<Option<(Vec<u8>, bool)>, Status> {
        Ok(self.get(agent_id)?.map(|k| (k.public_key, k.revoked)))
    }

    fn get(&self, agent_id: &str) -> Result<Option<AgentKey>, Status> {
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
        let row: Option<(Vec<u8>, bool)> = self
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                "SELECT public_key, revoked FROM agents WHERE agent_id = ?1",
                [agent_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| {
                tracing::error!(error = %e, "agent lookup failed");
                Status::unavailable("the collector cannot read its agent list; retry later")
            })?;
        let Some((public_key, revoked)) = row else {
            return Ok(None);
        };
        let key = AgentKey {
            public_key,
            revoked,
            fetched: Instant::now(),
        };
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
    status
}

impl IngestService {
    /// Checks one signed event; on success returns it ready for the writer.
    pub fn verify(
        &self,
        signed: SignedEvent,
        reply: &mpsc::UnboundedSender<Result<Ack, Status>>,
    ) -> Result<Verified, Status> {
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
        if event.agent_id.is_empty() || event.agent_id.len() > 64 {
            return Err(Status::invalid_argument("the event has no valid agent id"));
        }
        let key = self.keys.get(&event.agent_id)?.ok_or_else(|| {
            Status::not_found(format!(
                "agent {} is not enrolled; enrol it with a token from a technician",
                event.agent_id
            ))
        })?;
        if key.revoked {
            return Err(Status::permission_denied(format!(
                "agent {} has been revoked; a technician must re-enrol the device",
                event.agent_id
            )));
        }
        UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(&signed.body, &signed.signature)
            .map_err(|_| {
                Status::unauthenticated(format!(
                    "the signature of event {} does not verify against agent {}'s enrolled key",
                    event.seq, event.agent_id
                ))
            })?;
        // From here the content is authentic: refusals name the event so the
        // agent can set it aside rather than resend it forever.
        if event.seq == 0 || event.prev_hash.len() != 32 || event.event_id.len() > 64 {
            return Err(with_seq(
                Status::invalid_argument(
                    "the event's sequence number, previous hash or id is malformed",
                ),
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
                if info.size as usize != signed.capture.len()
                    || sha256(&signed.capture).as_slice() != info.sha256.as_slice()
                {
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
            received_ms,
            clock_skew,
            reply: reply.clone(),
        })
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = UnboundedReceiverStream<Result<Ack, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<SignedEvent>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(signed)) => match service.verify(signed, &tx) {
                        Ok(verified) => {
                            if let Err(status) = service.writer.submit(verified).await {
                                let _ = tx.send(Err(status));
                                break;
                            }
                        }
                        Err(status) => {
                            let _ = tx.send(Err(refuse(status, &peer)));
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(status) => {
                        let status = if status.code() == tonic::Code::OutOfRange
                            || status.message().contains("too large")
                        {
                            Status::resource_exhausted(format!(
                                "message refused: {}",
                                status.message()
                            ))
                        } else {
                            Status::invalid_argument(format!(
                                "malformed frame on the event stream: {}",
                                status.message()
                            ))
                        };
                        let _ = tx.send(Err(refuse(status, &peer)));
                        break;
                    }
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn heartbeat(
        &self,
        request: Request<SignedHeartbeat>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let signed = request.into_inner();
        if signed.body.len() > self.limits.max_body_bytes {
            return Err(Status::resource_exhausted("heartbeat too large"));
        }
        let body = HeartbeatBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.HeartbeatBody"))?;
        let key = self
            .keys
            .get(&body.agent_id)?
            .ok_or_else(|| Status::not_found("agent not enrolled"))?;
        if key.revoked {
            return Err(Status::permission_denied("agent revoked"));
        }
        UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(&signed.body, &signed.signature)
            .map_err(|_| Status::unauthenticated("heartbeat signature does not verify"))?;
        // The store work runs on a blocking thread, not the async runtime.
        let keys = self.keys.clone();
        let rekey = tokio::task::spawn_blocking(move || -> Result<bool, Status> {
            let conn = keys.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute(
                "UPDATE agents SET last_seen_ms = ?2, agent_version = ?3, rules_version = ?4,
                    spool_backlog = ?5, spool_dropped = ?6 WHERE agent_id = ?1",
                rusqlite::params![
                    body.agent_id,
                    store::now_ms(),
                    body.agent_version,
                    body.rules_version,
                    body.spool_backlog as i64,
                    body.spool_dropped as i64
                ],
            )
            .map_err(|_| Status::unavailable("cannot record the heartbeat; retry later"))?;
            if let Err(e) = crate::publish::record_shadow_counts(&conn, &body) {
                tracing::warn!(error = %e, agent_id = %body.agent_id, "cannot record shadow counts");
            }
            Ok(crate::enrolment::check_host(&conn, &body).unwrap_or_else(|e| {
                tracing::warn!(error = %e, agent_id = %body.agent_id, "cannot check the agent's machine");
                false
            }))
        })
        .await
        .map_err(|_| Status::internal("the heartbeat could not be recorded; retry later"))??;
        Ok(Response::new(HeartbeatReply {
            server_time_ms: store::now_ms(),
            latest_rules_version: 0,
            rekey,
        }))
    }
}
