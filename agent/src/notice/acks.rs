//! Acknowledgements of the notice: signed with the agent's key, kept in a
//! small queue on disk and sent to the collector until it has them.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use serde::{Deserialize, Serialize};
use tutela_proto::v1::notices_client::NoticesClient;
use tutela_proto::v1::{Notice, NoticeAckBody, SignedNoticeAck};

use super::{lock, read_toml, write_toml, Notices, Signed};
use crate::identity::{Enrolment, Identity};
use crate::uplink::Backoff;

const PENDING_FILE: &str = "notice-acks.toml";
/// Most unsent acknowledgements kept (a station offline for weeks).
const MAX_PENDING: usize = 500;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending {
    #[serde(default)]
    ack: Vec<Signed>,
}

impl Notices {
    /// Queues `signed` on disk for [`Notices::send`] and wakes it.
    pub(super) fn queue(&self, signed: SignedNoticeAck) {
        let _guard = lock(&self.files);
        let path = self.dir.join(PENDING_FILE);
        let mut pending: Pending = read_toml(&path);
        pending.ack.push(Signed {
            body: hex::encode(&signed.body),
            signature: hex::encode(&signed.signature),
        });
        let excess = pending.ack.len().saturating_sub(MAX_PENDING);
        if excess > 0 {
            tracing::warn!(
                dropped = excess,
                "too many unsent notice acknowledgements; the oldest are dropped"
            );
            pending.ack.drain(..excess);
        }
        write_toml(&path, &pending);
        self.queued.notify_one();
    }

    /// The acknowledgements queued and not yet delivered, oldest first.
    pub(super) fn pending(&self) -> Vec<SignedNoticeAck> {
        let _guard = lock(&self.files);
        let pending: Pending = read_toml(&self.dir.join(PENDING_FILE));
        pending
            .ack
            .into_iter()
            .filter_map(|s| {
                Some(SignedNoticeAck {
                    body: hex::decode(s.body).ok()?,
                    signature: hex::decode(s.signature).ok()?,
                })
            })
            .collect()
    }

    /// Takes `sent` off the queue.
    pub(super) fn remove_sent(&self, sent: &SignedNoticeAck) {
        let _guard = lock(&self.files);
        let path = self.dir.join(PENDING_FILE);
        let mut pending: Pending = read_toml(&path);
        let body = hex::encode(&sent.body);
        pending.ack.retain(|s| s.body != body);
        write_toml(&path, &pending);
    }

    /// Sends queued acknowledgements to the collector until it has them,
    /// retrying with backoff; one the collector refuses for good is dropped.
    pub async fn send(self, enrolment: Enrolment) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let link = crate::link::CollectorLink::shared(
            &enrolment.agent_id,
            &enrolment.addresses(),
            &enrolment.fingerprint,
        );
        loop {
            let pending = self.pending();
            if pending.is_empty() {
                self.queued.notified().await;
                continue;
            }
            match self.send_all(&link, pending).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "notice acknowledgements not delivered; will retry");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn send_all(
        &self,
        link: &crate::link::CollectorLink,
        pending: Vec<SignedNoticeAck>,
    ) -> Result<(), String> {
        let lease = link.channel().await.map_err(|e| e.to_string())?;
        let mut client = NoticesClient::new(lease.channel.clone());
        for ack in pending {
            match client.acknowledge(ack.clone()).await {
                Ok(reply) => {
                    tracing::info!(
                        stored = reply.into_inner().stored,
                        "notice acknowledgement delivered"
                    );
                    self.remove_sent(&ack);
                }
                Err(s) if refused_for_good(s.code()) => {
                    tracing::error!(code = ?s.code(), reason = s.message(), "notice acknowledgement refused by the collector; dropped");
                    self.remove_sent(&ack);
                }
                Err(s) => {
                    link.check(&lease, &s).await;
                    return Err(s.message().to_owned());
                }
            }
        }
        Ok(())
    }
}

/// Refusals that resending the same bytes can never overcome.
fn refused_for_good(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::ResourceExhausted
    )
}

/// Signs acknowledgements for this agent, pupil and station.
#[derive(Clone)]
pub struct Acknowledger {
    pub identity: Arc<Identity>,
    pub agent_id: String,
    pub user: String,
    pub station: String,
}

impl std::fmt::Debug for Acknowledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acknowledger")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl Acknowledger {
    /// The signed acknowledgement of `notice` (whose body's SHA-256 is
    /// `sha256`) by this pupil, now.
    pub fn sign(&self, notice: &Notice, sha256: Vec<u8>) -> SignedNoticeAck {
        use ring::rand::SecureRandom;
        let mut id = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut id)
            .expect("the system random source works");
        self.sign_as(notice, sha256, &hex::encode(id), crate::session::now_ms())
    }

    /// [`Self::sign`] with a given id and time (test vectors).
    pub fn sign_as(
        &self,
        notice: &Notice,
        sha256: Vec<u8>,
        ack_id: &str,
        time_ms: i64,
    ) -> SignedNoticeAck {
        let cut = |text: &str| {
            let mut text = text.to_owned();
            crate::event::truncate_at_char_boundary(
                &mut text,
                tutela_proto::limits::MAX_NAME_BYTES,
            );
            text
        };
        let body = NoticeAckBody {
            agent_id: self.agent_id.clone(),
            ack_id: ack_id.to_owned(),
            user: cut(&self.user),
            station: cut(&self.station),
            group: notice.group.clone(),
            version: notice.version,
            time_ms,
            notice_sha256: sha256,
        }
        .encode_to_vec();
        SignedNoticeAck {
            signature: self.identity.sign(&tutela_proto::notice_ack_message(&body)),
            body,
        }
    }
}
