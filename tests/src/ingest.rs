//! Sending signed events to a real collector as an enrolled agent would.

use tutela_agent::identity::Enrolment;
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{AckStatus, SignedEvent};

/// Streams `events` over one ingest stream to the collector `enrolment`
/// names and waits until the event numbered `last` is acknowledged; every
/// acknowledgement must say stored.
pub fn stream_stored(enrolment: &Enrolment, events: Vec<SignedEvent>, last: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
            .await
            .unwrap();
        let mut acks = IngestClient::new(channel)
            .stream(tokio_stream::iter(events))
            .await
            .unwrap()
            .into_inner();
        // An acknowledgement covers its event and every earlier one on the stream.
        let mut acked = 0;
        while acked < last {
            let ack = acks
                .message()
                .await
                .unwrap()
                .expect("every event acknowledged");
            assert_eq!(ack.status, AckStatus::Stored as i32, "{ack:?}");
            acked = ack.seq;
        }
    });
}
