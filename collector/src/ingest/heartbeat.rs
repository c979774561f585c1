//! Heartbeats: checked (size, enrolled and unrevoked agent, signature, clock)
//! and recorded through the writer, with the agent's reported problems kept short.

use prost::Message;
use tonic::{Response, Status};
use tutela_proto::v1::{HeartbeatBody, HeartbeatReply, SignedHeartbeat};

use super::{protocol_1_hint, revoked_status, IngestService};
use crate::signature;
use crate::store::agents::HeartbeatRow;
use crate::store::{self, StoreError, Tx};

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
pub(super) fn agent_problems(problems: &[String]) -> String {
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

impl IngestService {
    pub(super) async fn record_heartbeat(
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
