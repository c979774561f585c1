//! The session agent under Wine: the keys sensor refusing an old Windows
//! build, an alert from each sensor (also while the collector is away), and
//! the monitoring notice shown and its acknowledgement stored.

use std::process::Command;

use tutela_tests::{read, run_ok, wait_for};

use crate::lab::{Lab, AGENT_START, ALERT, GROUP};
use crate::wine::build_program;

/// A new prefix reports Windows 7 (build 7601): the keys sensor refuses to run, says why in
/// the log (which never holds typed text), and the other sensors run.
pub fn the_keys_sensor_refuses_an_old_windows_build(lab: &mut Lab) {
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

pub fn the_session_agent_alerts_on_each_sensor(lab: &mut Lab) {
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
