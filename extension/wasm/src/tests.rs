//! The extension's checks on what the collector sends, natively: a forged,
//! tampered or mislabelled bundle and a forged or stale exemption set are
//! refused and leave the rules in force.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use tutela_proto::v1::{
    rules_update, Exemption, ExemptionSet, Notice, NoticeMode, RuleBundle, RulesUpdate,
    SignedExemptions, SignedNotice,
};

use crate::Engine;

const NOW: i64 = 1_800_000_000_000;

fn pack(version: u32) -> String {
    format!(
        "[pack]\nid = \"t\"\nname = \"T\"\nversion = {version}\nlanguage = \"en-GB\"\n\n\
         [categories.weapons]\nseverity = 4\n\n[categories.self-harm]\nseverity = 5\n\n\
         [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [\"pipe bomb\"]\n\n\
         [[terms]]\ncategory = \"self-harm\"\nkind = \"phrase\"\nterms = [\"hurt myself\"]\n"
    )
}

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_pkcs8(&tutela_rules::bundle::generate_pkcs8().unwrap()).unwrap()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .unwrap()
}

/// A `RulesUpdate` carrying `bundle`, released by `releaser` as `version`, live or shadow.
fn release(bundle: Vec<u8>, version: u32, shadow: bool, releaser: &Ed25519KeyPair) -> Vec<u8> {
    let signature = releaser.sign(&tutela_proto::release_message(
        &sha256(&bundle),
        version,
        shadow,
    ));
    RulesUpdate {
        update: Some(rules_update::Update::Bundle(RuleBundle {
            bundle,
            version,
            shadow,
            release_signature: signature.as_ref().to_vec(),
        })),
    }
    .encode_to_vec()
}

fn exemptions(set: &ExemptionSet, signer: &Ed25519KeyPair) -> Vec<u8> {
    let body = set.encode_to_vec();
    let signature = signer.sign(&tutela_proto::exemptions_message(&body));
    RulesUpdate {
        update: Some(rules_update::Update::Exemptions(SignedExemptions {
            body,
            signature: signature.as_ref().to_vec(),
        })),
    }
    .encode_to_vec()
}

fn apply(engine: &mut Engine, update: &[u8], trusted: &Ed25519KeyPair) -> Value {
    engine
        .rules_update(&json!({
            "bytes": STANDARD.encode(update),
            "bundle_key": STANDARD.encode(trusted.public_key().as_ref()),
            "group": "year-10",
            "now_ms": NOW,
        }))
        .unwrap()
}

fn typed_alert(engine: &mut Engine, text: &str) -> Value {
    engine
        .typed(&json!({"tab": 1, "text": text, "flush": true, "now_ms": NOW}))
        .unwrap()
}

#[test]
fn only_a_bundle_signed_and_released_with_the_collector_key_is_applied() {
    let trusted = key();
    let forger = key();
    let mut engine = Engine::default();

    let good = tutela_rules::bundle::sign(&pack(2), &trusted).unwrap();
    let by_forger = tutela_rules::bundle::sign(&pack(3), &forger).unwrap();
    let refused = apply(
        &mut engine,
        &release(by_forger, 3, false, &trusted),
        &trusted,
    );
    assert_eq!(refused["applied"], false, "{refused}");
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("signed by key"));

    let released_by_forger = release(good.clone(), 2, false, &forger);
    let refused = apply(&mut engine, &released_by_forger, &trusted);
    assert_eq!(refused["applied"], false);
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("release signature"));

    // Made live though released as a shadow pack: the flag is signed.
    let mut flipped =
        RulesUpdate::decode(release(good.clone(), 2, true, &trusted).as_slice()).unwrap();
    if let Some(rules_update::Update::Bundle(b)) = flipped.update.as_mut() {
        b.shadow = false;
    }
    let refused = apply(&mut engine, &flipped.encode_to_vec(), &trusted);
    assert_eq!(refused["applied"], false);

    let tampered = String::from_utf8(good.clone())
        .unwrap()
        .replace("pipe bomb", "pipe bong")
        .into_bytes();
    let refused = apply(
        &mut engine,
        &release(tampered, 2, false, &trusted),
        &trusted,
    );
    assert_eq!(refused["applied"], false);
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("does not verify"));
    assert_eq!(engine.version(), 0, "nothing refused was applied");
    assert_eq!(typed_alert(&mut engine, "a pipe bomb "), Value::Null);

    let applied = apply(
        &mut engine,
        &release(good.clone(), 2, false, &trusted),
        &trusted,
    );
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(engine.version(), 2);
    assert_eq!(
        typed_alert(&mut engine, "a pipe bomb ")["matches"][0]["term"],
        "pipe bomb"
    );

    // A replay of the same version, or an older one, changes nothing.
    let again = apply(&mut engine, &release(good, 2, false, &trusted), &trusted);
    assert_eq!(again["applied"], false);
    let older = tutela_rules::bundle::sign(&pack(1), &trusted).unwrap();
    assert_eq!(
        apply(&mut engine, &release(older, 1, false, &trusted), &trusted)["applied"],
        false
    );
    assert_eq!(engine.version(), 2);
}

#[test]
fn only_a_signed_current_exemption_set_for_the_group_silences_a_category() {
    let trusted = key();
    let mut engine = Engine::default();
    let bundle = tutela_rules::bundle::sign(&pack(1), &trusted).unwrap();
    assert_eq!(
        apply(&mut engine, &release(bundle, 1, false, &trusted), &trusted)["applied"],
        true
    );
    let set = |group: &str, issued_ms: i64, category: &str| ExemptionSet {
        exemptions: vec![Exemption {
            id: 1,
            group: group.into(),
            category: category.into(),
            term: String::new(),
            starts_ms: NOW - 1000,
            ends_ms: NOW + 86_400_000,
        }],
        group: group.into(),
        issued_ms,
    };
    let forged = apply(
        &mut engine,
        &exemptions(&set("year-10", NOW, "weapons"), &key()),
        &trusted,
    );
    assert_eq!(forged["applied"], false);
    let other = apply(
        &mut engine,
        &exemptions(&set("year-11", NOW, "weapons"), &trusted),
        &trusted,
    );
    assert_eq!(other["applied"], false);
    assert!(
        !typed_alert(&mut engine, "a pipe bomb ").is_null(),
        "not exempt yet"
    );

    let held = apply(
        &mut engine,
        &exemptions(&set("year-10", NOW, "weapons"), &trusted),
        &trusted,
    );
    assert_eq!(held["applied"], true, "{held}");
    engine.typed_reset(&json!({"tab": 1})).unwrap();
    assert!(
        typed_alert(&mut engine, "another pipe bomb ").is_null(),
        "exempt"
    );
    // Severity 5 is never silenced, even by a signed set naming it.
    let older = apply(
        &mut engine,
        &exemptions(&set("year-10", NOW - 1, "self-harm"), &trusted),
        &trusted,
    );
    assert_eq!(older["applied"], false, "an older set is refused");
    assert!(
        apply(
            &mut engine,
            &exemptions(&set("year-10", NOW + 1, "self-harm"), &trusted),
            &trusted
        )["applied"]
            == true
    );
    engine.typed_reset(&json!({"tab": 1})).unwrap();
    assert!(!typed_alert(&mut engine, "I will hurt myself ").is_null());
}

#[test]
fn event_bodies_keep_to_the_protocol_limits() {
    let long = "x".repeat(5000);
    let reply = crate::handle(
        json!({
            "op": "event_body", "agent_id": "ag-1", "seq": 1,
            "prev_hash": STANDARD.encode([0u8; 32]), "time_ms": NOW, "event_id": "e",
            "observation": {"source": 1, "context": long, "window_title": "é".repeat(3000)},
            "matches": (0..40).map(|i| json!({"rule_id": format!("r{i}"), "category": "weapons",
                "severity": i % 5 + 1, "term": "t", "start": 0, "end": 9000})).collect::<Vec<_>>(),
        })
        .to_string()
        .as_bytes(),
    );
    let body = STANDARD
        .decode(reply["ok"]["body"].as_str().unwrap())
        .unwrap();
    let event = tutela_proto::v1::EventBody::decode(body.as_slice()).unwrap();
    let o = event.observation.unwrap();
    assert_eq!(o.context.len(), 2048);
    assert!(o.window_title.len() <= 2048 && o.window_title.chars().all(|c| c == 'é'));
    assert_eq!(event.matches.len(), 32);
    assert!(event.matches.iter().all(|m| m.end == 2048));
    assert_eq!(event.matches[0].severity, 5, "the most severe are kept");
    let refused = crate::handle(br#"{"op": "event_body", "seq": 0, "prev_hash": ""}"#);
    assert!(refused["error"].is_string());
}

fn notice(group: &str, version: u32, signer: &Ed25519KeyPair) -> Vec<u8> {
    issued_notice(group, version, 0, signer)
}

/// Version `version` of `group`'s notice as the collector signed it at issue `issue`.
fn issued_notice(group: &str, version: u32, issue: u64, signer: &Ed25519KeyPair) -> Vec<u8> {
    let body = Notice {
        group: group.into(),
        version,
        text: format!(
            "Version {version}: use of this device is monitored. https://school.test/aup"
        ),
        mode: NoticeMode::EverySignIn as i32,
        concern_url: "https://school.test/concern".into(),
        issued_ms: NOW,
        issue,
    }
    .encode_to_vec();
    let signature = signer.sign(&tutela_proto::notice_message(&body));
    RulesUpdate {
        update: Some(rules_update::Update::Notice(SignedNotice {
            body,
            signature: signature.as_ref().to_vec(),
        })),
    }
    .encode_to_vec()
}

#[test]
fn a_shadow_bundle_counts_would_be_matches_and_raises_nothing() {
    let trusted = key();
    let mut engine = Engine::default();
    let live = tutela_rules::bundle::sign(&pack(1), &trusted).unwrap();
    assert_eq!(
        apply(&mut engine, &release(live, 1, false, &trusted), &trusted)["applied"],
        true
    );
    let candidate = pack(2).replace("\"pipe bomb\"", "\"pipe bomb\", \"zip gun\"");
    let shadow = tutela_rules::bundle::sign(&candidate, &trusted).unwrap();
    let applied = apply(
        &mut engine,
        &release(shadow.clone(), 2, true, &trusted),
        &trusted,
    );
    assert_eq!(applied["kind"], "shadow", "{applied}");
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(engine.version(), 1, "the live rules stay");

    assert_eq!(
        typed_alert(&mut engine, "a zip gun "),
        Value::Null,
        "a shadow term raises nothing"
    );
    assert!(
        !typed_alert(&mut engine, "a pipe bomb ").is_null(),
        "a live term still alerts"
    );
    let page = engine
        .observe_page(&json!({"url": "https://x.test/", "title": "zip gun forum", "now_ms": NOW}))
        .unwrap();
    assert_eq!(page, Value::Null);
    let report = engine.shadow_report();
    assert_eq!(report["version"], 2);
    let counts = report["counts"].as_object().unwrap();
    let zip = counts.iter().find(|(k, _)| k.contains("zip gun")).unwrap();
    assert_eq!(zip.1, 2, "{report}");
    assert!(counts.keys().any(|k| k.contains("pipe bomb")), "{report}");

    // The same or an older shadow version is refused; the live version 2 ends shadow mode.
    assert_eq!(
        apply(&mut engine, &release(shadow, 2, true, &trusted), &trusted)["applied"],
        false
    );
    let live2 = tutela_rules::bundle::sign(&pack(2), &trusted).unwrap();
    assert_eq!(
        apply(&mut engine, &release(live2, 2, false, &trusted), &trusted)["applied"],
        true
    );
    assert_eq!(engine.shadow_version(), 0);
    assert_eq!(engine.shadow_report()["counts"], json!({}));
}

#[test]
fn only_a_signed_notice_for_the_group_no_older_than_the_held_one_is_shown() {
    let trusted = key();
    let forger = key();
    let mut engine = Engine::default();
    let forged = apply(&mut engine, &notice("year-10", 1, &forger), &trusted);
    assert_eq!(forged["applied"], false, "{forged}");
    let other = apply(&mut engine, &notice("staff", 1, &trusted), &trusted);
    assert_eq!(other["applied"], false, "{other}");
    assert!(other["reason"].as_str().unwrap().contains("another group"));

    let shown = apply(&mut engine, &notice("year-10", 2, &trusted), &trusted);
    assert_eq!(shown["applied"], true, "{shown}");
    assert_eq!(shown["notice"]["version"], 2);
    assert!(shown["notice"]["text"]
        .as_str()
        .unwrap()
        .starts_with("Version 2:"));
    assert_eq!(
        shown["notice"]["concern_url"],
        "https://school.test/concern"
    );
    let sha = STANDARD
        .decode(shown["notice"]["sha256"].as_str().unwrap())
        .unwrap();
    assert_eq!(sha.len(), 32);
    let older = apply(&mut engine, &notice("year-10", 1, &trusted), &trusted);
    assert_eq!(older["applied"], false, "{older}");
    assert_eq!(engine.status()["notice_version"], 2);
}

#[test]
fn a_notice_issued_again_for_a_moved_device_is_shown_though_its_version_is_lower() {
    let trusted = key();
    let mut engine = Engine::default();
    // North's version 2 (issue 2), then the device moves to South, whose version 1 the
    // collector signs again as issue 3.
    let north = apply(
        &mut engine,
        &issued_notice("year-10", 2, 2, &trusted),
        &trusted,
    );
    assert_eq!(north["applied"], true, "{north}");
    let south = apply(
        &mut engine,
        &issued_notice("year-10", 1, 3, &trusted),
        &trusted,
    );
    assert_eq!(south["applied"], true, "{south}");
    assert_eq!(south["notice"]["version"], 1);
    assert_eq!(engine.status()["notice_version"], 1);
    // South's version 1 as first signed (issue 1) and North's version 2 are replays now.
    for replay in [
        issued_notice("year-10", 1, 1, &trusted),
        issued_notice("year-10", 2, 2, &trusted),
    ] {
        let refused = apply(&mut engine, &replay, &trusted);
        assert_eq!(refused["applied"], false, "{refused}");
        assert!(refused["reason"].as_str().unwrap().contains("replay"));
    }
    assert_eq!(engine.status()["notice_version"], 1);
}
