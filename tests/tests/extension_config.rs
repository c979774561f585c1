//! The browser extension with a wrong or missing managed configuration, in
//! real headless Chromium: no token, a malformed collector address, a
//! malformed or mismatched certificate pin and an expired token each show a
//! sentence that says what to fix in the extension's own page, and enrol
//! nothing. Once enrolled, a configuration that goes wrong (an expired
//! token, a malformed address) keeps the extension working on the address
//! it enrolled with, and its heartbeats carry the problem to the collector:
//! `agents list` and the Fleet page show it. Never a silent agent. A token
//! whose first address does not answer enrols through its fallback. The
//! browser part is `tests/console/extension-status.mjs`.
//!
//! Chromium reads managed policy only from a system directory, so this test
//! writes one file there (and removes it); it needs root, as the test
//! machines run.

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tutela_tests::extension::{self, spki_pin, Policy, TEST_PACK};
use tutela_tests::web::{http, sign_in};
use tutela_tests::{console_scripts, free_port, run_ok, workspace, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

/// Runs the browser on `profile` until its status shows `expect`; returns
/// the status and the text of the extension's status page.
fn browser(
    profile: &std::path::Path,
    cert: &str,
    expect: &str,
    enrolled: bool,
) -> serde_json::Value {
    let out = Command::new("node")
        .arg("extension-status.mjs")
        .current_dir(console_scripts())
        .env("EXTENSION_DIR", workspace().join("extension"))
        .env("PROFILE_DIR", profile)
        .env("SPKI", spki_pin(cert))
        .env("EXPECT", expect)
        .env("ENROLLED", if enrolled { "1" } else { "0" })
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser part failed for {expect:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("a RESULT line");
    serde_json::from_str(line).unwrap()
}

/// `token` naming `primary` as the collector and its own address as the
/// only fallback.
fn with_primary(token: &str, primary: &str) -> String {
    let payload = token.strip_prefix("tutela1.").expect("a tutela1. token");
    let mut json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    json["fallbacks"] = serde_json::json!([json["collector"]]);
    json["collector"] = serde_json::json!(primary);
    format!("tutela1.{}", URL_SAFE_NO_PAD.encode(json.to_string()))
}

/// `token` with its expiry moved into the past (the format is documented
/// in docs/PROTOCOL.md: `tutela1.` and base64url JSON).
fn expired(token: &str) -> String {
    let payload = token.strip_prefix("tutela1.").expect("a tutela1. token");
    let mut json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    json["expires_ms"] = serde_json::json!(1_000);
    format!("tutela1.{}", URL_SAFE_NO_PAD.encode(json.to_string()))
}

#[test]
fn a_wrong_managed_configuration_is_shown_in_the_extension_and_on_the_fleet_page() {
    extension::build();
    let scratch = Scratch::new("extension-config");
    let (mut collector, console_port) = Collector::with_console(
        scratch.path("collector"),
        &[("tech.one", "technician")],
        PASSWORD,
    )
    .unwrap();
    extension::start_with_pack(&mut collector, &scratch, TEST_PACK);
    let token = collector.token(&["--uses", "5"]).unwrap();
    let cert = std::fs::read_to_string(collector.dir.join("collector.crt")).unwrap();

    let wrong = [
        (None, "No enrolment token in the managed configuration"),
        (
            Some(
                serde_json::json!({"enrolment_token": token, "collector_url": "collector.school:8443"}),
            ),
            "is not an https://host:port address",
        ),
        (
            Some(serde_json::json!({"enrolment_token": token, "certificate_sha256": "12:ab"})),
            "is not 64 hex digits",
        ),
        (
            Some(
                serde_json::json!({"enrolment_token": token, "certificate_sha256": "0".repeat(64)}),
            ),
            "differs from the one in the enrolment token",
        ),
        (
            Some(serde_json::json!({"enrolment_token": expired(&token)})),
            "the enrolment token expired",
        ),
        (
            Some(serde_json::json!({"enrolment_token": "tutela1.not-a-token"})),
            "the enrolment token is malformed",
        ),
    ];
    for (i, (config, expect)) in wrong.iter().enumerate() {
        let _policy = config.clone().map(Policy::write);
        let got = browser(&scratch.path(&format!("profile-{i}")), &cert, expect, false);
        let page = got["page_text"].as_str().unwrap();
        assert!(
            page.contains(expect),
            "the status page says {expect:?}: {page}"
        );
        assert_eq!(got["status"]["enrolled"], false, "{got}");
    }
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(agents.trim().is_empty(), "nothing enrolled: {agents}");

    // Enrolled (no station name given: off ChromeOS, one made from the
    // device key), then the configuration goes wrong: the extension keeps to
    // the address it enrolled with and tells the collector.
    let profile = scratch.path("profile-enrolled");
    let station;
    {
        let _policy = Policy::write(serde_json::json!({"enrolment_token": token}));
        let got = browser(&profile, &cert, "", true);
        station = got["status"]["station"].as_str().unwrap().to_owned();
        let suffix = station.strip_prefix("chrome-").unwrap_or_default();
        assert!(
            suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
            "the fallback station name: {got}"
        );
        assert_eq!(got["status"]["problems"], serde_json::json!([]), "{got}");
        assert!(
            got["page_text"].as_str().unwrap().contains("Working"),
            "{got}"
        );
    }
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        agents.contains(&format!("station={station}")) && !agents.contains("problems="),
        "{agents}"
    );
    {
        let _policy = Policy::write(serde_json::json!({
            "enrolment_token": expired(&token),
            "collector_url": "ftp://collector.school",
        }));
        let got = browser(
            &profile,
            &cert,
            "devices not yet enrolled cannot enrol",
            true,
        );
        let page = got["page_text"].as_str().unwrap();
        assert!(
            page.contains("the address this device enrolled with is used"),
            "{page}"
        );
        assert_eq!(got["status"]["station"], station.as_str(), "a stable name");
    }
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        agents.contains("problems=")
            && agents.contains("the enrolment token expired")
            && agents.contains("ftp://collector.school"),
        "the heartbeat carried the problems: {agents}"
    );
    let (session, _) = sign_in(console_port, "tech.one", PASSWORD, "/fleet");
    let fleet = http(console_port, "GET", "/fleet", &session, &[]).body;
    let row = fleet
        .split("<tr")
        .find(|r| r.contains(&station))
        .expect("the station is on the Fleet page");
    assert!(row.contains(r#"class="problem""#), "{row}");
    assert!(
        row.contains(
            "the agent reports: The enrolment token in the managed configuration is refused"
        ),
        "{row}"
    );
    assert!(fleet.contains("1 reporting a problem"), "{fleet}");

    // A token whose first address does not answer: the extension enrols
    // through its fallback (as the desktop agent does) and keeps to it.
    let dead = format!("127.0.0.1:{}", free_port());
    let _policy = Policy::write(serde_json::json!({
        "enrolment_token": with_primary(&token, &dead),
        "station": "chromebook-fallback",
    }));
    let got = browser(&scratch.path("profile-fallback"), &cert, "", true);
    assert_eq!(
        got["status"]["collector"],
        format!("https://127.0.0.1:{}", collector.port),
        "{got}"
    );
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(agents.contains("station=chromebook-fallback"), "{agents}");
}
