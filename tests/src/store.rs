//! Events, heartbeats and enrolments straight into a collector's store
//! through its writer and enrolment service (no gRPC, no signatures), for
//! the store tests and the store benchmark.

use std::path::Path;

use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tonic::{Request, Status};
use tutela_collector::enrolment::{new_token, EnrolmentService, TokenSpec};
use tutela_collector::store::agents::HeartbeatRow;
use tutela_collector::store::{Location, Store};
use tutela_collector::writer::{store_failed, Verified, Writer};
use tutela_proto::v1::enrolment_server::Enrolment;
use tutela_proto::v1::{Ack, EnrolRequest, EventBody, Observation, RuleMatch};

/// The store a `postgres://` URL names.
pub fn location(url: &str) -> Location {
    Location::new(Path::new("/nonexistent"), url).unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn keypair() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .unwrap()
}

/// A collector's store handle, writer and enrolment service (two on one
/// database stand for two collectors).
pub struct Node {
    pub store: Store,
    pub writer: Writer,
    pub enrolment: EnrolmentService,
}

pub fn node(rt: &tokio::runtime::Runtime, at: &Location) -> Node {
    let store = rt.block_on(Store::open(at)).unwrap();
    let writer = Writer::start(at.clone(), 1000).unwrap();
    Node {
        store,
        enrolment: EnrolmentService::new(writer.clone(), vec![7; 32]),
        writer,
    }
}

pub async fn token(store: &Store, max_uses: u32) -> String {
    let spec = TokenSpec {
        valid_for_ms: 600_000,
        max_uses,
        group: "lab-1".into(),
        label: String::new(),
        school: "default".into(),
    };
    let (token, row) = new_token(&spec, "127.0.0.1:1", "00");
    store.insert_token(&row).await.unwrap();
    token.secret
}

pub async fn enrol(node: &Node, key: &Ed25519KeyPair, secret: &str) -> Result<String, Status> {
    let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof.extend_from_slice(secret.as_bytes());
    let reply = node
        .enrolment
        .enrol(Request::new(EnrolRequest {
            token_secret: secret.into(),
            public_key: key.public_key().as_ref().to_vec(),
            station: "LAB1-PC01".into(),
            agent_version: "test".into(),
            proof: key.sign(&proof).as_ref().to_vec(),
            machine_id: String::new(),
        }))
        .await?;
    Ok(reply.into_inner().agent_id)
}

/// An agent's events 1..=n, each chained to the one before.
pub fn chain(agent_id: &str, n: u64) -> Vec<(EventBody, Vec<u8>)> {
    let mut prev = [0u8; 32];
    (1..=n)
        .map(|seq| {
            let event = event(agent_id, seq, prev, &format!("typed text {seq}"));
            let body = event.encode_to_vec();
            prev = sha256(&body);
            (event, body)
        })
        .collect()
}

pub fn event(agent_id: &str, seq: u64, prev: [u8; 32], context: &str) -> EventBody {
    EventBody {
        event_id: format!("ev-{agent_id}-{seq}"),
        agent_id: agent_id.into(),
        seq,
        prev_hash: prev.to_vec(),
        time_ms: 1_700_000_000_000 + seq as i64,
        user: "pupil".into(),
        station: "LAB1-PC01".into(),
        observation: Some(Observation {
            context: context.into(),
            ..Default::default()
        }),
        matches: vec![RuleMatch {
            rule_id: "bullying/test".into(),
            category: "bullying".into(),
            severity: 3,
            term: "test".into(),
            start: 0,
            end: 4,
        }],
        rules_version: 1,
        count: 1,
        ..Default::default()
    }
}

pub fn verified(
    event: &EventBody,
    body: &[u8],
    reply: &tutela_collector::writer::Reply,
) -> Verified {
    Verified {
        body: body.to_vec(),
        signature: vec![0; 64],
        body_hash: sha256(body),
        event: event.clone(),
        sealed_capture: None,
        capture_key: None,
        received_ms: 1_700_000_000_000,
        clock_skew: false,
        reply: reply.clone(),
    }
}

/// Submits `events` on one stream of `writer`; returns what it was sent.
pub async fn stream(writer: &Writer, events: &[(EventBody, Vec<u8>)]) -> Vec<Result<Ack, Status>> {
    let (reply, mut replies) = tutela_collector::writer::reply_channel();
    for (event, body) in events {
        writer.submit(verified(event, body, &reply)).await.unwrap();
    }
    drop(reply);
    let mut sent = Vec::new();
    while let Some(r) = replies.recv().await {
        let refused = r.is_err();
        sent.push(r);
        if refused {
            break;
        }
    }
    sent
}

/// Records a heartbeat at agent time `agent_ms` through `writer`; whether
/// it was newer than the last one recorded.
pub async fn heartbeat(writer: &Writer, agent_id: &str, agent_ms: i64) -> Result<bool, Status> {
    let id = agent_id.to_owned();
    writer
        .write_for(agent_id, "heartbeat", move |tx| {
            Box::pin(async move {
                tx.record_heartbeat(&HeartbeatRow {
                    agent_id: &id,
                    seen_ms: agent_ms,
                    agent_version: "test",
                    rules_version: 1,
                    spool_backlog: 0,
                    spool_dropped: 0,
                    agent_ms,
                    problems: "",
                })
                .await
                .map_err(store_failed("heartbeat"))
            })
        })
        .await
}

/// The last acknowledgement, or the refusal, of one stream.
pub async fn outcome(writer: &Writer, events: &[(EventBody, Vec<u8>)]) -> Result<Ack, Status> {
    stream(writer, events).await.pop().expect("an answer")
}
