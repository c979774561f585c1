//! The browser extension's rules and identity beyond the first slice, in
//! real headless Chromium against a real collector: a shadow (candidate)
//! pack runs beside the live one, raises nothing, and its would-be matches
//! reach the collector in heartbeats; a rule that fires three times in one
//! tab within the folding window makes one alert counting the repeats (as
//! the desktop agent folds), also when the browser closes within the window
//! and starts again; a burst rule's alert comes with two more captures; the managed `user` names the pupil when no
//! account is signed in; and two browsers on copies of one profile do not
//! go on as one agent: the copy whose event number the original already
//! used is refused, takes a new identity (Enrolment/Rekey, both flagged for
//! the technician) and sends that event again under it, with nothing lost.
//! The browser part is `tests/console/extension-identity.mjs`.
//!
//! Chromium reads managed policy only from a system directory, so this test
//! writes one file there (and removes it); it needs root.

use std::io::Write;
use std::process::Command;
use std::time::Duration;
use tutela_tests::script::Script;

use tutela_tests::extension::{self, spki_pin, Policy, TEST_PACK};

/// Shots of a burst (the extension's, as the desktop agent's default).
const BURST_SHOTS: usize = 3;
use tutela_tests::{console_scripts, run_ok, wait_for, workspace, Collector, Scratch};

/// The test pack and a self-harm phrase whose alerts take a burst of captures.
fn live_pack() -> String {
    TEST_PACK.to_owned()
        + "\n[[terms]]\ncategory = \"self-harm\"\nkind = \"phrase\"\nterms = [\"razor blade\"]\n\
           capture = \"burst\"\n"
}

fn shadow_pack() -> String {
    live_pack().replacen("version = 1", "version = 2", 1)
        + "\n[[changelog]]\nversion = 2\ndate = \"2026-12-06\"\nnotes = \"zip gun.\"\n\n\
           [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [\"zip gun\"]\n"
}

fn check_shadow_and_folding(collector: &Collector) {
    let mut status = String::new();
    wait_for(
        "shadow counts at the collector",
        Duration::from_secs(60),
        || {
            status = run_ok(collector.cmd().args(["rules", "status"])).unwrap();
            status.contains("shadow weapons/zip gun 1 matches on 1 agents")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{status}"));
    assert!(
        status.contains("shadow weapons/pipe bomb 3 matches on 1 agents"),
        "{status}"
    );
    let alerts = collector.all_alerts().unwrap();
    assert!(
        !alerts.iter().any(|a| a["term"] == "zip gun"),
        "a shadow rule raised an alert: {alerts:?}"
    );
    let titles: Vec<_> = alerts
        .iter()
        .filter(|a| a["term"] == "pipe bomb" && a["state"] != "folded")
        .collect();
    assert_eq!(titles.len(), 1, "three visits, one alert: {alerts:?}");
    assert_eq!(
        titles[0]["count"], 3,
        "the alert counts its two repeats: {}",
        titles[0]
    );
    assert_eq!(
        titles[0]["user"], "pupil.fallback@school.test",
        "the managed user"
    );
    let folded: Vec<_> = alerts
        .iter()
        .filter(|a| a["state"] == "folded" && a["term"] == "pipe bomb")
        .collect();
    assert_eq!(folded.len(), 1, "one folded record: {alerts:?}");
    assert_eq!(folded[0]["count"], 2, "{}", folded[0]);
    assert_eq!(folded[0]["has_capture"], false);

    // A burst rule: the alert's capture and two more, each its own record.
    let burst: Vec<_> = alerts
        .iter()
        .filter(|a| a["term"] == "razor blade")
        .collect();
    assert_eq!(burst.len(), BURST_SHOTS, "{burst:?}");
    assert!(
        burst
            .iter()
            .all(|a| a["has_capture"] == true && a["chain_ok"] == true),
        "{burst:?}"
    );
    assert_eq!(burst[0]["count"], 1, "{}", burst[0]);
    assert!(
        burst[1..]
            .iter()
            .all(|a| a["count"] == 0 && a["state"] == "folded"),
        "{burst:?}"
    );
    assert_eq!(folded[0]["chain_ok"], true);
}

#[test]
fn shadow_rules_count_repeats_fold_and_a_copied_profile_takes_its_own_identity() {
    extension::build();
    let scratch = Scratch::new("extension-identity");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    extension::start_with_pack(&mut collector, &scratch, &live_pack());
    let token = collector.token(&["--group", "lab"]).unwrap();
    let _policy = Policy::write(serde_json::json!({
        "enrolment_token": token,
        "station": "lab-chrome",
        "user": "pupil.fallback@school.test",
        "cooldown_secs": 10,
    }));
    let cert = std::fs::read_to_string(collector.dir.join("collector.crt")).unwrap();

    let (mut node, lines) = Script::spawn(
        Command::new("node")
            .arg("extension-identity.mjs")
            .current_dir(console_scripts())
            .env("EXTENSION_DIR", workspace().join("extension"))
            .env("PROFILE_DIR", scratch.path("profile"))
            .env("SPKI", spki_pin(&cert)),
        Duration::from_secs(300),
    );
    let mut steps = Vec::new();
    let mut result = None;
    for line in lines {
        let line = line.unwrap();
        match line.as_str() {
            "ENROLLED" => {
                let candidate = scratch.path("candidate.toml");
                std::fs::write(&candidate, shadow_pack()).unwrap();
                run_ok(
                    collector
                        .cmd()
                        .args(["rules", "push", "--shadow"])
                        .arg(&candidate),
                )
                .unwrap();
            }
            "SHADOW AND FOLDED" => check_shadow_and_folding(&collector),
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
    assert_eq!(steps, ["ENROLLED", "SHADOW AND FOLDED"]);
    let result = result.expect("the browser part reported a result");
    let (original, copy) = (
        result["original_id"].as_str().unwrap(),
        result["copy_id"].as_str().unwrap(),
    );
    assert_ne!(original, copy, "the copy took its own identity");

    let alerts = collector.all_alerts().unwrap();
    let by_title = |t: &str| {
        alerts
            .iter()
            .find(|a| a["window_title"] == t)
            .unwrap_or_else(|| panic!("no alert titled {t:?}: {alerts:?}"))
    };
    let closing: Vec<_> = alerts
        .iter()
        .filter(|a| a["window_title"] == "Pipe bomb thread before closing")
        .collect();
    assert_eq!(
        closing.len(),
        2,
        "the alert and its folded repeat: {closing:?}"
    );
    assert_eq!(
        closing[0]["count"], 2,
        "the repeat counted before the browser closed: {}",
        closing[0]
    );
    assert_eq!(closing[1]["state"], "folded");
    for (title, agent) in [
        ("Pipe bomb thread on the original", original),
        ("Another pipe bomb thread, original", original),
        ("Pipe bomb thread on the copy", copy),
        ("Another pipe bomb thread, copy", copy),
    ] {
        let a = by_title(title);
        assert_eq!(a["agent_id"], agent, "{a}");
        assert_eq!(a["chain_ok"], true, "{a}");
    }
    assert_eq!(
        by_title("Pipe bomb thread on the copy")["seq"],
        1,
        "the copy's chain starts again"
    );
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert_eq!(agents.lines().count(), 2, "{agents}");
    for id in [original, copy] {
        let line = agents.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(
            line.contains("flag="),
            "both identities are flagged: {agents}"
        );
    }
    let gaps = run_ok(collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert!(
        !gaps.contains(original) && !gaps.contains(copy),
        "no gap: {gaps}"
    );
}
