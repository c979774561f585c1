//! `Ingest/Submit`: events in one unary call, for clients that cannot stream
//! upward (the browser extension speaks gRPC-Web, which has no client
//! streams). Each event goes through exactly the checks and the writer a
//! stream's events do; the reply carries what a stream would have sent: the
//! acknowledgement covering what was stored, then the refusal, if any.

use tonic::{Request, Response, Status};
use tutela_proto::v1::{EventBatch, EventBatchReply};

use crate::ingest::IngestService;

/// Most events in one batch. A client sends more in further calls.
pub const MAX_BATCH_EVENTS: usize = 256;

pub async fn submit(
    service: &IngestService,
    request: Request<EventBatch>,
) -> Result<Response<EventBatchReply>, Status> {
    let peer = request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    let events = request.into_inner().events;
    if events.len() > MAX_BATCH_EVENTS {
        return Err(Status::resource_exhausted(format!(
            "a batch of {} events is over the limit of {MAX_BATCH_EVENTS}; send the rest in another call",
            events.len()
        )));
    }
    let mut run = Vec::with_capacity(events.len());
    let mut before_signatures = None;
    for signed in events {
        match service.receive(signed).await {
            Ok(received) => run.push(received),
            Err(status) => {
                before_signatures = Some(status);
                break;
            }
        }
    }
    let (tx, mut rx) = crate::writer::reply_channel();
    // A refusal within the run comes before the one that ended it.
    let refusal = service.ingest_run(run, &tx).await.or(before_signatures);
    if let Some(status) = refusal {
        tracing::warn!(peer, code = ?status.code(), reason = status.message(), "event refused");
        service.writer.refuse(status, tx.clone()).await;
    }
    drop(tx);
    let mut reply = EventBatchReply::default();
    // The writer sends the acknowledgement, then a refusal; it keeps a
    // refused channel open until its receiver is gone, so stop at one.
    while let Some(sent) = rx.recv().await {
        match sent {
            Ok(ack) => reply.ack = Some(ack),
            Err(status) => {
                reply.refused_code = status.code() as u32;
                reply.refused_message = status.message().to_owned();
                reply.rejected_seq = status
                    .metadata()
                    .get(tutela_proto::REJECTED_SEQ_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                break;
            }
        }
    }
    Ok(Response::new(reply))
}
