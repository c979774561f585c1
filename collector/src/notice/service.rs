//! `Notices/Acknowledge`: a pupil's acknowledgement of the monitoring notice,
//! signed by the station's agent. Checked like a heartbeat (size, format,
//! enrolled and unrevoked agent, signature over the exact bytes received),
//! then against the notice itself: the group and version must exist and the
//! acknowledged bytes be the ones the collector signed.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use tutela_proto::limits::{MAX_ID_BYTES, MAX_NAME_BYTES, MAX_NOTICE_ACK_BYTES};
use tutela_proto::v1::notices_server::Notices;
use tutela_proto::v1::{NoticeAckBody, NoticeAckReply, SignedNoticeAck};

use super::AckRefusal;
use crate::ingest::AgentKeys;

/// Acknowledgements are stored in the collector's store (either backend),
/// reached through the agent keys' handle.
#[derive(Debug, Clone)]
pub struct NoticesService {
    pub keys: Arc<AgentKeys>,
}

impl NoticesService {
    pub fn new(keys: Arc<AgentKeys>) -> Self {
        Self { keys }
    }
}

/// The fields' limits: ids as in events, names as event names.
fn check_fields(ack: &NoticeAckBody) -> Result<(), Status> {
    for (field, value, limit) in [
        ("agent_id", &ack.agent_id, MAX_ID_BYTES),
        ("ack_id", &ack.ack_id, MAX_ID_BYTES),
        ("user", &ack.user, MAX_NAME_BYTES),
        ("station", &ack.station, MAX_NAME_BYTES),
        ("group", &ack.group, MAX_NAME_BYTES),
    ] {
        if value.len() > limit {
            return Err(Status::invalid_argument(format!(
                "{field} is {} bytes; the limit is {limit}",
                value.len()
            )));
        }
    }
    if ack.ack_id.is_empty() || ack.user.is_empty() || ack.version == 0 {
        return Err(Status::invalid_argument(
            "an acknowledgement needs an ack_id, a user and a notice version",
        ));
    }
    if ack.notice_sha256.len() != 32 {
        return Err(Status::invalid_argument("notice_sha256 must be 32 bytes"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Notices for NoticesService {
    async fn acknowledge(
        &self,
        request: Request<SignedNoticeAck>,
    ) -> Result<Response<NoticeAckReply>, Status> {
        let signed = request.into_inner();
        if signed.body.len() > MAX_NOTICE_ACK_BYTES {
            return Err(Status::resource_exhausted(format!(
                "acknowledgement of {} bytes exceeds the limit of {MAX_NOTICE_ACK_BYTES} bytes",
                signed.body.len()
            )));
        }
        let ack = NoticeAckBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.NoticeAckBody"))?;
        let key = self.keys.get(&ack.agent_id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "agent {} is not enrolled; enrol it with a token from a technician",
                ack.agent_id
            ))
        })?;
        if key.revoked {
            return Err(crate::ingest::revoked_status(&ack.agent_id));
        }
        let key = key.usable(&ack.agent_id)?;
        let message = tutela_proto::notice_ack_message(&signed.body);
        if !crate::signature::verify(key, &message, &signed.signature) {
            return Err(Status::unauthenticated(format!(
                "the acknowledgement's signature does not verify against agent {}'s enrolled key",
                ack.agent_id
            )));
        }
        check_fields(&ack)?;
        let stored =
            super::record_ack_in(self.keys.store(), &ack, &signed.body, &signed.signature).await;
        match stored {
            Ok(stored) => {
                tracing::info!(agent_id = %ack.agent_id, group = %ack.group, version = ack.version, stored, "notice acknowledged");
                Ok(Response::new(NoticeAckReply { stored }))
            }
            Err(e @ (AckRefusal::Db(_) | AckRefusal::Store(_))) => {
                tracing::error!(error = %e, "cannot store a notice acknowledgement");
                Err(Status::unavailable(
                    "the collector cannot store the acknowledgement; retry later",
                ))
            }
            Err(refusal) => {
                tracing::warn!(reason = %refusal, "notice acknowledgement refused");
                Err(Status::failed_precondition(refusal.to_string()))
            }
        }
    }
}
