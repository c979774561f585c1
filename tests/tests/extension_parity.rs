//! One rule engine on every platform: the shipped packs' labelled corpora
//! (typed text, titles, URLs and search queries) go through the extension's
//! WebAssembly module, run by Node with the extension's own loader, and
//! through the same engine built natively (which the native agent's matcher
//! is), and every answer is the same: the same alerts, categories, terms,
//! spans and contexts. The signed bundle each side applies first is the same.

use std::process::Command;

use base64::Engine as _;
use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use tutela_proto::v1::{rules_update, RuleBundle, RulesUpdate};
use tutela_tests::{extension, workspace, Scratch};

const NOW: i64 = 1_800_000_000_000;

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The requests for one pack: apply its signed bundle, then each corpus line.
fn requests(pack: &str, corpora: &[&str]) -> Vec<Value> {
    let key = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let toml = std::fs::read_to_string(workspace().join("rules/packs").join(pack)).unwrap();
    let bundle = tutela_rules::bundle::sign(&toml, &key).unwrap();
    let version = tutela_rules::bundle::verify(&bundle, key.public_key().as_ref(), None)
        .unwrap()
        .version;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bundle);
    let release = key.sign(&tutela_proto::release_message(
        digest.as_ref().try_into().unwrap(),
        version,
        false,
    ));
    let update = RulesUpdate {
        update: Some(rules_update::Update::Bundle(RuleBundle {
            bundle,
            version,
            shadow: false,
            release_signature: release.as_ref().to_vec(),
        })),
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut out = vec![json!({
        "op": "rules_update", "bytes": b64(&update.encode_to_vec()),
        "bundle_key": b64(key.public_key().as_ref()), "group": "", "now_ms": NOW,
    })];
    for corpus in corpora {
        let text = std::fs::read_to_string(workspace().join("rules/corpus").join(corpus)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut fields = line.split('\t');
            let (Some(scope), Some(text)) = (fields.next(), fields.next()) else {
                continue;
            };
            out.push(match scope {
                "typed" => {
                    json!({"op": "typed", "tab": n, "text": text, "flush": true, "now_ms": NOW})
                }
                "title" => json!({"op": "observe_page", "url": "", "title": text, "now_ms": NOW}),
                "url" => json!({"op": "observe_page", "url": text, "title": "", "now_ms": NOW}),
                "search" => json!({"op": "observe_page", "title": "",
                    "url": format!("https://www.google.co.uk/search?q={}", percent_encoded(text)),
                    "now_ms": NOW}),
                _ => continue,
            });
        }
    }
    out
}

fn compare(pack: &str, corpora: &[&str], scratch: &Scratch) {
    let requests = requests(pack, corpora);
    // Natively, on a thread of its own: a fresh engine.
    let native: Vec<Value> = {
        let requests = requests.clone();
        std::thread::spawn(move || {
            requests
                .iter()
                .map(|r| tutela_extension_wasm::handle(r.to_string().as_bytes()))
                .collect()
        })
        .join()
        .unwrap()
    };
    let input = scratch.path(&format!("{pack}.requests"));
    let output = scratch.path(&format!("{pack}.replies"));
    let lines: Vec<String> = requests.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let status = Command::new("node")
        .arg("wasm-parity.mjs")
        .arg(workspace().join("extension/tutela.wasm"))
        .arg(&input)
        .arg(&output)
        .current_dir(workspace().join("tests/console"))
        .status()
        .expect("node runs");
    assert!(status.success(), "the WebAssembly run failed");
    let wasm: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(native.len(), wasm.len());
    assert_eq!(native[0]["ok"]["applied"], true, "{}", native[0]);
    for ((request, n), w) in requests.iter().zip(&native).zip(&wasm) {
        assert_eq!(
            n, w,
            "the native and WebAssembly engines differ on {request}"
        );
    }
    let alerts = native
        .iter()
        .filter(|r| r["ok"]["matches"].is_array())
        .count();
    assert!(
        alerts * 3 > requests.len(),
        "the corpus raises alerts ({alerts} of {})",
        requests.len()
    );
}

#[test]
fn the_webassembly_engine_answers_every_corpus_line_as_the_native_one() {
    extension::build();
    let scratch = Scratch::new("extension-parity");
    compare(
        "en-GB.toml",
        &["en-GB.tsv", "en-GB-hard-cases.tsv"],
        &scratch,
    );
    compare("cy.toml", &["cy.tsv"], &scratch);
}
