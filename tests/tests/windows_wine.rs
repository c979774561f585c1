//! The Windows agent, for real, under Wine: the MSI built from
//! `installer/windows/tutela-agent.wxs` with wixl (`installer/windows/build-msi.sh`) around
//! the cross-built `tutela-agent.exe` (`tests/run.sh` builds it), installed with `wine msiexec
//! /i ... ENROLTOKEN=... /qn` on a fresh Wine prefix against the real Linux collector on
//! loopback.
//!
//! One prefix and one desktop serve every step, in order, as one machine's life would: an
//! install with an expired token, a good install, the session agent's alerts, the collector
//! going away and coming back, uninstall, reinstall and a purge.
//!
//! Two test-only adjustments to the prefix stand in for a real Windows 10 (both described in
//! the README): a tiny `bcryptprimitives.dll` providing `ProcessPrng`, which Rust's standard
//! library imports and Wine 8 lacks, and `winecfg -v win10`, since a new prefix reports
//! Windows 7 (the test first uses that to see the keys sensor refuse an old build).

#[path = "../windows/wine.rs"]
mod wine;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tutela_tests::{read, require_programs, run_ok, wait_for, Collector, Desktop, Scratch};
use wine::{build_msi, build_program, read_or_note, token_leaks, windows_agent, Wine};

/// The group the station enrols into; its monitoring notice is shown at session start.
const GROUP: &str = "year-7";
const INSTALLED_EXE: &str = "Program Files/Tutela/Agent/tutela-agent.exe";
const DATA_DIR: &str = "ProgramData/Tutela/agent";
/// Generous: a debug agent under Wine compiles the full pack before its sensors start.
const AGENT_START: Duration = Duration::from_secs(180);
const ALERT: Duration = Duration::from_secs(90);

/// One machine and its collector. Fields drop in order: Wine first, the scratch directory
/// holding its prefix last.
struct Lab {
    wine: Wine,
    desktop: Desktop,
    collector: Collector,
    msi: String,
    scratch: Scratch,
}

impl Lab {
    fn installed(&self) -> PathBuf {
        self.wine.drive_c(INSTALLED_EXE)
    }

    fn data(&self) -> PathBuf {
        self.wine.drive_c(DATA_DIR)
    }

    fn msiexec(&self, args: &[&str], log: &str) -> (String, String) {
        let log = self.scratch.path(log);
        let (ok, out, text) = self.wine.msiexec(args, &log);
        assert!(ok, "msiexec {args:?} failed: {out}\nlog:\n{text}");
        (out, text)
    }

    /// `tutela-agent run` as installed, its log at `log`.
    fn start_session_agent(&mut self, log: &str) -> (Child, PathBuf) {
        let log = self.scratch.path(log);
        let mut run = self.wine.agent();
        run.arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let agent = run.spawn().expect("wine starts the agent");
        wait_for("the agent's sensors", AGENT_START, || {
            read(&log).contains("sensors started")
        })
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(&log)));
        (agent, log)
    }

    fn wait_for_alert(
        &self,
        what: &str,
        agent_log: &std::path::Path,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.collector
            .wait_for_alert(what, ALERT, matches)
            .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", read(agent_log)))
    }

    /// Starts a program in the prefix on the desktop (ended with the desktop).
    fn spawn(&mut self, program: &str, args: &[&str]) {
        let mut cmd = self.wine.wine(program);
        cmd.args(args);
        self.desktop.spawn(&mut cmd).unwrap();
    }

    /// The X window of a Wine window whose title contains `name`, focused.
    fn focus(&self, name: &str) -> String {
        let found = self
            .desktop
            .xdotool(&["search", "--sync", "--name", name])
            .unwrap();
        let window = found.lines().next().expect("a window").to_owned();
        self.desktop.focus(&window).unwrap();
        window
    }
}

#[test]
fn the_msi_under_wine_installs_enrols_alerts_and_uninstalls() {
    require_programs(&[
        "wine",
        "wineboot",
        "wineserver",
        "wixl",
        "msiinfo",
        "x86_64-w64-mingw32-gcc",
    ]);
    let scratch = Scratch::new("windows-wine");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let msi = build_msi(&scratch).display().to_string();
    let desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let wine = Wine::new(scratch.path("prefix"), &desktop, &scratch);
    let mut lab = Lab {
        scratch,
        collector,
        desktop,
        wine,
        msi,
    };

    an_expired_token_leaves_the_agent_installed_not_enrolled_and_stopped(&mut lab);
    let token = lab.collector.token(&["--group", GROUP]).unwrap();
    let agent_id = a_good_token_installs_enrols_and_starts_the_service(&mut lab, &token);
    the_keys_sensor_refuses_an_old_windows_build(&mut lab);
    lab.wine.set_version("win10");
    the_session_agent_alerts_on_each_sensor(&mut lab);
    uninstall_keeps_the_identity_and_purgedata_removes_it(&mut lab, &agent_id);
}

fn an_expired_token_leaves_the_agent_installed_not_enrolled_and_stopped(lab: &mut Lab) {
    let expired = lab.collector.token(&["--expires", "1s"]).unwrap();
    // Expiry is checked against the clock: let the second pass.
    std::thread::sleep(Duration::from_millis(1500));
    let msi = lab.msi.clone();
    let (_, log) = lab.msiexec(
        &["/i", &msi, &format!("ENROLTOKEN={expired}"), "/qn"],
        "install-expired.log",
    );
    assert!(lab.installed().is_file(), "the agent is not installed");
    assert!(
        !lab.data().join("enrolment.toml").exists(),
        "enrolled with an expired token"
    );
    let state = lab.wine.service_state();
    assert!(
        state.contains("STOPPED") && !state.contains("RUNNING"),
        "the service runs on a device that is not enrolled:\n{state}"
    );
    // Why, and what to do, in the MSI log.
    for said in [
        "QuietExec: enrolment with ENROLTOKEN failed: the enrolment token expired; ask a technician for a new one",
        "The agent is installed but NOT enrolled, and the TutelaAgent service is NOT started.",
        "enrol <token>` followed by `sc start TutelaAgent`",
    ] {
        assert!(log.contains(said), "the MSI log does not say {said:?}:\n{log}");
    }
    let leaks = token_leaks(&log, &expired);
    assert!(
        leaks.is_empty(),
        "the enrolment token is in the MSI log:\n{}",
        leaks.join("\n")
    );
    // Started anyway (as at the next boot, the service being automatic), it stops at once
    // with its own exit code for "not enrolled" (2) rather than run with nothing to do.
    let _ = lab
        .wine
        .cmd("wine")
        .args(["sc", "start", "TutelaAgent"])
        .status();
    wait_for(
        "the service to stop itself",
        Duration::from_secs(30),
        || lab.wine.service_state().contains("STOPPED"),
    )
    .unwrap_or_else(|e| panic!("{e}:\n{}", lab.wine.service_state()));
    let state = lab.wine.service_state();
    assert!(
        state.contains("SERVICE_EXIT_CODE  : 2 "),
        "the service did not stop for want of an enrolment:\n{state}"
    );
    lab.msiexec(&["/x", &msi, "/qn"], "uninstall-expired.log");
    assert!(!lab.installed().exists(), "uninstall left the agent");
}

/// Returns the agent id.
fn a_good_token_installs_enrols_and_starts_the_service(lab: &mut Lab, token: &str) -> String {
    let msi = lab.msi.clone();
    let (_, log) = lab.msiexec(
        &["/i", &msi, &format!("ENROLTOKEN={token}"), "/qn"],
        "install.log",
    );

    // Files in place: the agent as built, and the data directory.
    assert_eq!(
        std::fs::read(lab.installed()).unwrap_or_default(),
        std::fs::read(windows_agent()).unwrap(),
        "{} is not the built agent",
        lab.installed().display()
    );
    let data_key = lab
        .wine
        .reg_query(r"HKLM\SOFTWARE\Tutela\Agent")
        .expect("HKLM\\SOFTWARE\\Tutela\\Agent is written");
    assert!(
        data_key.contains(r"C:\ProgramData\Tutela\agent\"),
        "DataDir value: {data_key}"
    );

    // The service is registered to run the supervisor with the data directory.
    let service = lab
        .wine
        .reg_query(r"HKLM\System\CurrentControlSet\Services\TutelaAgent")
        .expect("the TutelaAgent service is registered");
    assert!(
        service.contains("tutela-agent.exe")
            && service.contains(r#"--data-dir "C:\ProgramData\Tutela\agent\\" service run"#),
        "service ImagePath: {service}"
    );

    // The device enrolled during the install, as the collector sees it.
    let enrolment = lab.data().join("enrolment.toml");
    assert!(enrolment.is_file(), "not enrolled; install log:\n{log}");
    let agent_id = read(&enrolment)
        .lines()
        .find_map(|l| l.strip_prefix("agent_id = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("agent_id in enrolment.toml");
    let agents = run_ok(lab.collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        agents.lines().any(|l| l.starts_with(&agent_id)),
        "{agent_id} not in the collector's agents:\n{agents}"
    );
    assert!(
        log.contains(&format!("QuietExec: enrolled as {agent_id}"))
            && log.contains("QuietExec: service TutelaAgent started"),
        "the setup step's report is not in the MSI log:\n{log}"
    );

    // The token is not in the install log: not in a command line, nor in the setup step's
    // output. Wine cannot do one step Windows does here: its end-of-install dump of every
    // property ignores MsiHiddenProperties, so the dump lines Windows would hide are allowed.
    assert!(
        log.contains("MsiHiddenProperties = ENROLTOKEN;AgentSetup"),
        "the MSI does not hide ENROLTOKEN:\n{log}"
    );
    let leaks = token_leaks(&log, token);
    assert!(
        leaks.is_empty(),
        "the enrolment token is in the MSI log:\n{}",
        leaks.join("\n")
    );

    // Wine's service manager started the service: `tutela-agent service run`, the supervisor.
    let state = lab.wine.service_state();
    assert!(state.contains("RUNNING"), "sc query TutelaAgent:\n{state}");

    // The data directory is SYSTEM's and the Administrators' only. Wine keeps an ACL as the
    // directory's Unix mode and reads it back from there: SYSTEM's entry and no entry for
    // Everyone or Users is what it can show (on Windows, `icacls` shows exactly `D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)`).
    let show = run_ok(lab.wine.agent().args(["service", "show"])).unwrap();
    let acl = show
        .lines()
        .find_map(|l| l.strip_prefix("data directory permissions: "))
        .unwrap_or_else(|| panic!("no permissions in `service show`:\n{show}"));
    assert!(
        acl.contains("(A;OICI;FA;;;SY)"),
        "data directory ACL: {acl}"
    );
    for anyone in [";WD)", ";BU)", ";AU)"] {
        assert!(!acl.contains(anyone), "data directory ACL: {acl}");
    }
    let mode = std::fs::metadata(lab.data()).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the data directory is open to others: {mode:o}"
    );
    // The recovery settings are set (the setup step says so); Wine's service manager cannot
    // report failure actions back, so `service show` says it cannot read them here (on
    // Windows, `sc qfailure TutelaAgent`).
    assert!(
        log.contains(
            "QuietExec: recovery set: Windows restarts the TutelaAgent service 5 s after a failure"
        ),
        "the setup step did not set the service's recovery:\n{log}"
    );
    agent_id
}

/// A new prefix reports Windows 7 (build 7601): the keys sensor refuses to run, says why in
/// the log (which never holds typed text), and the other sensors run.
fn the_keys_sensor_refuses_an_old_windows_build(lab: &mut Lab) {
    let (mut agent, log) = lab.start_session_agent("agent-win7.log");
    let text = read(&log);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        text.contains("Windows build 7601 cannot translate keys")
            && text.contains("needs Windows 10 version 1607 (build 14393) or later"),
        "the keys sensor's refusal is not in the log:\n{text}"
    );
    for sensor in ["window", "browser", "process"] {
        assert!(
            text.contains(&format!("\"{sensor}\"")),
            "the {sensor} sensor did not start on Windows 7; log:\n{text}"
        );
    }
}

fn the_session_agent_alerts_on_each_sensor(lab: &mut Lab) {
    // Retry the collector soon after it comes back (the default backs off to 30 s).
    std::fs::write(
        lab.data().join("agent.toml"),
        "[uplink]\nbackoff_max_ms = 2000\n",
    )
    .unwrap();
    let retitle = lab.wine.drive_c("users/Public/retitle.exe");
    build_program("retitle", &retitle);
    // The same program under the name of a filter-bypass tool, for the process sensor.
    let bypass = lab.wine.drive_c("users/Public/psiphon3.exe");
    std::fs::copy(&retitle, &bypass).unwrap();

    lab.spawn("notepad", &[]);
    // Wine cannot do the supervisor's next step on real Windows: Wine has no separate
    // console session to start `tutela-agent run` in with a copy of the SYSTEM token. Run the
    // session component as installed, on the Wine desktop, instead.
    // The school's monitoring notice for the station's group, set before the session starts.
    let notice = lab.scratch.path("notice.txt");
    std::fs::write(&notice, "This computer is monitored to keep you safe.").unwrap();
    run_ok(
        lab.collector
            .cmd()
            .args(["notice", "set", "--group", GROUP, "--file"])
            .arg(&notice),
    )
    .unwrap();
    let (mut agent, log) = lab.start_session_agent("agent.log");
    let text = read(&log);
    for sensor in ["window", "keys", "browser", "process"] {
        assert!(
            text.contains(&format!("\"{sensor}\"")),
            "the {sensor} sensor did not start under Wine; agent log:\n{text}"
        );
    }
    the_notice_is_shown_and_its_acknowledgement_stored(lab, &log);

    // Typed text in notepad, with a screenshot that decodes.
    lab.focus("Notepad");
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    let alert = lab.wait_for_alert("a typed alert from notepad", &log, |a| {
        a["source"] == "typed" && a["app"] == "notepad"
    });
    assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
    assert_eq!(alert["chain_ok"], true, "{alert}");
    assert_eq!(alert["has_capture"], true, "{alert}");
    let jpeg = lab
        .collector
        .capture(
            alert["id"].as_i64().unwrap(),
            &lab.scratch.path("capture.jpg"),
        )
        .unwrap();
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the capture is a JPEG");
    assert!(image.width() > 0 && image.height() > 0, "an empty capture");
    // A real picture of the screen, not one flat colour.
    let luma = image.to_luma8();
    let first = luma.get_pixel(0, 0).0[0];
    assert!(
        luma.pixels().any(|p| p.0[0].abs_diff(first) > 32),
        "the capture is blank (every pixel about {first})"
    );

    // A Win32 window whose title changes, from a program named like a filter-bypass tool:
    // a title alert and a process alert.
    const TITLE: &str = "I want to kill myself tonight";
    lab.spawn(r"C:\users\Public\psiphon3.exe", &["Homework", TITLE]);
    let alert = lab.wait_for_alert("a title alert on the retitled window", &log, |a| {
        a["source"] == "title" && a["window_title"] == TITLE
    });
    assert_eq!(alert["app"], "psiphon3", "{alert}");
    assert_eq!(alert["category"], "suicide", "{alert}");
    let alert = lab.wait_for_alert("a process alert on psiphon3.exe", &log, |a| {
        a["source"] == "process" && a["category"] == "illegal"
    });
    assert!(
        alert["app"].as_str().unwrap_or("").contains("psiphon3"),
        "{alert}"
    );

    // A visit in a Chrome-format History database at its Windows path.
    const URL: &str = "http://127.0.0.1:9/forum/thread-42";
    const PAGE: &str = "How to buy a gun without a licence";
    chrome_visit(lab, URL, PAGE);
    let alert = lab.wait_for_alert("a URL alert from Chrome's history", &log, |a| {
        a["source"] == "url" && a["url"] == URL
    });
    assert_eq!(alert["window_title"], PAGE, "{alert}");
    assert_eq!(alert["category"], "weapons", "{alert}");

    // A sign-in window keeps no typed text.
    const SIGN_IN: &str = "Sign in to your account";
    lab.spawn(r"C:\users\Public\retitle.exe", &[SIGN_IN]);
    lab.focus(SIGN_IN);
    lab.desktop
        .type_text("i am going to stab him tomorrow")
        .unwrap();
    lab.desktop.keys(&["Return"]).unwrap();

    // The collector goes away; what happens meanwhile is delivered when it is back on the
    // same port and data.
    lab.collector.kill9();
    const LATER: &str = "How to make a pipe bomb at home";
    lab.spawn(r"C:\users\Public\retitle.exe", &["Maths", LATER]);
    wait_for("the match while the collector is down", ALERT, || {
        read(&log).contains("weapons/pipe bomb")
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(&log)));
    wait_for("the uplink to notice", ALERT, || {
        read(&log).contains("uplink interrupted")
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(&log)));
    lab.collector.start().unwrap();
    let alert = lab.wait_for_alert("the alert made while the collector was down", &log, |a| {
        a["source"] == "title" && a["window_title"] == LATER
    });
    assert_eq!(alert["chain_ok"], true, "{alert}");

    // Everything typed in the sign-in window came before that alert: none of it was kept,
    // in whatever window the agent might have placed it.
    let alerts = lab.collector.all_alerts().unwrap();
    let typed_there: Vec<_> = alerts
        .iter()
        .filter(|a| {
            a["source"] == "typed"
                && (a["window_title"] == SIGN_IN
                    || a["rule_id"].as_str().unwrap_or("").contains("stab"))
        })
        .collect();
    assert!(
        typed_there.is_empty(),
        "typed text from a sign-in window raised alerts: {typed_there:?}"
    );
    assert!(
        !read(&log).contains("stab him tomorrow"),
        "typed text is in the agent's log:\n{}",
        read(&log)
    );
    let _ = agent.kill();
    let _ = agent.wait();
}

/// The session agent shows the group's notice in a message box on the pupil's desktop; OK
/// sends the signed acknowledgement, which the collector lists for the group.
fn the_notice_is_shown_and_its_acknowledgement_stored(lab: &mut Lab, log: &std::path::Path) {
    let mut window = String::new();
    wait_for("the notice's message box", AGENT_START, || {
        window = lab
            .desktop
            .xdotool(&["search", "--name", "Tutela: monitoring notice"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        !window.is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(log)));
    let acks = || {
        let out = run_ok(
            lab.collector
                .cmd()
                .args(["notice", "acks", "--group", GROUP, "--json"]),
        )
        .unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let before = acks();
    assert!(
        before["accepted"].as_array().is_some_and(|a| a.is_empty()),
        "acknowledged before OK was pressed: {before}"
    );
    lab.desktop.focus(&window).unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    let mut listed = serde_json::Value::Null;
    wait_for("the acknowledgement at the collector", ALERT, || {
        listed = acks();
        listed["accepted"].as_array().is_some_and(|a| !a.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(log)));
    let accepted = &listed["accepted"][0];
    assert_eq!(accepted["version"], 1, "{listed}");
    assert!(
        accepted["station"].as_str().is_some_and(|s| !s.is_empty()),
        "{listed}"
    );

    // 'Report a concern' in the Start menu runs `tutela-agent concern`, which opens the address
    // the agent published with the notice (Wine has no browser to open it with: `--print`
    // shows what would be opened).
    // The package is per-machine (ALLUSERS=1), so Windows puts the shortcut in every user's
    // Start menu; Wine 8 puts it in the installing user's.
    let menus = [
        lab.wine
            .drive_c("ProgramData/Microsoft/Windows/Start Menu/Programs/Tutela"),
        lab.wine
            .user_home()
            .join("AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Tutela"),
    ];
    assert!(
        menus
            .iter()
            .any(|m| m.join("Report a concern.lnk").is_file()),
        "no 'Report a concern' shortcut in {menus:?}"
    );
    let table = run_ok(Command::new("msiinfo").args(["export", &lab.msi, "Shortcut"])).unwrap();
    assert!(
        table
            .contains("Report a concern\tConcernShortcut\t[INSTALLDIR]tutela-agent.exe\tconcern\t"),
        "the shortcut runs `tutela-agent concern`:\n{table}"
    );
    let published = lab.wine.drive_c("ProgramData/Tutela/concern-url.txt");
    let url = read(&published);
    assert!(
        url.starts_with("http://") && url.trim_end().ends_with("/concern"),
        "{url:?} in {}",
        published.display()
    );
    let printed = run_ok(lab.wine.agent().args(["concern", "--print"])).unwrap();
    assert_eq!(printed.trim(), url.trim(), "tutela-agent concern --print");
}

/// Writes a Chrome-format `History` under the Wine user's Chrome profile, with one visit now.
fn chrome_visit(lab: &Lab, url: &str, title: &str) {
    let profile = lab
        .wine
        .user_home()
        .join("AppData/Local/Google/Chrome/User Data/Default");
    std::fs::create_dir_all(&profile).unwrap();
    // Made beside it and moved in whole, as a browser's first write would appear.
    let made = profile.join("History.new");
    let conn = rusqlite::Connection::open(&made).unwrap();
    conn.execute_batch(
        "CREATE TABLE urls (id INTEGER PRIMARY KEY AUTOINCREMENT, url LONGVARCHAR,
             title LONGVARCHAR, visit_count INTEGER DEFAULT 0 NOT NULL,
             typed_count INTEGER DEFAULT 0 NOT NULL, last_visit_time INTEGER NOT NULL,
             hidden INTEGER DEFAULT 0 NOT NULL);
         CREATE TABLE visits (id INTEGER PRIMARY KEY, url INTEGER NOT NULL,
             visit_time INTEGER NOT NULL, from_visit INTEGER,
             transition INTEGER DEFAULT 0 NOT NULL, segment_id INTEGER,
             visit_duration INTEGER DEFAULT 0 NOT NULL);",
    )
    .unwrap();
    let unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    // Chrome counts microseconds from 1601.
    let visit_time = unix_us + 11_644_473_600_000_000;
    conn.execute(
        "INSERT INTO urls (id, url, title, last_visit_time) VALUES (1, ?1, ?2, ?3)",
        rusqlite::params![url, title, visit_time],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO visits (url, visit_time) VALUES (1, ?1)",
        [visit_time],
    )
    .unwrap();
    drop(conn);
    std::fs::rename(&made, profile.join("History")).unwrap();
}

fn uninstall_keeps_the_identity_and_purgedata_removes_it(lab: &mut Lab, agent_id: &str) {
    let msi = lab.msi.clone();
    let data = lab.data();
    let enrolment = data.join("enrolment.toml");

    // Uninstall removes the program and keeps the identity.
    lab.msiexec(&["/x", &msi, "/qn"], "uninstall.log");
    assert!(
        !lab.installed().exists(),
        "{} left after uninstall",
        lab.installed().display()
    );
    let kept_enrolment = std::fs::read(&enrolment).expect("uninstall kept the enrolment");
    let kept_key = std::fs::read(data.join("agent.key")).expect("uninstall kept the agent key");

    // A reinstall without a token brings the program back with the same identity, and the
    // service starts again.
    let (_, log) = lab.msiexec(&["/i", &msi, "/qn"], "reinstall.log");
    assert!(
        lab.installed().is_file(),
        "the reinstall put no agent in place"
    );
    assert_eq!(
        read(&enrolment).as_bytes(),
        kept_enrolment.as_slice(),
        "the reinstall changed the enrolment"
    );
    assert_eq!(
        std::fs::read(data.join("agent.key")).unwrap(),
        kept_key,
        "the reinstall changed the agent key"
    );
    assert!(
        log.contains(&format!("QuietExec: already enrolled as {agent_id}")),
        "reinstall log:\n{log}"
    );
    let state = lab.wine.service_state();
    assert!(state.contains("RUNNING"), "after the reinstall:\n{state}");

    // PURGEDATA=1: the key, enrolment and spool go with the program.
    let (_, log) = lab.msiexec(&["/x", &msi, "PURGEDATA=1", "/qn"], "purge.log");
    assert!(!lab.installed().exists(), "the purge left the agent");
    assert!(
        !data.exists(),
        "PURGEDATA=1 left {}: {}\nlog:\n{log}",
        data.display(),
        read_or_note(&enrolment)
    );
    assert!(
        log.contains("QuietExec: deleted C:\\ProgramData\\Tutela\\agent"),
        "purge log:\n{log}"
    );
}
