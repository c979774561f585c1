//! The browser extension (`extension/`) in real headless Chromium against a
//! real collector over gRPC-Web: it enrols with the token from its managed
//! configuration (a Chromium policy file, as a school's admin console would
//! push), receives the signed rules, then a new version and an exemption for
//! its group while it runs, and raises a title alert, a URL (domain)
//! alert, a search alert and typed alerts from a text area (with a capture
//! that decrypts to a picture of the page) and a content-editable element;
//! typing into a sign-in page raises nothing; an alert made while the
//! collector is down waits in the queue through a browser restart and
//! arrives when the collector returns; a web page gets no CORS permission
//! to call the collector, the extension does; the Fleet page lists the station with
//! its platform. The browser part is
//! `tests/console/extension.mjs` (playwright-core from npm).
//!
//! Chromium reads managed policy only from a system directory, so this test
//! writes one file there (and removes it); it needs root, as the test
//! machines run.

use std::io::Write;
use std::process::Command;
use std::time::Duration;
use tutela_tests::script::Script;

use tutela_tests::extension::{self, spki_pin, Policy, TEST_PACK};
use tutela_tests::{console_scripts, run_ok, workspace, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

/// Version 2 of the test pack: a new weapons term and a drugs category.
fn pack_v2() -> String {
    TEST_PACK.replacen("version = 1", "version = 2", 1)
        + "\n[[changelog]]\nversion = 2\ndate = \"2026-12-06\"\nnotes = \"zip gun; drugs.\"\n\n\
           [categories.drugs]\nseverity = 3\n\n\
           [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [\"zip gun\"]\n\n\
           [[terms]]\ncategory = \"drugs\"\nterms = [\"cannabis\"]\n"
}

fn alerts_where(
    alerts: &[serde_json::Value],
    test: impl Fn(&serde_json::Value) -> bool,
) -> Vec<&serde_json::Value> {
    alerts.iter().filter(|a| test(a)).collect()
}

#[test]
fn extension_enrols_alerts_on_pages_and_typing_and_queues_through_an_outage() {
    extension::build();

    let scratch = Scratch::new("extension");
    let (mut collector, console_port) = Collector::with_console(
        scratch.path("collector"),
        &[("tech.one", "technician")],
        PASSWORD,
    )
    .unwrap();
    extension::start_with_pack(&mut collector, &scratch, TEST_PACK);
    let token = collector
        .token(&["--uses", "1", "--group", "year-10"])
        .unwrap();
    let _policy = Policy::write(serde_json::json!({
        "enrolment_token": token,
        "station": "chromebook-7",
    }));
    let cert = std::fs::read_to_string(collector.dir.join("collector.crt")).unwrap();

    let console_dir = console_scripts();
    let (mut node, lines) = Script::spawn(
        Command::new("node")
            .arg("extension.mjs")
            .current_dir(&console_dir)
            .env("EXTENSION_DIR", workspace().join("extension"))
            .env("PROFILE_DIR", scratch.path("profile"))
            .env("SPKI", spki_pin(&cert))
            .env("CONSOLE_URL", format!("http://127.0.0.1:{console_port}"))
            .env("PASSWORD", PASSWORD)
            .env(
                "COLLECTOR_URL",
                format!("https://127.0.0.1:{}", collector.port),
            ),
        Duration::from_secs(420),
    );
    let mut result = None;
    let mut steps = Vec::new();
    for line in lines {
        let line = line.unwrap();
        match line.as_str() {
            "ENROLLED" => {
                let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
                assert!(agents.contains("station=chromebook-7"), "{agents}");
                // A publication and an exemption reach the running extension.
                let pack = scratch.path("pack.toml");
                std::fs::write(&pack, pack_v2()).unwrap();
                run_ok(collector.cmd().args(["rules", "push"]).arg(&pack)).unwrap();
                run_ok(collector.cmd().args([
                    "exemption",
                    "add",
                    "--group",
                    "year-10",
                    "--category",
                    "drugs",
                    "--until",
                    "1h",
                    "--reason",
                    "PSHE: drugs education",
                ]))
                .unwrap();
            }
            "PAGES" => {
                check_page_and_typed_alerts(&collector, &scratch);
                collector.kill9();
            }
            "RESTARTED" => collector.start().unwrap(),
            _ => {
                if let Some(json) = line.strip_prefix("RESULT ") {
                    result = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
                }
                continue;
            }
        }
        steps.push(line.clone());
        writeln!(node.stdin(), "next").unwrap();
    }
    let status = node.finish();
    assert!(
        status.success(),
        "the browser part failed (see its output above)"
    );
    assert_eq!(steps, ["ENROLLED", "PAGES", "RESTARTED"]);
    let result = result.expect("the browser part reported a result");
    assert_eq!(result["the restarted browser keeps its identity"], true);
    assert_eq!(result["a web page cannot call the collector"], true);
    assert_eq!(result["no CORS permission for a web page"], true);
    assert_eq!(
        result["fleet_platform"], "Chrome on Linux",
        "the Fleet page names the platform"
    );

    let later = collector
        .wait_for_alert(
            "the alert queued while the collector was down",
            Duration::from_secs(30),
            |a| a["url"].as_str().is_some_and(|u| u.ends_with("/later")),
        )
        .unwrap();
    assert_eq!(later["source"], "title");
    assert_eq!(later["chain_ok"], true, "{later}");
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(agents.contains("station=chromebook-7"), "{agents}");
}

/// After the pages and the typing: each alert as the native agent would
/// raise it, nothing from the sign-in page, the capture decrypts to a JPEG
/// of the browser's viewport.
fn check_page_and_typed_alerts(collector: &Collector, scratch: &Scratch) {
    collector
        .wait_for_alert(
            "the typed alert from the content-editable",
            Duration::from_secs(60),
            |a| a["source"] == "typed" && a["term"] == "pipe bomb",
        )
        .unwrap();
    let alerts = collector.all_alerts().unwrap();
    let url_of = |a: &serde_json::Value| a["url"].as_str().unwrap_or_default().to_owned();
    assert!(
        alerts_where(&alerts, |a| url_of(a).contains("/signin")
            || a["window_title"] == "Sign in")
        .is_empty(),
        "nothing is raised from a sign-in page: {alerts:?}"
    );
    assert!(
        alerts_where(&alerts, |a| a["category"] == "drugs").is_empty(),
        "the exemption for the group silences drugs: {alerts:?}"
    );
    let title = alerts_where(&alerts, |a| a["source"] == "title");
    assert_eq!(title.len(), 2, "{alerts:?}");
    assert_eq!(title[0]["term"], "pipe bomb");
    assert_eq!(title[0]["window_title"], "How to make a pipe bomb - Forum");
    assert_eq!(title[1]["term"], "zip gun", "a term of the new version");
    let url = alerts_where(&alerts, |a| a["source"] == "url");
    assert_eq!(url.len(), 1, "{alerts:?}");
    assert_eq!(url[0]["rule_id"], "weapons/domain:weapons.test");
    let search = alerts_where(&alerts, |a| a["source"] == "search");
    assert_eq!(search.len(), 1, "{alerts:?}");
    assert_eq!(search[0]["search_query"], "how to hurt myself");
    assert_eq!(search[0]["category"], "self-harm");
    let typed = alerts_where(&alerts, |a| a["source"] == "typed");
    assert_eq!(typed.len(), 2, "{alerts:?}");
    let textarea = typed.iter().find(|a| a["term"] == "hurt myself").unwrap();
    assert!(textarea["url"].as_str().unwrap().ends_with("/write"));
    assert_eq!(textarea["has_capture"], true, "{textarea}");
    for a in &alerts {
        assert_eq!(a["station"], "chromebook-7");
        assert_eq!(a["app"], "chrome");
        assert_eq!(a["chain_ok"], true, "{a}");
        assert_eq!(a["rules_version"], 2);
    }
    let mut seqs: Vec<i64> = alerts.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=alerts.len() as i64).collect::<Vec<_>>());

    let jpeg = collector
        .capture(textarea["id"].as_i64().unwrap(), &scratch.path("typed.jpg"))
        .unwrap();
    let picture = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the capture decrypts to a JPEG");
    assert_eq!(
        (picture.width(), picture.height()),
        (1280, 800),
        "a picture of the browser's viewport"
    );
}
