//! The trust gaps an independent agent found (issue: a protocol others can
//! implement), each against the real collector binary: revocation holds from
//! the moment `agents revoke` returns, heartbeats cannot be replayed, the
//! collector enforces every bound the agent applies and names the real reason
//! for each refusal, and every signature is bound to its kind of message.

use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tutela_agent::event::{seal, sha256, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::limits::{MAX_FIELD_BYTES, MAX_MATCHES};
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::rules_client::RulesClient;
use tutela_proto::v1::{
    AckStatus, CaptureInfo, EventBody, HeartbeatBody, Observation, RuleMatch, SignedEvent,
    SignedHeartbeat, SignedSubscribe, SubscribeBody,
};
use tutela_tests::{Agent, Collector, Scratch};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn matches(n: usize) -> Vec<RuleMatch> {
    (0..n)
        .map(|i| RuleMatch {
            rule_id: format!("violence/r{i}"),
            category: "violence".into(),
            severity: 4,
            term: "test".into(),
            start: 0,
            end: 2,
        })
        .collect()
}

fn draft() -> EventDraft {
    EventDraft {
        time_ms: now_ms(),
        user: "pupil.two".into(),
        station: "LAB2-PC01".into(),
        observation: Observation {
            context: "a protocol test".into(),
            ..Default::default()
        },
        matches: matches(1),
        evidence: None,
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

/// An event body as an independent agent might build it, unbounded, signed
/// as the protocol says.
fn signed_body(identity: &Identity, body: &EventBody, capture: Vec<u8>) -> SignedEvent {
    let body = body.encode_to_vec();
    SignedEvent {
        signature: identity.sign(&tutela_proto::event_message(&body)),
        body,
        capture,
    }
}

fn body(agent_id: &str, seq: u64, prev_hash: [u8; 32]) -> EventBody {
    EventBody {
        event_id: format!("{seq:032x}"),
        agent_id: agent_id.into(),
        seq,
        prev_hash: prev_hash.to_vec(),
        time_ms: now_ms(),
        user: "pupil.two".into(),
        station: "LAB2-PC01".into(),
        observation: Some(Observation {
            context: "a protocol test".into(),
            ..Default::default()
        }),
        matches: matches(1),
        rules_version: 1,
        count: 1,
        ..Default::default()
    }
}

fn enrolled_agent(scratch: &Scratch) -> (Collector, Enrolment, Identity) {
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    (collector, enrolment, identity)
}

async fn ingest(enrolment: &Enrolment) -> IngestClient<tonic::transport::Channel> {
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    IngestClient::new(channel).max_encoding_message_size(64 * 1024 * 1024)
}

/// Sends events on one stream; the acknowledgements, or the status that ended it.
async fn send(enrolment: &Enrolment, events: Vec<SignedEvent>) -> Result<Vec<AckStatus>, Status> {
    let n = events.len();
    let mut acks = ingest(enrolment)
        .await
        .stream(tokio_stream::iter(events))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.message().await? {
            Some(a) => out.push(a.status()),
            None => break,
        }
    }
    Ok(out)
}

fn heartbeat_body(enrolment: &Enrolment, time_ms: i64) -> Vec<u8> {
    HeartbeatBody {
        agent_id: enrolment.agent_id.clone(),
        time_ms,
        agent_version: "test".into(),
        station: "LAB2-PC01".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

async fn heartbeat(enrolment: &Enrolment, signed: SignedHeartbeat) -> Result<(), Status> {
    ingest(enrolment).await.heartbeat(signed).await.map(|_| ())
}

fn signed_heartbeat(identity: &Identity, body: Vec<u8>) -> SignedHeartbeat {
    SignedHeartbeat {
        signature: identity.sign(&tutela_proto::heartbeat_message(&body)),
        body,
    }
}

#[test]
fn revocation_holds_from_the_moment_agents_revoke_returns() {
    let scratch = Scratch::new("revoke-at-once");
    let (collector, enrolment, identity) = enrolled_agent(&scratch);
    let id = enrolment.agent_id.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A stream open before the revocation, and a heartbeat, so the
        // collector has the agent's key at hand when it is revoked.
        let (tx, rx) = mpsc::channel(8);
        let mut acks = ingest(&enrolment)
            .await
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = seal(&identity, &id, 1, [0; 32], 0, draft());
        tx.send(first.to_wire()).await.unwrap();
        let ack = acks.message().await.unwrap().unwrap();
        assert_eq!(ack.status(), AckStatus::Stored);
        heartbeat(
            &enrolment,
            signed_heartbeat(&identity, heartbeat_body(&enrolment, now_ms())),
        )
        .await
        .unwrap();

        let out = tutela_tests::run_ok(collector.cmd().args(["agents", "revoke", &id])).unwrap();
        assert!(out.contains("revoked"), "{out}");

        // On the stream already open: refused, not stored.
        let second = seal(&identity, &id, 2, first.body_hash(), 0, draft());
        tx.send(second.to_wire()).await.unwrap();
        let status = acks.message().await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("revoked"), "{status:?}");
        // On a new stream.
        let third = seal(&identity, &id, 3, second.body_hash(), 0, draft());
        let status = send(&enrolment, vec![third.to_wire()]).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        // A heartbeat.
        let status = heartbeat(
            &enrolment,
            signed_heartbeat(&identity, heartbeat_body(&enrolment, now_ms() + 1)),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    });
    let alerts = collector.alerts().unwrap();
    assert_eq!(
        alerts.len(),
        1,
        "only the event before the revocation: {alerts:?}"
    );
}

#[test]
fn stale_and_replayed_heartbeats_are_refused() {
    let scratch = Scratch::new("heartbeat-replay");
    let (_collector, enrolment, identity) = enrolled_agent(&scratch);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fresh = signed_heartbeat(&identity, heartbeat_body(&enrolment, now_ms()));
        heartbeat(&enrolment, fresh.clone()).await.unwrap();

        // The same heartbeat again: a replay.
        let status = heartbeat(&enrolment, fresh.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(status.message().contains("replay"), "{status:?}");

        // A day old, and a day ahead: stale.
        for offset in [-86_400_000, 86_400_000] {
            let old = signed_heartbeat(&identity, heartbeat_body(&enrolment, now_ms() + offset));
            let status = heartbeat(&enrolment, old).await.unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(status.message().contains("clock"), "{status:?}");
            // With the collector's clock, for an agent whose own is wrong.
            let collector_ms: i64 = status
                .metadata()
                .get(tutela_proto::COLLECTOR_TIME_METADATA)
                .expect("the collector's time")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (collector_ms - now_ms()).abs() < 3_600_000,
                "{collector_ms}"
            );
        }

        // Signed over the bare body (protocol 1): refused, and said so.
        let body = heartbeat_body(&enrolment, now_ms() + 5);
        let bare = SignedHeartbeat {
            signature: identity.sign(&body),
            body,
        };
        let status = heartbeat(&enrolment, bare).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("version 1"), "{status:?}");

        // An event's signature does not make a heartbeat: the same key over
        // the same bytes under another kind's domain.
        let body = heartbeat_body(&enrolment, now_ms() + 10);
        let crossed = SignedHeartbeat {
            signature: identity.sign(&tutela_proto::event_message(&body)),
            body,
        };
        let status = heartbeat(&enrolment, crossed).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

        // A newer heartbeat is still accepted.
        let newer = signed_heartbeat(&identity, heartbeat_body(&enrolment, now_ms() + 20));
        heartbeat(&enrolment, newer).await.unwrap();

        // A subscription signed over its bare body is refused too.
        let body = SubscribeBody {
            agent_id: enrolment.agent_id.clone(),
            time_ms: now_ms(),
            ..Default::default()
        }
        .encode_to_vec();
        let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
            .await
            .unwrap();
        let status = RulesClient::new(channel)
            .subscribe(SignedSubscribe {
                signature: identity.sign(&body),
                body,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    });
}

#[test]
fn the_collector_enforces_the_bounds_the_agent_applies() {
    let scratch = Scratch::new("collector-bounds");
    let (collector, enrolment, identity) = enrolled_agent(&scratch);
    let id = enrolment.agent_id.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // At the limits: stored.
        let mut at_limits = body(&id, 1, [0; 32]);
        at_limits.matches = matches(MAX_MATCHES);
        at_limits.observation.as_mut().unwrap().url = "u".repeat(MAX_FIELD_BYTES);
        let first = signed_body(&identity, &at_limits, Vec::new());
        let acks = send(&enrolment, vec![first.clone()]).await.unwrap();
        assert_eq!(acks, [AckStatus::Stored]);
        let prev = sha256(&first.body);

        // One match too many.
        let mut over = body(&id, 2, prev);
        over.matches = matches(MAX_MATCHES + 1);
        let status = send(&enrolment, vec![signed_body(&identity, &over, Vec::new())])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("33 matches"), "{status:?}");
        assert_eq!(
            status.metadata().get(tutela_proto::REJECTED_SEQ_METADATA),
            Some(&"2".parse().unwrap()),
            "the refusal names the event"
        );

        // A field one byte too long, and a match outside its context.
        let mut over = body(&id, 2, prev);
        over.observation.as_mut().unwrap().window_title = "t".repeat(MAX_FIELD_BYTES + 1);
        let status = send(&enrolment, vec![signed_body(&identity, &over, Vec::new())])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("window title"), "{status:?}");
        let mut over = body(&id, 2, prev);
        over.matches[0].end = 400;
        let status = send(&enrolment, vec![signed_body(&identity, &over, Vec::new())])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("span"), "{status:?}");

        // A capture whose size differs from its signed size says so.
        let jpeg = vec![0xd8, 0xff, 1, 2, 3, 4];
        let mut sized = body(&id, 2, prev);
        sized.capture = Some(CaptureInfo {
            sha256: sha256(&jpeg).to_vec(),
            size: jpeg.len() as u64,
            width: 1,
            height: 1,
            mime: "image/jpeg".into(),
        });
        let mut short = jpeg.clone();
        short.pop();
        let status = send(&enrolment, vec![signed_body(&identity, &sized, short)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        assert!(
            status.message().contains("signed size") && !status.message().contains("SHA-256"),
            "{status:?}"
        );

        // The agent's own events fit: a draft far over every limit is cut.
        let mut huge = draft();
        huge.matches = matches(400);
        huge.observation.url = "ü".repeat(5000);
        huge.evidence = Some(Evidence {
            jpeg,
            width: 1,
            height: 1,
        });
        let sealed = seal(&identity, &id, 2, prev, 0, huge);
        let acks = send(&enrolment, vec![sealed.to_wire()]).await.unwrap();
        assert_eq!(acks, [AckStatus::Stored]);
    });
    std::thread::sleep(Duration::from_millis(100));
    let alerts = collector.alerts().unwrap();
    assert_eq!(alerts.len(), 2, "only the two events within the limits");
}
