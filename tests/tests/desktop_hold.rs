//! Typed matches held for the words typed after them (issue 13), on a real X desktop:
//! keys typed through the X server with xdotool into xterm windows, the agent running the
//! shipped pack, alerts read back from a real collector.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tutela_tests::{desktop_agent, Agent, Collector, Desktop, Scratch};

/// Fast retries, so alerts reach the collector within a second.
const UPLINK: &str = "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n";
/// Generous: a debug agent compiles the full pack at start and encodes screenshots slowly.
const ALERT_WAIT: Duration = Duration::from_secs(60);

struct Lab {
    agent: Agent,
    collector: Collector,
    desktop: Desktop,
    _home: PathBuf,
    _scratch: Scratch,
}

impl Lab {
    fn start(name: &str) -> Self {
        Self::start_with(name, UPLINK)
    }

    fn start_with(name: &str, agent_toml: &str) -> Self {
        let scratch = Scratch::new(name);
        let desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
        let (collector, mut agent, home) = desktop_agent(&scratch, &desktop, agent_toml).unwrap();
        agent.start(&[]).unwrap();
        agent.wait_for_sensors(Duration::from_secs(180)).unwrap();
        Self {
            agent,
            collector,
            desktop,
            _home: home,
            _scratch: scratch,
        }
    }

    fn wait_for_alert(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.collector
            .wait_for_alert(what, ALERT_WAIT, matches)
            .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", self.agent.log_text()))
    }

    /// Alerts from text typed on this desktop.
    fn typed_alerts(&self) -> Vec<Value> {
        let mut alerts = self.collector.alerts().unwrap();
        alerts.retain(|a| a["source"] == "typed");
        alerts
    }
}

fn typed_in(alert: &Value, title: &str) -> bool {
    alert["source"] == "typed" && alert["window_title"] == title
}

#[test]
fn a_cue_typed_after_a_threat_keeps_it_quiet_and_ordinary_words_do_not() {
    let mut lab = Lab::start("desktop-hold");

    // A threat, then a game: the cue comes after the threat's last word, and counts.
    lab.desktop.open_xterm("Game chat").unwrap();
    lab.desktop
        .type_text("i will hurt you in fortnite lol")
        .unwrap();
    lab.desktop.keys(&["Return"]).unwrap();

    // The same threat, then ordinary words, and the pupil turns to a sign-in window:
    // one alert, decided as they leave, with the screenshot taken when it was typed.
    lab.desktop.open_xterm("Group chat").unwrap();
    lab.desktop
        .type_text("i will hurt you see you at lunch")
        .unwrap();
    lab.desktop.open_xterm("Sign in - Google Accounts").unwrap();
    let threat = lab.wait_for_alert("the threat in Group chat", |a| typed_in(a, "Group chat"));
    assert_eq!(threat["category"], "bullying", "{threat}");
    assert_eq!(threat["has_capture"], true, "{threat}");
    let context = threat["context"].as_str().unwrap();
    assert!(
        context.contains("i will hurt you see you at lunch"),
        "the context shows the words after the threat: {context:?}"
    );

    // A suicidal statement alerts.
    lab.desktop.open_xterm("Diary").unwrap();
    lab.desktop
        .type_text("i wanna kill myself and nobody knows")
        .unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    let diary = lab.wait_for_alert("the suicidal statement", |a| typed_in(a, "Diary"));
    assert_eq!(diary["category"], "suicide", "{diary}");
    assert_eq!(diary["severity"], 5, "{diary}");

    // Events arrive in order: by now anything the game chat raised would be stored too.
    let alerts = lab.typed_alerts();
    let titles: Vec<&str> = alerts
        .iter()
        .map(|a| a["window_title"].as_str().unwrap_or(""))
        .collect();
    assert!(
        !titles.contains(&"Game chat"),
        "the threat said in a game alerted: {alerts:#?}"
    );
    assert_eq!(
        titles.iter().filter(|t| **t == "Group chat").count(),
        1,
        "one alert for the threat: {alerts:#?}"
    );
}

#[test]
fn a_match_held_when_the_agent_stops_is_decided_and_kept() {
    // Long waits, so only the stop can decide the threat.
    let toml = format!("{UPLINK}[typed]\nhold_words = 30\nhold_secs = 60\n");
    let mut lab = Lab::start_with("desktop-hold-stop", &toml);
    lab.desktop.open_xterm("Chat").unwrap();
    lab.desktop.type_text("i will hurt you see you").unwrap();
    let child = lab.agent.child.as_mut().unwrap();
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    let _ = tutela_tests::wait_for("the agent to stop", Duration::from_secs(30), || {
        exit = child.try_wait().ok().flatten();
        exit.is_some()
    });
    let log = lab.agent.log_text();
    assert!(
        exit.is_some_and(|s| s.success()),
        "the agent did not stop cleanly on SIGINT ({exit:?}):\n{log}"
    );
    assert!(
        log.contains("held=1"),
        "the monitor did not hold the threat until the stop:\n{log}"
    );
    // Sent before it stopped, or from the spool when it starts again.
    lab.agent.start(&[]).unwrap();
    let threat = lab.wait_for_alert("the threat held at the stop", |a| typed_in(a, "Chat"));
    assert_eq!(threat["category"], "bullying", "{threat}");
    assert_eq!(threat["has_capture"], true, "shot when typed: {threat}");
    let context = threat["context"].as_str().unwrap();
    assert!(context.contains("i will hurt you see you"), "{context:?}");
}
