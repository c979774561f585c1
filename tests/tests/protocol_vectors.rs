//! The test vectors of `docs/PROTOCOL.md` (`docs/protocol-vectors.json`) are
//! rebuilt here from fixed keys and fields with the real encoding and signing
//! code (the agent's event sealing and identity, the protocol crate's signed
//! bytes and token, the rule engine's bundle signer) and compared with the
//! file byte for byte, so a change to the code that changes the wire breaks
//! this test until the document changes with it. Each vector is also checked
//! by the real verifier on the receiving side (agent for the collector's
//! signatures; the collector's own check is in `collector/tests`).
//!
//! After a deliberate protocol change, `TUTELA_WRITE_VECTORS=1 cargo test -p
//! tutela-tests --test protocol_vectors` writes the file again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::{json, Value};
use tutela_agent::event::{seal, sha256, EventDraft, Evidence};
use tutela_agent::identity::Identity;
use tutela_proto::token::EnrolmentToken;
use tutela_proto::v1::{
    Exemption, ExemptionSet, HeartbeatBody, Observation, RuleBundle, RuleMatch, SignedExemptions,
    Source, SubscribeBody,
};

/// RFC 8032 section 7.1, tests 1, 2 and 3: the agent, the collector's
/// rule-bundle key, and the agent's new key in a re-key.
const AGENT_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const COLLECTOR_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const NEW_AGENT_SEED: &str = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";

const AGENT_ID: &str = "ag-0123456789abcdef";
const GROUP: &str = "year-10";
const PACK: &str = "[pack]\nid = \"vectors\"\nname = \"Vectors\"\nversion = 7\nlanguage = \"en-GB\"\n\n[categories.weapons]\nseverity = 4\n\n[[terms]]\ncategory = \"weapons\"\nterms = [\"zip gun\"]\n";

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol-vectors.json")
}

fn keypair(seed_hex: &str) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&hex::decode(seed_hex).unwrap()).unwrap()
}

/// The agent's own identity type, loaded from a key file holding `seed`
/// (PKCS#8 v2, as the agent stores its key).
fn identity(seed_hex: &str, dir: &std::path::Path) -> Identity {
    let public = keypair(seed_hex).public_key().as_ref().to_vec();
    let mut pkcs8 = hex::decode("3053020101300506032b657004220420").unwrap();
    pkcs8.extend(hex::decode(seed_hex).unwrap());
    pkcs8.extend(hex::decode("a123032100").unwrap());
    pkcs8.extend(&public);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("agent.key"), &pkcs8).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    assert_eq!(identity.public_key(), public.as_slice());
    identity
}

fn key_json(seed_hex: &str) -> Value {
    json!({
        "seed": seed_hex,
        "public_key": hex::encode(keypair(seed_hex).public_key().as_ref()),
    })
}

/// A signed body: its bytes, the signed bytes and the signature.
fn signed(body: &[u8], message: &[u8], signature: &[u8]) -> Value {
    json!({
        "body": hex::encode(body),
        "signed_bytes": hex::encode(message),
        "signature": hex::encode(signature),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    let (Value::Object(a_map), Value::Object(b_map)) = (&mut a, b) else {
        panic!("objects")
    };
    a_map.extend(b_map);
    a
}

fn event_draft(seq: u64) -> EventDraft {
    EventDraft {
        time_ms: 1_767_225_600_000 + seq as i64,
        user: "pupil.one".into(),
        station: "LAB1-PC07".into(),
        observation: Observation {
            source: Source::Typed as i32,
            context: "i want to buy a zip gun".into(),
            app: "chromium".into(),
            window_title: "Search".into(),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            rule_id: "weapons/zip-gun".into(),
            category: "weapons".into(),
            severity: 4,
            term: "zip gun".into(),
            start: 16,
            end: 23,
        }],
        evidence: (seq == 2).then(|| Evidence {
            jpeg: vec![0xff, 0xd8, 0xff, 0xd9],
            width: 1,
            height: 1,
        }),
        rules_version: 7,
        count: 1,
        event_id: Some(format!("0190f0e0d0c0b0a0908070605040302{seq}")),
        repeat_of: String::new(),
    }
}

fn build(scratch: &std::path::Path) -> Value {
    let agent = identity(AGENT_SEED, &scratch.join("agent"));
    let new_agent = identity(NEW_AGENT_SEED, &scratch.join("new-agent"));
    let collector = keypair(COLLECTOR_SEED);
    let collector_public = collector.public_key().as_ref().to_vec();

    let token = EnrolmentToken {
        collector: "collector.school.lan:7443".into(),
        fingerprint: hex::encode(sha256(b"a certificate's DER bytes")),
        secret: "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7".into(),
        expires_ms: 1_767_225_600_000,
        fallbacks: Vec::new(),
    };
    let token_text = token.encode();
    assert_eq!(
        EnrolmentToken::decode(&token_text, token.expires_ms - 1),
        Ok(token.clone())
    );

    let proof = tutela_proto::enrol_proof_message(&token.secret);
    let enrol = json!({
        "token_secret": token.secret,
        "signed_bytes": hex::encode(&proof),
        "signature": hex::encode(agent.sign(&proof)),
    });

    let rekey_time = 1_767_225_600_123_i64;
    let rekey_bytes = tutela_proto::rekey_message(AGENT_ID, new_agent.public_key(), rekey_time);
    let rekey = json!({
        "agent_id": AGENT_ID,
        "new_public_key": hex::encode(new_agent.public_key()),
        "time_ms": rekey_time,
        "signed_bytes": hex::encode(&rekey_bytes),
        "old_signature": hex::encode(agent.sign(&rekey_bytes)),
        "new_signature": hex::encode(new_agent.sign(&rekey_bytes)),
    });

    let first = seal(&agent, AGENT_ID, 1, [0; 32], 0, event_draft(1));
    let second = seal(&agent, AGENT_ID, 2, first.body_hash(), 0, event_draft(2));
    let events: Vec<Value> = [&first, &second]
        .iter()
        .map(|e| {
            merge(
                signed(&e.body, &tutela_proto::event_message(&e.body), &e.signature),
                json!({
                    "seq": e.seq,
                    "body_sha256": hex::encode(e.body_hash()),
                    "capture": hex::encode(&e.capture),
                }),
            )
        })
        .collect();

    let heartbeat_body = HeartbeatBody {
        agent_id: AGENT_ID.into(),
        time_ms: 1_767_225_660_000,
        agent_version: "0.1.0".into(),
        rules_version: 7,
        spool_backlog: 2,
        spool_dropped: 0,
        station: "LAB1-PC07".into(),
        shadow_counts: [("weapons/zip-gun".to_owned(), 3_u64)].into(),
        shadow_version: 8,
        machine_id: hex::encode(sha256(b"machine")),
        shadow_run: "run-1".into(),
        problems: Vec::new(),
    }
    .encode_to_vec();
    let heartbeat_message = tutela_proto::heartbeat_message(&heartbeat_body);
    let heartbeat = signed(
        &heartbeat_body,
        &heartbeat_message,
        &agent.sign(&heartbeat_message),
    );

    let subscribe_body = SubscribeBody {
        agent_id: AGENT_ID.into(),
        current_version: 6,
        time_ms: 1_767_225_600_500,
        current_shadow_version: 0,
    }
    .encode_to_vec();
    let subscribe_message = tutela_proto::subscribe_message(&subscribe_body);
    let subscribe = signed(
        &subscribe_body,
        &subscribe_message,
        &agent.sign(&subscribe_message),
    );

    // The rule bundle, made by the rule engine's signer; its signed bytes
    // are built here as the document lays them out, and must be what the
    // signature covers.
    let signed_at_ms = 1_767_225_000_000_i64;
    let bundle = tutela_rules::bundle::sign_at(PACK, &collector, signed_at_ms).unwrap();
    let wire: BTreeMap<String, Value> = serde_json::from_slice(&bundle).unwrap();
    let key_id = tutela_rules::bundle::key_id(&collector_public);
    let mut bundle_bytes = b"tutela-rule-bundle\0".to_vec();
    bundle_bytes.extend(1_u32.to_be_bytes());
    for field in ["vectors", key_id.as_str(), PACK] {
        bundle_bytes.extend((field.len() as u64).to_be_bytes());
        bundle_bytes.extend(field.as_bytes());
    }
    bundle_bytes.extend(7_u32.to_be_bytes());
    bundle_bytes.extend(signed_at_ms.to_be_bytes());
    use base64::Engine;
    let bundle_signature = base64::engine::general_purpose::STANDARD
        .decode(wire["signature"].as_str().unwrap())
        .unwrap();
    UnparsedPublicKey::new(&ED25519, &collector_public)
        .verify(&bundle_bytes, &bundle_signature)
        .expect("the documented bundle layout is what the bundle signer signs");
    tutela_rules::bundle::verify(&bundle, &collector_public, Some(6)).unwrap();
    let bundle_json = json!({
        "pack_toml": PACK,
        "signed_at_ms": signed_at_ms,
        "key_id": key_id,
        "signed_bytes": hex::encode(&bundle_bytes),
        "signature": hex::encode(&bundle_signature),
        "bundle": String::from_utf8(bundle.clone()).unwrap(),
    });

    let releases: Vec<Value> = [false, true]
        .into_iter()
        .map(|shadow| {
            let digest = sha256(&bundle);
            let message = tutela_proto::release_message(&digest, 7, shadow);
            let signature = collector.sign(&message).as_ref().to_vec();
            let update = RuleBundle {
                bundle: bundle.clone(),
                version: 7,
                shadow,
                release_signature: signature.clone(),
            };
            assert!(tutela_agent::rules_sync::release_verifies(
                &collector_public,
                &update
            ));
            json!({
                "shadow": shadow,
                "version": 7,
                "bundle_sha256": hex::encode(digest),
                "signed_bytes": hex::encode(&message),
                "signature": hex::encode(&signature),
            })
        })
        .collect();

    let set_body = ExemptionSet {
        exemptions: vec![Exemption {
            id: 3,
            group: GROUP.into(),
            category: "drugs".into(),
            term: String::new(),
            starts_ms: 1_767_225_600_000,
            ends_ms: 1_767_830_400_000,
        }],
        group: GROUP.into(),
        issued_ms: 1_767_225_600_900,
    }
    .encode_to_vec();
    let set_message = tutela_proto::exemptions_message(&set_body);
    let set_signature = collector.sign(&set_message).as_ref().to_vec();
    let held = tutela_agent::exemption::Exemptions::load(
        &scratch.join("exemptions"),
        GROUP,
        &collector_public,
    );
    held.accept(SignedExemptions {
        body: set_body.clone(),
        signature: set_signature.clone(),
    })
    .expect("the agent accepts the vector's exemption set");
    let exemptions = signed(&set_body, &set_message, &set_signature);

    let notice = tutela_proto::v1::Notice {
        group: GROUP.into(),
        version: 2,
        text: "This computer is monitored to keep you safe.\nRead the acceptable use policy: https://school.example/aup".into(),
        mode: tutela_proto::v1::NoticeMode::OncePerVersion as i32,
        concern_url: "https://tutela.school.example/concern".into(),
        issued_ms: 1_767_225_601_000,
        issue: 0,
    };
    let notice_body = notice.encode_to_vec();
    let notice_message = tutela_proto::notice_message(&notice_body);
    let notice_signature = collector.sign(&notice_message).as_ref().to_vec();
    tutela_agent::notice::Notices::load(&scratch.join("notice"), GROUP, &collector_public)
        .accept(tutela_proto::v1::SignedNotice {
            body: notice_body.clone(),
            signature: notice_signature.clone(),
        })
        .expect("the agent accepts the vector's notice");
    let notice_json = signed(&notice_body, &notice_message, &notice_signature);
    let ack = tutela_agent::notice::Acknowledger {
        identity: std::sync::Arc::new(identity(AGENT_SEED, &scratch.join("ack"))),
        agent_id: AGENT_ID.into(),
        user: "pupil.one".into(),
        station: "LAB1-PC07".into(),
    }
    .sign_as(
        &notice,
        sha256(&notice_body).to_vec(),
        "0194a1b2c3d40000000000000000a0c7",
        1_767_225_660_000,
    );
    let notice_ack = signed(
        &ack.body,
        &tutela_proto::notice_ack_message(&ack.body),
        &ack.signature,
    );

    json!({
        "protocol_version": tutela_proto::PROTOCOL_VERSION,
        "about": "Test vectors of docs/PROTOCOL.md. Hex throughout except where noted; seeds are RFC 8032 private keys (section 7.1 tests 1-3). Bodies are encoded protobuf as sent; signatures are over signed_bytes.",
        "keys": {
            "agent": key_json(AGENT_SEED),
            "agent_new": key_json(NEW_AGENT_SEED),
            "collector_bundle_key": key_json(COLLECTOR_SEED),
        },
        "agent_id": AGENT_ID,
        "token": {
            "collector": token.collector,
            "fingerprint": token.fingerprint,
            "secret": token.secret,
            "expires_ms": token.expires_ms,
            "text": token_text,
        },
        "enrol_proof": enrol,
        "rekey": rekey,
        "events": events,
        "heartbeat": heartbeat,
        "subscribe": subscribe,
        "bundle": bundle_json,
        "releases": releases,
        "exemption_set": exemptions,
        "notice": notice_json,
        "notice_ack": notice_ack,
    })
}

#[test]
fn the_protocol_vectors_are_what_the_code_makes() {
    let scratch = tutela_tests::Scratch::new("protocol-vectors");
    let built = build(&scratch.0);
    let path = vectors_path();
    if std::env::var_os("TUTELA_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&built).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let text = std::fs::read_to_string(&path).expect("docs/protocol-vectors.json");
    let file: Value = serde_json::from_str(&text).unwrap();
    for (key, want) in built.as_object().unwrap() {
        assert_eq!(
            file.get(key),
            Some(want),
            "vector `{key}` differs from what the code makes: change the code back, or change the protocol on purpose (docs/PROTOCOL.md) and write the vectors again"
        );
    }
    assert_eq!(
        file.as_object().unwrap().len(),
        built.as_object().unwrap().len()
    );
}
