use super::*;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tutela_proto::v1::NoticeAckBody;

use crate::identity::Identity;

fn collector_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
}

fn signed(key: &Ed25519KeyPair, group: &str, version: u32, mode: NoticeMode) -> SignedNotice {
    issued(key, group, version, mode, 0)
}

/// Version `version` of `group`'s notice as signed at issue `issue`.
fn issued(
    key: &Ed25519KeyPair,
    group: &str,
    version: u32,
    mode: NoticeMode,
    issue: u64,
) -> SignedNotice {
    let body = Notice {
        group: group.into(),
        version,
        text: format!("Use is monitored (v{version})."),
        mode: mode as i32,
        concern_url: "https://school.test/concern".into(),
        issued_ms: 1,
        issue,
    }
    .encode_to_vec();
    SignedNotice {
        signature: key
            .sign(&tutela_proto::notice_message(&body))
            .as_ref()
            .to_vec(),
        body,
    }
}

#[test]
fn only_a_signed_newer_notice_for_this_group_is_held_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = collector_key();
    let public = key.public_key().as_ref().to_vec();
    let notices = Notices::load(dir.path(), "y10", &public);
    notices
        .accept(signed(&key, "y10", 2, NoticeMode::EverySignIn))
        .unwrap();
    assert!(matches!(
        notices.accept(signed(&key, "y7", 3, NoticeMode::EverySignIn)),
        Err(NoticeError::OtherGroup { .. })
    ));
    assert!(matches!(
        notices.accept(signed(&key, "y10", 1, NoticeMode::EverySignIn)),
        Err(NoticeError::Older {
            offered: 1,
            held: 2
        })
    ));
    let mut forged = signed(&key, "y10", 9, NoticeMode::EverySignIn);
    forged.body[3] ^= 1;
    assert!(matches!(
        notices.accept(forged),
        Err(NoticeError::BadSignature)
    ));
    let other = collector_key();
    assert!(matches!(
        notices.accept(signed(&other, "y10", 9, NoticeMode::EverySignIn)),
        Err(NoticeError::BadSignature)
    ));
    // A signature made for another kind of message does not verify as a notice.
    let mut cross = signed(&key, "y10", 9, NoticeMode::EverySignIn);
    cross.signature = key
        .sign(&tutela_proto::exemptions_message(&cross.body))
        .as_ref()
        .to_vec();
    assert!(matches!(
        notices.accept(cross),
        Err(NoticeError::BadSignature)
    ));
    let again = Notices::load(dir.path(), "y10", &public);
    assert_eq!(lock(&again.held).notice.as_ref().unwrap().version, 2);
    // Another group's station does not take it from disk either.
    let elsewhere = Notices::load(dir.path(), "y7", &public);
    assert!(lock(&elsewhere.held).notice.is_none());
}

#[test]
fn every_sign_in_shows_at_each_start_and_once_per_version_only_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let key = collector_key();
    let notices = Notices::load(dir.path(), "y10", key.public_key().as_ref());
    assert!(notices.due("pupil.one", true).is_none(), "nothing held");
    notices
        .accept(signed(&key, "y10", 1, NoticeMode::EverySignIn))
        .unwrap();
    assert!(notices.due("pupil.one", true).is_some());
    notices.remember("y10", 1, "pupil.one");
    assert!(notices.due("pupil.one", true).is_some(), "every sign-in");
    assert!(
        notices.due("pupil.one", false).is_none(),
        "not again mid-session"
    );
    notices
        .accept(signed(&key, "y10", 2, NoticeMode::OncePerVersion))
        .unwrap();
    assert!(notices.due("pupil.one", false).is_some(), "a new version");
    notices.remember("y10", 2, "pupil.one");
    assert!(notices.due("pupil.one", true).is_none(), "once per version");
    assert!(notices.due("pupil.two", true).is_some(), "per pupil");
}

#[test]
fn acknowledgements_are_queued_on_disk_until_sent() {
    let dir = tempfile::tempdir().unwrap();
    let key = collector_key();
    let notices = Notices::load(dir.path(), "y10", key.public_key().as_ref());
    let ackr = Acknowledger {
        identity: Arc::new(Identity::generate()),
        agent_id: "ag-1".into(),
        user: "pupil.one".into(),
        station: "LAB1-PC07".into(),
    };
    let notice = Notice {
        group: "y10".into(),
        version: 1,
        ..Notice::default()
    };
    let a = ackr.sign(&notice, vec![7; 32]);
    let b = ackr.sign(&notice, vec![7; 32]);
    notices.queue(a.clone());
    notices.queue(b.clone());
    assert_eq!(notices.pending(), [a.clone(), b.clone()]);
    notices.remove_sent(&a);
    assert_eq!(notices.pending(), std::slice::from_ref(&b));
    let body = NoticeAckBody::decode(b.body.as_slice()).unwrap();
    assert_eq!(
        (body.user.as_str(), body.version, body.ack_id.len()),
        ("pupil.one", 1, 32)
    );
    assert!(
        ring::signature::UnparsedPublicKey::new(&ED25519, ackr.identity.public_key())
            .verify(&tutela_proto::notice_ack_message(&b.body), &b.signature)
            .is_ok()
    );
}

#[test]
fn an_older_version_issued_again_is_taken_and_shown_but_replays_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = collector_key();
    let notices = Notices::load(dir.path(), "lab", key.public_key().as_ref());
    let once = NoticeMode::OncePerVersion;
    // North's version 2, from a collector that numbers no issues.
    assert_eq!(
        notices.accept(signed(&key, "lab", 2, once)).unwrap(),
        Applied::Shown
    );
    notices.remember("lab", 2, "pupil.one");
    // The device moves to South, whose notice is version 1: issued again
    // (issue 3) it is taken and shown although its number is lower.
    assert_eq!(
        notices.accept(issued(&key, "lab", 1, once, 3)).unwrap(),
        Applied::Shown
    );
    assert_eq!(notices.held().unwrap().version, 1);
    assert!(notices.due_for("pupil.one", false));
    // Replays of notices issued before it are refused: South's version 1
    // as first issued, North's version 2.
    for replay in [signed(&key, "lab", 1, once), signed(&key, "lab", 2, once)] {
        assert!(matches!(
            notices.accept(replay),
            Err(NoticeError::Older { held: 3, .. })
        ));
    }
    assert_eq!(notices.held().unwrap().version, 1);
    notices.remember("lab", 1, "pupil.one");
    // The same version issued again (another device moved in) is kept but
    // not shown again; the exact bytes held change nothing.
    let again = issued(&key, "lab", 1, once, 4);
    assert_eq!(notices.accept(again.clone()).unwrap(), Applied::Reissued);
    assert_eq!(notices.accept(again).unwrap(), Applied::Unchanged);
    assert!(!notices.due_for("pupil.one", true));
    // It survives a restart.
    let restarted = Notices::load(dir.path(), "lab", key.public_key().as_ref());
    assert!(matches!(
        restarted.accept(issued(&key, "lab", 1, once, 3)),
        Err(NoticeError::Older { held: 4, .. })
    ));
}
