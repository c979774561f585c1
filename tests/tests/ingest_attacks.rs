//! Attacks on the collector's ingest: each is refused with its own status,
//! nothing is stored, and the collector stays up for honest agents.

use std::time::Duration;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tutela_agent::event::{seal, EventDraft, Evidence, SealedEvent};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::pinning;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{Ack, AckStatus, Observation, RuleMatch, SignedEvent};
use tutela_tests::{Agent, Collector, Scratch};

fn draft(capture: Option<Vec<u8>>) -> EventDraft {
    EventDraft {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        user: "pupil.two".into(),
        station: "LAB2-PC01".into(),
        observation: Observation {
            context: "an attack test".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "violence/test".into(),
            category: "violence".into(),
            severity: 4,
            term: "test".into(),
            start: 0,
            end: 2,
        }],
        evidence: capture.map(|jpeg| Evidence {
            jpeg,
            width: 1,
            height: 1,
        }),
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

/// Sends events on one stream; returns the acks, or the status that ended it.
async fn send(enrolment: &Enrolment, events: Vec<SignedEvent>) -> Result<Vec<Ack>, Status> {
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let mut client = IngestClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    let n = events.len();
    let mut acks = client
        .stream(tokio_stream::iter(events))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.message().await? {
            Some(a) => out.push(a),
            None => break,
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default)]
struct RawCodec;
#[derive(Debug)]
struct RawEncoder;
#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A gRPC frame whose payload is not a protobuf message at all.
async fn send_garbage(enrolment: &Enrolment) -> Status {
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let garbage = vec![0xff_u8, 0xff, 0xff, 0xff, 0x0f, 0x13, 0x37];
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tutela.v1.Ingest/Stream");
    let result = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![garbage])),
            path,
            RawCodec,
        )
        .await;
    match result {
        Err(status) => status,
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.message().await {
                    Err(status) => return status,
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("garbage frame accepted without an error"),
                }
            }
        }
    }
}

fn sealed(
    identity: &Identity,
    agent_id: &str,
    seq: u64,
    prev: [u8; 32],
    capture: Option<Vec<u8>>,
) -> SealedEvent {
    seal(identity, agent_id, seq, prev, 0, draft(capture))
}

/// A serving collector and an agent enrolled with it (identity and record only).
fn enrolled_agent(scratch: &Scratch) -> (Collector, Enrolment, Identity) {
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    (collector, enrolment, identity)
}

#[test]
fn attacks_are_refused_with_their_own_status_and_nothing_is_stored() {
    let scratch = Scratch::new("attacks");
    let (collector, enrolment, identity) = enrolled_agent(&scratch);
    let id = enrolment.agent_id.clone();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // An honest first event is stored.
        let first = sealed(&identity, &id, 1, [0; 32], None);
        let acks = send(&enrolment, vec![first.to_wire()]).await.unwrap();
        assert_eq!(acks[0].status, AckStatus::Stored as i32);

        // Forged signature: the right agent id, signed by another key.
        let forger = Identity::generate();
        let forged = sealed(&forger, &id, 2, first.body_hash(), None);
        let status = send(&enrolment, vec![forged.to_wire()]).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("signature"), "{status:?}");

        // Replay of the stored event: acknowledged as a duplicate, not stored again.
        let acks = send(&enrolment, vec![first.to_wire()]).await.unwrap();
        assert_eq!(acks[0].status, AckStatus::Duplicate as i32);

        // Same sequence number, different content: refused.
        let conflicting = sealed(&identity, &id, 1, [0; 32], None);
        let status = send(&enrolment, vec![conflicting.to_wire()])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

        // Tampered capture: the bytes no longer match the signed SHA-256.
        let mut tampered = sealed(
            &identity,
            &id,
            2,
            first.body_hash(),
            Some(vec![0xd8, 0xff, 1, 2, 3, 4]),
        );
        tampered.capture[3] ^= 0xff;
        let status = send(&enrolment, vec![tampered.to_wire()])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        assert!(status.message().contains("SHA-256"), "{status:?}");

        // Unenrolled agent.
        let stranger = Identity::generate();
        let unknown = sealed(&stranger, "ag-000000000000", 1, [0; 32], None);
        let status = send(&enrolment, vec![unknown.to_wire()]).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains("not enrolled"), "{status:?}");

        // Oversized: a 3 MiB capture, correctly hashed and signed.
        let big = sealed(
            &identity,
            &id,
            2,
            first.body_hash(),
            Some(vec![7u8; 3 * 1024 * 1024]),
        );
        let status = send(&enrolment, vec![big.to_wire()]).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        // Garbage frame.
        let status = send_garbage(&enrolment).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

        // Still up, and the honest agent carries on.
        let second = sealed(
            &identity,
            &id,
            2,
            first.body_hash(),
            Some(vec![0xd8, 0xff, 9, 9]),
        );
        let acks = send(&enrolment, vec![second.to_wire()]).await.unwrap();
        assert_eq!(acks[0].status, AckStatus::Stored as i32);
    });
    std::thread::sleep(Duration::from_millis(200));
    let alerts = collector.alerts().unwrap();
    assert_eq!(alerts.len(), 2, "only the two honest events are stored");
    assert_eq!(alerts[1]["has_capture"], true);
    let log = collector.log_text();
    for code in [
        "Unauthenticated",
        "DataLoss",
        "NotFound",
        "ResourceExhausted",
        "InvalidArgument",
    ] {
        assert!(
            log.contains(code),
            "collector logged the {code} refusal:\n{log}"
        );
    }
    // The capture is encrypted at rest: its plain bytes are not in the database.
    let db = std::fs::read(collector.dir.join("tutela.db")).unwrap();
    let wal = std::fs::read(collector.dir.join("tutela.db-wal")).unwrap_or_default();
    let needle = [0xd8, 0xff, 9, 9];
    assert!(!db.windows(4).any(|w| w == needle) && !wal.windows(4).any(|w| w == needle));
}

#[test]
fn revoked_agent_is_refused() {
    let scratch = Scratch::new("revoked");
    let (collector, enrolment, identity) = enrolled_agent(&scratch);
    tutela_tests::run_ok(
        collector
            .cmd()
            .args(["agents", "revoke", &enrolment.agent_id]),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt
        .block_on(send(
            &enrolment,
            vec![sealed(&identity, &enrolment.agent_id, 1, [0; 32], None).to_wire()],
        ))
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(collector.alert_count(), 0);
}

/// Sends events on one stream; returns the acknowledgements that came before
/// the status that ended the stream.
async fn send_until_refused(enrolment: &Enrolment, events: Vec<SignedEvent>) -> (Vec<Ack>, Status) {
    let channel = pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let mut client = IngestClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    let mut replies = client
        .stream(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    let mut acks = Vec::new();
    loop {
        match replies.message().await {
            Ok(Some(ack)) => acks.push(ack),
            Ok(None) => panic!("the stream ended without a refusal after {acks:?}"),
            Err(status) => return (acks, status),
        }
    }
}

#[test]
fn a_refusal_inside_a_burst_keeps_what_came_before_and_nothing_after() {
    let scratch = Scratch::new("burst-refusal");
    let (collector, enrolment, identity) = enrolled_agent(&scratch);
    let id = enrolment.agent_id.clone();
    // An honest chain of 60, and each event's previous hash.
    let mut prevs = vec![[0u8; 32]];
    let honest: Vec<SealedEvent> = (1..=60)
        .map(|seq| {
            let event = sealed(&identity, &id, seq, *prevs.last().unwrap(), None);
            prevs.push(event.body_hash());
            event
        })
        .collect();
    let prev_of = |seq: u64| prevs[seq as usize - 1];
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Sent at once, so the events reach the collector as runs; the 25th is
    // signed by another key.
    let forger = Identity::generate();
    let mut burst: Vec<SignedEvent> = honest.iter().map(SealedEvent::to_wire).collect();
    burst[24] = sealed(&forger, &id, 25, prev_of(25), None).to_wire();
    let (acks, status) = rt.block_on(send_until_refused(&enrolment, burst));
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("event 25 "),
        "the refusal names the forged event: {status:?}"
    );
    // The agent hears first that everything before the forgery is stored.
    assert_eq!(acks.last().map(|a| a.seq), Some(24), "{acks:?}");
    assert!(acks.iter().all(|a| a.status == AckStatus::Stored as i32));

    // Carrying on from 25: the 40th is over the capture limit.
    let mut burst: Vec<SignedEvent> = honest[24..].iter().map(SealedEvent::to_wire).collect();
    burst[40 - 25] = sealed(
        &identity,
        &id,
        40,
        prev_of(40),
        Some(vec![7u8; 3 * 1024 * 1024]),
    )
    .to_wire();
    let (acks, status) = rt.block_on(send_until_refused(&enrolment, burst));
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(acks.last().map(|a| a.seq), Some(39), "{acks:?}");

    let seqs: Vec<i64> = collector
        .alerts()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=39).collect::<Vec<i64>>(),
        "the events before each refusal are stored, none after"
    );
}

#[test]
fn a_weak_key_cannot_enrol() {
    use tutela_proto::v1::enrolment_client::EnrolmentClient;
    use tutela_proto::v1::EnrolRequest;
    let scratch = Scratch::new("weak-key");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let token =
        tutela_proto::token::EnrolmentToken::decode(&collector.token(&[]).unwrap(), 0).unwrap();
    // The identity point: the signature (R = identity, s = 0) verifies for
    // every message under RFC 8032, so anyone could sign as this agent.
    let mut weak = vec![0u8; 32];
    weak[0] = 1;
    let mut any_signature = vec![0u8; 64];
    any_signature[0] = 1;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt
        .block_on(async {
            let channel = pinning::connect(&token.collector, &token.fingerprint)
                .await
                .unwrap();
            EnrolmentClient::new(channel)
                .enrol(EnrolRequest {
                    token_secret: token.secret.clone(),
                    public_key: weak,
                    station: "LAB2-PC09".into(),
                    agent_version: "test".into(),
                    proof: any_signature,
                    machine_id: String::new(),
                })
                .await
        })
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("weak"), "{status:?}");
    let enrolled: i64 = rusqlite::Connection::open(collector.dir.join("tutela.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM agents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(enrolled, 0, "no agent is enrolled with a weak key");
}
