//! Shadow packs and curriculum exemptions on real agents watching a real X
//! desktop: a candidate pack's would-be matches are counted at the collector
//! without raising alerts, and an exemption silences a category for one
//! group only, then lapses on time by itself. Shadow counts survive an
//! agent restart: the collector adds up the counts of each run.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tutela_tests::packs::{self, small_pack, About};
use tutela_tests::{run_ok, wait_for, Agent, Collector, Desktop, Scratch};

const WAIT: Duration = Duration::from_secs(60);

/// The lab test pack at `version`: `weapons` phrases and "cannabis" for drugs.
fn pack(version: u32, weapons: &[&str]) -> String {
    let about = About::new(
        "lab-test",
        "Lab test pack",
        "A small pack for shadow and exemption tests.",
    );
    small_pack(
        &about,
        version,
        &[packs::weapons(weapons), packs::drugs(&["cannabis"])],
    )
}

/// Agent settings: a small local pack (fast to compile), quick heartbeats,
/// no cooldown and no screenshots.
fn agent_toml(pack_file: &Path) -> String {
    format!(
        "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\nheartbeat_secs = 1\n\
         [evidence]\ncooldown_secs = 0\nscreenshots = false\n\
         [rules]\npack_file = {:?}\n",
        pack_file.display().to_string()
    )
}

/// Enrols and starts an agent on `desktop` in `group`, as `station`.
fn start_agent(
    scratch: &Scratch,
    collector: &Collector,
    desktop: &Desktop,
    group: &str,
    station: &str,
) -> Agent {
    let home = scratch.path(&format!("home-{station}"));
    std::fs::create_dir_all(&home).unwrap();
    let mut agent = Agent::new(scratch.path(station));
    agent.as_station(station);
    agent.on_machine(&format!("machine-{station}"));
    agent.on_desktop(desktop, &home);
    agent
        .enrol(&collector.token(&["--group", group]).unwrap())
        .unwrap();
    let pack_file = scratch.path("live-pack.toml");
    std::fs::write(&pack_file, pack(1, &["pipe bomb"])).unwrap();
    std::fs::write(agent.dir.join("agent.toml"), agent_toml(&pack_file)).unwrap();
    agent.start(&[]).unwrap();
    agent.wait_for_sensors(Duration::from_secs(120)).unwrap();
    agent
}

fn title_alert(a: &Value, agent: &Agent, category: &str) -> bool {
    a["agent_id"] == agent.agent_id() && a["source"] == "title" && a["category"] == category
}

fn wait_for_log(agent: &Agent, text: &str) {
    wait_for(&format!("agent log line {text:?}"), WAIT, || {
        agent.log_text().contains(text)
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log_text()));
}

#[test]
fn shadow_counts_reach_the_collector_and_raise_no_alert() {
    let scratch = Scratch::new("shadow");
    let mut desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = start_agent(&scratch, &collector, &desktop, "lab-1", "LAB1-PC01");

    // A candidate pack adds "zip gun": published in shadow.
    let candidate = scratch.path("candidate.toml");
    std::fs::write(&candidate, pack(2, &["pipe bomb", "zip gun"])).unwrap();
    let out = run_ok(
        collector
            .cmd()
            .args(["rules", "push", "--shadow"])
            .arg(&candidate),
    )
    .unwrap();
    assert!(out.contains("published shadow version 2"), "{out}");
    wait_for_log(&agent, "shadow rules running beside the live rules");

    let window = desktop.open_xterm("Lesson notes").unwrap();
    desktop.rename(&window, "how to make a zip gun").unwrap();
    // The sensor reads a title after it changes: a second rename straight after the first
    // can be read in its place. The shadow-only match is counted at the collector first.
    let mut status = String::new();
    wait_for("the shadow-only match at the collector", WAIT, || {
        status = run_ok(collector.cmd().args(["rules", "status"])).unwrap();
        status.contains("shadow weapons/zip gun 1 matches on 1 agents")
    })
    .unwrap_or_else(|e| panic!("{e}; status:\n{status}\nagent log:\n{}", agent.log_text()));
    desktop.rename(&window, "pipe bomb").unwrap();
    // The live pack alerts on "pipe bomb" (and so proves the title reached the matcher).
    collector
        .wait_for_alert("the live alert", WAIT, |a| {
            title_alert(a, &agent, "weapons") && a["rule_id"] == "weapons/pipe bomb"
        })
        .unwrap();
    wait_for("shadow counts at the collector", WAIT, || {
        status = run_ok(collector.cmd().args(["rules", "status"])).unwrap();
        status.contains("shadow weapons/zip gun 1 matches on 1 agents")
            && status.contains("shadow weapons/pipe bomb 1 matches on 1 agents")
    })
    .unwrap_or_else(|e| panic!("{e}; status:\n{status}\nagent log:\n{}", agent.log_text()));
    assert!(
        status.contains("shadow version 2: 2 would-be matches from 1 agents"),
        "{status}"
    );
    // Noisiest first: equal counts sort by rule id.
    let pipe = status.find("shadow weapons/pipe bomb").unwrap();
    let zip = status.find("shadow weapons/zip gun").unwrap();
    assert!(pipe < zip, "{status}");
    // The shadow pack raised nothing: only the live rule's alert is stored.
    let alerts = collector.all_alerts().unwrap();
    assert!(
        alerts.iter().all(|a| a["rule_id"] != "weapons/zip gun"),
        "a shadow rule raised an alert: {alerts:?}"
    );
    assert!(
        !agent.log_text().contains("zip gun"),
        "the agent logged matched text"
    );

    // The agent restarts (counting from zero again); a second burst adds to the first.
    desktop.rename(&window, "Lesson notes").unwrap();
    let mut agent = agent;
    let started_before = agent.log_text().matches("sensors started").count();
    agent.kill9();
    agent.start(&[]).unwrap();
    wait_for(
        "the restarted agent's sensors",
        Duration::from_secs(120),
        || agent.log_text().matches("sensors started").count() > started_before,
    )
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log_text()));
    assert!(
        agent
            .log_text()
            .contains("shadow rules loaded from the last bundle"),
        "{}",
        agent.log_text()
    );
    desktop.rename(&window, "how to make a zip gun").unwrap();
    wait_for("shadow counts after the restart", WAIT, || {
        status = run_ok(collector.cmd().args(["rules", "status"])).unwrap();
        status.contains("shadow weapons/zip gun 2 matches on 1 agents")
    })
    .unwrap_or_else(|e| panic!("{e}; status:\n{status}\nagent log:\n{}", agent.log_text()));
    assert!(
        status.contains("shadow version 2: 3 would-be matches from 1 agents"),
        "the total adds the runs up: {status}"
    );
    assert!(
        status.contains("shadow weapons/pipe bomb 1 matches on 1 agents"),
        "{status}"
    );
    // Zip gun is now the noisiest rule.
    let pipe = status.find("shadow weapons/pipe bomb").unwrap();
    let zip = status.find("shadow weapons/zip gun").unwrap();
    assert!(zip < pipe, "{status}");
}

#[test]
fn an_exemption_silences_its_group_only_then_lapses_on_time() {
    let scratch = Scratch::new("exemption");
    let mut desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    // Two stations in different groups watch the same desktop.
    let a = start_agent(&scratch, &collector, &desktop, "year-10", "Y10-PC01");
    let b = start_agent(&scratch, &collector, &desktop, "year-11", "Y11-PC01");
    wait_for_log(&a, "curriculum exemptions updated count=0");

    let added = Instant::now();
    let out = run_ok(collector.cmd().args([
        "exemption",
        "add",
        "--group",
        "year-10",
        "--category",
        "drugs",
        "--until",
        "20s",
        "--reason",
        "Year 10 PSHE on drugs",
        "--by",
        "dsl.test",
    ]))
    .unwrap();
    assert!(out.contains("exemption 1 in force until"), "{out}");
    wait_for_log(&a, "curriculum exemptions updated count=1");

    let window = desktop.open_xterm("PSHE notes").unwrap();
    desktop
        .rename(&window, "where does cannabis come from")
        .unwrap();
    collector
        .wait_for_alert("group B's drugs alert", WAIT, |x| {
            title_alert(x, &b, "drugs")
        })
        .unwrap();
    // A control trigger on A: once its alert is stored, a drugs alert from A would be too.
    desktop.rename(&window, "pipe bomb").unwrap();
    collector
        .wait_for_alert("group A's weapons alert", WAIT, |x| {
            title_alert(x, &a, "weapons")
        })
        .unwrap();
    let alerts = collector.all_alerts().unwrap();
    assert!(
        !alerts.iter().any(|x| title_alert(x, &a, "drugs")),
        "the exempt group raised a drugs alert: {alerts:?}"
    );
    assert!(
        added.elapsed() < Duration::from_secs(20),
        "the check ran after the exemption ended; the test machine is too slow"
    );
    assert!(a
        .log_text()
        .contains("match not alerted: curriculum exemption"));

    // The exemption ends by itself: A alerts again, without anyone revoking it.
    let ends = added + Duration::from_secs(21);
    std::thread::sleep(ends.saturating_duration_since(Instant::now()));
    desktop.rename(&window, "cannabis again").unwrap();
    collector
        .wait_for_alert("group A's drugs alert after the exemption", WAIT, |x| {
            title_alert(x, &a, "drugs") && x["window_title"] == "cannabis again"
        })
        .unwrap();
    let list = run_ok(collector.cmd().args(["exemption", "list"])).unwrap();
    assert!(
        list.contains("1 expired group=year-10 category drugs"),
        "{list}"
    );
    assert!(list.contains("Year 10 PSHE on drugs"), "{list}");
}

#[test]
fn a_technician_edits_the_local_pack_and_the_agent_runs_it_at_once() {
    let scratch = Scratch::new("local-pack");
    let mut desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let agent = start_agent(&scratch, &collector, &desktop, "lab-1", "LAB1-PC01");
    let pack_file = scratch.path("live-pack.toml");

    // A pack that does not load is refused; the rules in force stay.
    std::fs::write(&pack_file, "[pack]\nid = \"broken\"\n").unwrap();
    wait_for_log(&agent, "the changed local rule pack does not load");
    // The technician adds "zip gun" (written to a new file renamed over the old, as editors do).
    let edited = scratch.path("live-pack.toml.new");
    std::fs::write(&edited, pack(3, &["pipe bomb", "zip gun"])).unwrap();
    std::fs::rename(&edited, &pack_file).unwrap();
    wait_for_log(&agent, "local rule pack reloaded version=3");

    let window = desktop.open_xterm("Lesson notes").unwrap();
    desktop.rename(&window, "how to make a zip gun").unwrap();
    let alert = collector
        .wait_for_alert("an alert from the edited pack", WAIT, |a| {
            title_alert(a, &agent, "weapons") && a["rule_id"] == "weapons/zip gun"
        })
        .unwrap();
    assert_eq!(alert["rules_version"], 3, "{alert}");
    // The collector hears the version the device runs.
    wait_for("the heartbeat to report version 3", WAIT, || {
        run_ok(collector.cmd().args(["rules", "status"]))
            .unwrap()
            .contains("runs version 3")
    })
    .unwrap();
}
