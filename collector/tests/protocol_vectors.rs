//! The collector's side of the protocol's test vectors
//! (`docs/protocol-vectors.json`, see `docs/PROTOCOL.md`): every vector an
//! agent signs verifies with the collector's own verifier over the bytes the
//! document gives, those bytes are the ones the collector builds from the
//! body, event bodies are within the collector's limits, and the collector's
//! release signature is the one in the file.

use prost::Message;
use serde_json::Value;
use tutela_collector::signature::{verify, PublicKey};
use tutela_proto::v1::EventBody;

/// Builds the signed bytes of one kind of message from its body.
type Domain = fn(&[u8]) -> Vec<u8>;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the vectors file")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

fn agent_key(v: &Value, which: &str) -> PublicKey {
    PublicKey::parse(&bytes(&v["keys"][which]["public_key"])).expect("a usable agent key")
}

#[test]
fn agent_signed_vectors_verify_with_the_collectors_rules() {
    let v = vectors();
    let key = agent_key(&v, "agent");
    let kinds: [(&Value, Domain); 3] = [
        (&v["heartbeat"], tutela_proto::heartbeat_message),
        (&v["subscribe"], tutela_proto::subscribe_message),
        (&v["notice_ack"], tutela_proto::notice_ack_message),
    ];
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    for (vector, message) in events
        .iter()
        .map(|e| (e, tutela_proto::event_message as Domain))
        .chain(kinds)
    {
        let body = bytes(&vector["body"]);
        let signed = bytes(&vector["signed_bytes"]);
        assert_eq!(message(&body), signed, "signed bytes of {vector}");
        let signature = bytes(&vector["signature"]);
        assert!(verify(&key, &signed, &signature), "{vector}");
        // Bound to its kind: the bare body, or another kind's domain, fails.
        assert!(!verify(&key, &body, &signature));
        for other in [tutela_proto::event_message, tutela_proto::heartbeat_message] {
            if other(&body) != signed {
                assert!(!verify(&key, &other(&body), &signature));
            }
        }
    }
    // The events chain, are within the limits, and their captures match.
    let mut prev = vec![0u8; 32];
    for e in events {
        let body = EventBody::decode(bytes(&e["body"]).as_slice()).unwrap();
        assert_eq!(body.prev_hash, prev);
        tutela_collector::bounds::check_event(&body).unwrap();
        let capture = bytes(&e["capture"]);
        if let Some(info) = &body.capture {
            assert_eq!(info.size, capture.len() as u64);
            let digest = ring::digest::digest(&ring::digest::SHA256, &capture);
            assert_eq!(info.sha256, digest.as_ref());
        }
        prev = bytes(&e["body_sha256"]);
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes(&e["body"]));
        assert_eq!(prev, digest.as_ref());
    }
}

#[test]
fn enrolment_and_rekey_vectors_verify_strictly() {
    let v = vectors();
    let ring_key = |which: &str| {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            bytes(&v["keys"][which]["public_key"]),
        )
    };
    let proof = &v["enrol_proof"];
    let secret = proof["token_secret"].as_str().unwrap();
    assert_eq!(
        tutela_proto::enrol_proof_message(secret),
        bytes(&proof["signed_bytes"])
    );
    ring_key("agent")
        .verify(&bytes(&proof["signed_bytes"]), &bytes(&proof["signature"]))
        .unwrap();
    let rekey = &v["rekey"];
    let message = tutela_proto::rekey_message(
        rekey["agent_id"].as_str().unwrap(),
        &bytes(&rekey["new_public_key"]),
        rekey["time_ms"].as_i64().unwrap(),
    );
    assert_eq!(message, bytes(&rekey["signed_bytes"]));
    ring_key("agent")
        .verify(&message, &bytes(&rekey["old_signature"]))
        .unwrap();
    ring_key("agent_new")
        .verify(&message, &bytes(&rekey["new_signature"]))
        .unwrap();
    let token = &v["token"];
    let decoded = tutela_proto::token::EnrolmentToken::decode(
        token["text"].as_str().unwrap(),
        token["expires_ms"].as_i64().unwrap() - 1,
    )
    .unwrap();
    assert_eq!(decoded.secret, token["secret"].as_str().unwrap());
    assert_eq!(decoded.fingerprint, token["fingerprint"].as_str().unwrap());
}

#[test]
fn the_collectors_release_signatures_are_the_vectors() {
    let v = vectors();
    let seed = bytes(&v["keys"]["collector_bundle_key"]["seed"]);
    let signer = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let bundle = v["bundle"]["bundle"].as_str().unwrap().as_bytes().to_vec();
    for r in v["releases"].as_array().unwrap() {
        let version = r["version"].as_u64().unwrap() as u32;
        let shadow = r["shadow"].as_bool().unwrap();
        let update = tutela_collector::publish::release(&signer, &bundle, version, shadow);
        assert_eq!(update.release_signature, bytes(&r["signature"]), "{r}");
        let digest = ring::digest::digest(&ring::digest::SHA256, &bundle);
        assert_eq!(digest.as_ref(), bytes(&r["bundle_sha256"]).as_slice());
    }
    let set = &v["exemption_set"];
    assert_eq!(
        tutela_proto::exemptions_message(&bytes(&set["body"])),
        bytes(&set["signed_bytes"])
    );
    let signature = signer.sign(&bytes(&set["signed_bytes"]));
    assert_eq!(signature.as_ref(), bytes(&set["signature"]).as_slice());
}
