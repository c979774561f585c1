//! The school's monitoring notice in the browser extension, in real
//! headless Chromium against a real collector: the notice set for the
//! device's group arrives signed on the rules stream and opens the
//! extension's notice page, with the school's text (its addresses as
//! links, markup shown as written) and the 'Report a concern' link; a page
//! closed or sent elsewhere without acknowledging comes back; 'I
//! understand' sends a signed acknowledgement, which the collector stores
//! (checked here against the agent's enrolled key); a new version and a
//! new browser session show it again; a once-per-version notice already
//! acknowledged is not shown in the next session. The browser part is `tests/console/extension-notice.mjs`.
//!
//! Chromium reads managed policy only from a system directory, so this test
//! writes one file there (and removes it); it needs root.

use std::io::Write;
use std::process::Command;
use std::time::Duration;
use tutela_tests::script::Script;

use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use tutela_proto::v1::NoticeAckBody;
use tutela_tests::extension::{self, spki_pin, Policy, TEST_PACK};
use tutela_tests::{console_scripts, run_ok, wait_for, workspace, Collector, Scratch};

/// Stored acknowledgements: (agent, user, station, version, body, signature).
type Ack = (String, String, String, u32, Vec<u8>, Vec<u8>);

fn acks(collector: &Collector) -> Vec<Ack> {
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let Ok(mut stmt) = db.prepare(
        "SELECT agent_id, user, station, version, body, signature FROM notice_acks ORDER BY id",
    ) else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn set_notice(collector: &Collector, scratch: &Scratch, version: u32, mode: &str) {
    let file = scratch.path(&format!("notice-{version}.txt"));
    std::fs::write(
        &file,
        format!(
            "Version {version}. Use of this device is monitored by the school to keep you safe.\n\
             Read the acceptable use policy at https://school.test/aup. <b>Ask</b> a teacher if unsure.\n"
        ),
    )
    .unwrap();
    run_ok(
        collector
            .cmd()
            .args([
                "notice",
                "set",
                "--group",
                "year-10",
                "--concern-url",
                "https://school.test/concern",
                "--mode",
                mode,
                "--file",
            ])
            .arg(&file),
    )
    .unwrap();
}

/// Waits for `n` acknowledgements; checks each is signed by the agent's
/// enrolled key and names the user, station and version stored.
fn wait_for_acks(collector: &Collector, n: usize) -> Vec<Ack> {
    let mut stored = Vec::new();
    wait_for(
        &format!("{n} acknowledgements"),
        Duration::from_secs(30),
        || {
            stored = acks(collector);
            stored.len() >= n
        },
    )
    .unwrap();
    assert_eq!(stored.len(), n, "{stored:?}");
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    for (agent, user, station, version, body, signature) in &stored {
        let key: Vec<u8> = db
            .query_row(
                "SELECT public_key FROM agents WHERE agent_id = ?1",
                [agent],
                |r| r.get(0),
            )
            .unwrap();
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(&tutela_proto::notice_ack_message(body), signature)
            .expect("the acknowledgement is signed by the agent's key");
        let decoded = NoticeAckBody::decode(body.as_slice()).unwrap();
        assert_eq!(
            (&decoded.user, &decoded.station, decoded.version),
            (user, station, *version)
        );
        assert_eq!(
            user, "no-account/chromebook-3",
            "a profile without an account: the documented fallback"
        );
        assert_eq!(station, "chromebook-3");
        assert_eq!(decoded.group, "year-10");
    }
    stored
}

#[test]
fn the_extension_shows_the_notice_until_acknowledged_and_the_collector_stores_each_acknowledgement()
{
    extension::build();
    let scratch = Scratch::new("extension-notice");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    extension::start_with_pack(&mut collector, &scratch, TEST_PACK);
    let token = collector.token(&["--group", "year-10"]).unwrap();
    let _policy =
        Policy::write(serde_json::json!({"enrolment_token": token, "station": "chromebook-3"}));
    let cert = std::fs::read_to_string(collector.dir.join("collector.crt")).unwrap();

    let (mut node, lines) = Script::spawn(
        Command::new("node")
            .arg("extension-notice.mjs")
            .current_dir(console_scripts())
            .env("EXTENSION_DIR", workspace().join("extension"))
            .env("PROFILE_DIR", scratch.path("profile"))
            .env("SPKI", spki_pin(&cert)),
        Duration::from_secs(300),
    );
    let mut steps = Vec::new();
    for line in lines {
        let line = line.unwrap();
        match line.as_str() {
            "ENROLLED" => set_notice(&collector, &scratch, 1, "every-sign-in"),
            "ACKED 1" => {
                let stored = wait_for_acks(&collector, 1);
                assert_eq!(stored[0].3, 1);
                set_notice(&collector, &scratch, 2, "every-sign-in");
            }
            "ACKED 2" => {
                let stored = wait_for_acks(&collector, 2);
                assert_eq!(stored[1].3, 2);
            }
            "SESSION" => {
                // The new session's acknowledgement of version 2.
                let stored = wait_for_acks(&collector, 3);
                assert_eq!(stored[2].3, 2);
                set_notice(&collector, &scratch, 3, "once-per-version");
            }
            "DONE" => {}
            _ => continue,
        }
        steps.push(line.clone());
        if line != "DONE" {
            writeln!(node.stdin(), "next").unwrap();
        }
    }
    let status = node.finish();
    assert!(
        status.success(),
        "the browser part failed (see its output above)"
    );
    assert_eq!(steps, ["ENROLLED", "ACKED 1", "ACKED 2", "SESSION", "DONE"]);
    // Version 3 once, not again in the next session.
    let stored = wait_for_acks(&collector, 4);
    assert_eq!(stored[3].3, 3);
    let acceptance = run_ok(
        collector
            .cmd()
            .args(["notice", "acks", "--group", "year-10", "--json"]),
    )
    .unwrap();
    let acceptance: serde_json::Value = serde_json::from_str(&acceptance).unwrap();
    assert_eq!(acceptance["version"], 3);
    assert_eq!(
        acceptance["accepted"][0]["user"], "no-account/chromebook-3",
        "{acceptance}"
    );
}
