use super::heartbeat::HeartbeatClock;
use super::*;
use ring::signature::{Ed25519KeyPair, KeyPair};

fn released(key: &Ed25519KeyPair, bundle: &[u8], version: u32, shadow: bool) -> RuleBundle {
    let sha = crate::event::sha256(bundle);
    RuleBundle {
        bundle: bundle.to_vec(),
        version,
        shadow,
        release_signature: key
            .sign(&tutela_proto::release_message(&sha, version, shadow))
            .as_ref()
            .to_vec(),
    }
}

#[test]
fn heartbeat_times_increase_and_follow_the_collectors_clock_after_a_stale_refusal() {
    let clock = HeartbeatClock::new();
    assert_eq!(clock.next(1_000), 1_000);
    assert_eq!(clock.next(1_000), 1_001, "never the same time twice");
    assert_eq!(clock.next(900), 1_002, "never backwards");
    // A replay refusal teaches nothing; a stale one carries the collector's clock.
    assert!(!clock.learn(&tonic::Status::already_exists("replay"), 2_000));
    let mut stale = tonic::Status::failed_precondition("stale");
    assert!(!clock.learn(&stale, 2_000), "no clock without the metadata");
    stale.metadata_mut().insert(
        tutela_proto::COLLECTOR_TIME_METADATA,
        "86402000".parse().unwrap(),
    );
    assert!(clock.learn(&stale, 2_000));
    assert_eq!(clock.next(3_000), 86_403_000);
    // A station a day ahead is brought back too.
    let ahead = HeartbeatClock::new();
    assert_eq!(ahead.next(86_400_000), 86_400_000);
    let mut stale = tonic::Status::failed_precondition("stale");
    stale.metadata_mut().insert(
        tutela_proto::COLLECTOR_TIME_METADATA,
        "5000".parse().unwrap(),
    );
    assert!(ahead.learn(&stale, 86_400_000));
    assert_eq!(ahead.next(86_401_000), 6_000);
}

#[test]
fn the_role_version_and_bytes_of_a_bundle_are_bound_by_its_release_signature() {
    let rng = ring::rand::SystemRandom::new();
    let key =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let public = key.public_key().as_ref().to_vec();
    let shadow = released(&key, b"bundle", 7, true);
    assert!(release_verifies(&public, &shadow));
    // Made live by flipping the flag: refused.
    let flipped = RuleBundle {
        shadow: false,
        ..shadow.clone()
    };
    assert!(!release_verifies(&public, &flipped));
    let renumbered = RuleBundle {
        version: 8,
        ..shadow.clone()
    };
    assert!(!release_verifies(&public, &renumbered));
    let swapped = RuleBundle {
        bundle: b"other".to_vec(),
        ..shadow.clone()
    };
    assert!(!release_verifies(&public, &swapped));
    let unsigned = RuleBundle {
        release_signature: Vec::new(),
        ..shadow
    };
    assert!(!release_verifies(&public, &unsigned));
    assert_eq!(
        check_released(7, Some(8)).unwrap_err().to_string(),
        "rule bundle rejected: it holds version 7 but was released as version 8"
    );
}
