//! `Ingest/Submit`, the unary batch the browser extension sends events with,
//! against a real collector: a batch is stored and acknowledged as a stream
//! would be; a resent batch is acknowledged as duplicate; an authentic event
//! conflicting with a stored one is refused with its sequence number and
//! nothing after it is stored; a forged signature is refused without a
//! sequence number and nothing from it on is stored; more than 256 events
//! are refused whole.

use tutela_agent::event::{seal, EventDraft};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{AckStatus, EventBatch, Observation, RuleMatch, SignedEvent, Source};
use tutela_tests::{Agent, Collector, Scratch};

fn draft(context: &str) -> EventDraft {
    EventDraft {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        user: "pupil.one".into(),
        station: "chromebook-1".into(),
        observation: Observation {
            source: Source::Typed as i32,
            context: context.into(),
            app: "chrome".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "weapons/knife".into(),
            category: "weapons".into(),
            severity: 3,
            term: "knife".into(),
            start: 0,
            end: 5,
        }],
        evidence: None,
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

#[test]
fn a_batch_is_stored_acknowledged_and_refused_as_a_stream_would_be() {
    let scratch = Scratch::new("ingest-batch");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    let mut prev = [0u8; 32];
    let mut events: Vec<SignedEvent> = Vec::new();
    for seq in 1..=5u64 {
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            seq,
            prev,
            0,
            draft("knife in my bag"),
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    // Authentic, but a sequence number already stored with other content.
    let conflicting = seal(
        &identity,
        &enrolment.agent_id,
        2,
        [0; 32],
        0,
        draft("knife"),
    )
    .to_wire();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
            .await
            .unwrap();
        let client = IngestClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
        let submit = |events: Vec<SignedEvent>| {
            let mut client = client.clone();
            async move { client.submit(EventBatch { events }).await }
        };

        let reply = submit(events[..3].to_vec()).await.unwrap().into_inner();
        let ack = reply.ack.expect("stored events are acknowledged");
        assert_eq!((ack.seq, ack.status), (3, AckStatus::Stored as i32));
        assert_eq!(reply.refused_code, 0);

        let again = submit(events[..3].to_vec()).await.unwrap().into_inner();
        assert_eq!(again.ack.unwrap().status, AckStatus::Duplicate as i32);

        // The conflicting event is refused with its seq; 4 after it is not stored.
        let reply = submit(vec![conflicting, events[3].clone()])
            .await
            .unwrap()
            .into_inner();
        assert!(reply.ack.is_none(), "{reply:?}");
        assert_eq!(reply.refused_code, tonic::Code::AlreadyExists as u32);
        assert_eq!(reply.rejected_seq, 2);

        // Set aside, the agent goes on with 4 and 5.
        let reply = submit(events[3..].to_vec()).await.unwrap().into_inner();
        assert_eq!(reply.ack.unwrap().seq, 5);

        // A forged signature: refused for the sender, no seq, nothing stored.
        let mut forged = seal(&identity, &enrolment.agent_id, 6, prev, 0, draft("knife"));
        forged.signature[0] ^= 1;
        let reply = submit(vec![forged.to_wire()]).await.unwrap().into_inner();
        assert_eq!(reply.refused_code, tonic::Code::Unauthenticated as u32);
        assert_eq!(reply.rejected_seq, 0);

        let too_many = vec![events[0].clone(); 257];
        let status = submit(too_many).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    });
    let seqs: Vec<i64> = collector
        .all_alerts()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 5, "{seqs:?}");
    for seq in 1..=5 {
        assert!(seqs.contains(&seq), "{seqs:?}");
    }
}
