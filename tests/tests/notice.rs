//! The monitoring notice end to end (issue 17): the DSL sets a group's
//! notice in the console (a notice over its limit is refused with a clear
//! message and nothing kept); a real agent on a virtual X desktop shows it
//! in a window when the session starts; pressing Return (or clicking 'I
//! understand') closes it and sends a signed acknowledgement that the
//! collector stores; a new version is shown again during the session and at
//! the next sign-in; the console lists who has and has not accepted the
//! current version, and technicians cannot see that list.

use std::time::Duration;

use ring::signature::{UnparsedPublicKey, ED25519};
use tutela_tests::web::{http, sign_in};
use tutela_tests::{run_ok, wait_for, Agent, Collector, Desktop, Scratch};

const PASSWORD: &str = "correct horse battery staple";
const USER: &str = "pupil.one";
const STATION: &str = "LAB1-PC07";
const GROUP: &str = "y10";
const TITLE: &str = "^Tutela: monitoring notice$";
const UPLINK: &str = "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n";
/// A debug agent compiles the full pack before its sensors (and the notice) start.
const START_WAIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);

/// Sets the notice of `GROUP` through the console as `session`.
fn set_notice(port: u16, session: &(String, String), text: &str, mode: &str) -> (u16, String) {
    let r = http(
        port,
        "POST",
        "/notices",
        &session.0,
        &[
            ("csrf", &session.1),
            ("group", GROUP),
            ("text", text),
            ("mode", mode),
            ("concern_url", &format!("http://127.0.0.1:{port}/concern")),
        ],
    );
    (r.status, r.body)
}

/// The notice window's id, once it is shown.
fn wait_for_window(desktop: &Desktop, agent: &Agent, what: &str) -> String {
    let mut window = String::new();
    wait_for(what, START_WAIT, || {
        window = desktop
            .xdotool(&["search", "--name", TITLE])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        !window.is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    window
}

fn window_gone(desktop: &Desktop) -> bool {
    desktop
        .xdotool(&["search", "--name", TITLE])
        .map_or(true, |out| out.trim().is_empty())
}

/// Stored acknowledgements: (user, station, version, body, signature).
type Ack = (String, String, u32, Vec<u8>, Vec<u8>);

fn acks(collector: &Collector) -> Vec<Ack> {
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT user, station, version, body, signature FROM notice_acks ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn wait_for_acks(collector: &Collector, agent: &Agent, n: usize) -> Vec<Ack> {
    let mut stored = Vec::new();
    wait_for(&format!("{n} stored acknowledgement(s)"), WAIT, || {
        stored = acks(collector);
        stored.len() >= n
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}\ncollector log:\n{}",
            agent.log_text(),
            collector.log_text()
        )
    });
    stored
}

/// Rows of the console table `id` on `page`, as text without markup.
fn table_users(page: &str, id: &str) -> Vec<String> {
    let start = page
        .find(&format!(r#"<table id="{id}">"#))
        .unwrap_or_else(|| panic!("no table {id} in:\n{page}"));
    let table = &page[start..start + page[start..].find("</table>").unwrap()];
    table
        .split(r#"<td class="user">"#)
        .skip(1)
        .map(|cell| cell[..cell.find("</td>").unwrap()].to_owned())
        .collect()
}

#[test]
fn the_notice_is_shown_at_session_start_acknowledged_signed_and_shown_again_for_a_new_version() {
    let scratch = Scratch::new("notice");
    let desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("dsl.jones", "dsl"), ("tech.tom", "technician")],
        PASSWORD,
    )
    .unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let dsl = sign_in(port, "dsl.jones", PASSWORD, "/notices?group=y10");

    // Over the limit: refused with the reason, and nothing kept.
    let (status, body) = set_notice(port, &dsl, &"a".repeat(4001), "every-sign-in");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("the notice is 4001 characters long; the limit is 4000"),
        "{body}"
    );
    assert!(body.contains(r#"id="version-none""#), "{body}");
    let (status, body) = set_notice(port, &dsl, "   ", "every-sign-in");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the notice is empty"), "{body}");

    let v1 = "This computer is monitored by the school to keep you safe.\n\
              What you type, the windows you open and the sites you visit are checked.\n\
              Read the acceptable use policy: https://school.example/aup";
    let (status, body) = set_notice(port, &dsl, v1, "every-sign-in");
    assert_eq!(status, 303, "{body}");

    // A pupil signs in: the agent starts for the session and shows the notice.
    let home = scratch.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.on_desktop(&desktop, &home);
    agent
        .enrol(&collector.token(&["--group", GROUP]).unwrap())
        .unwrap();
    // Where the agent publishes the 'Report a concern' address for the desktop entry.
    let concern_link = scratch.path("public/concern-url");
    std::fs::write(
        agent.dir.join("agent.toml"),
        format!(
            "{UPLINK}[notice]\nconcern_link_file = \"{}\"\n",
            concern_link.display()
        ),
    )
    .unwrap();
    agent.start(&[]).unwrap();
    agent.wait_for_sensors(START_WAIT).unwrap();
    let window = wait_for_window(&desktop, &agent, "the notice window at session start");
    assert!(acks(&collector).is_empty(), "nothing acknowledged yet");

    // Return acknowledges it: the window closes and a signed acknowledgement arrives.
    desktop.focus(&window).unwrap();
    desktop.keys(&["Return"]).unwrap();
    let stored = wait_for_acks(&collector, &agent, 1);
    wait_for("the notice window to close", WAIT, || window_gone(&desktop)).unwrap();
    let (user, station, version, body, signature) = &stored[0];
    assert_eq!(
        (user.as_str(), station.as_str(), *version),
        (USER, STATION, 1)
    );
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let key: Vec<u8> = db
        .query_row(
            "SELECT public_key FROM agents WHERE agent_id = ?1",
            [agent.agent_id()],
            |r| r.get(0),
        )
        .unwrap();
    let mut signed = b"tutela-notice-ack-v1".to_vec();
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&signed, signature)
        .expect("the acknowledgement is signed with the station's enrolled key");

    // 'Report a concern' from the desktop: `tutela-agent concern` (the desktop entry's
    // command, run as the pupil) opens the address published with the notice in the
    // browser; here a headless Chromium, which prints the page it loaded.
    let concern = |browser: &str| {
        std::process::Command::new(tutela_tests::bin("tutela-agent"))
            .args(["concern", "--link-file"])
            .arg(&concern_link)
            .env("BROWSER", browser)
            .env_remove("DISPLAY")
            .output()
            .unwrap()
    };
    let profile = scratch.path("browser-profile");
    let opened = concern(&format!(
        "chromium --headless --no-sandbox --disable-gpu --user-data-dir={} --dump-dom %s",
        profile.display()
    ));
    let page = String::from_utf8_lossy(&opened.stdout);
    assert!(
        opened.status.success() && page.contains("<h1>Report a concern</h1>"),
        "the concern page did not open: {page}\n{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    // The file holds the address and nothing else; one that is not a web address is
    // refused, not opened, with what to do.
    let published = std::fs::read_to_string(&concern_link).unwrap();
    assert!(
        published.starts_with("http://127.0.0.1:") && published.trim_end().ends_with("/concern"),
        "{published:?}"
    );
    std::fs::write(&concern_link, "file:///etc/shadow\n").unwrap();
    let refused = concern("false %s");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("holds no valid web address"),
        "{said}"
    );
    std::fs::write(&concern_link, published).unwrap();

    // A new version reaches the running session and is shown again.
    let (status, body) = set_notice(
        port,
        &dsl,
        &format!("{v1}\nNew this term: phones are monitored on the school Wi-Fi."),
        "once-per-version",
    );
    assert_eq!(status, 303, "{body}");
    let page = http(port, "GET", "/notices?group=y10", &dsl.0, &[]).body;
    assert_eq!(table_users(&page, "pending"), [USER], "{page}");
    assert!(table_users(&page, "accepted").is_empty(), "{page}");
    let window = wait_for_window(&desktop, &agent, "the notice window for version 2");
    // This time the pupil clicks 'I understand' (centred at the bottom).
    let (_, _, width, height) = desktop.geometry(&window).unwrap();
    let (x, y) = ((width / 2).to_string(), (height - 34).to_string());
    desktop
        .xdotool(&["mousemove", "--window", &window, &x, &y, "click", "1"])
        .unwrap();
    let stored = wait_for_acks(&collector, &agent, 2);
    assert_eq!(stored[1].2, 2, "the acknowledgement names version 2");
    wait_for("the notice window to close", WAIT, || window_gone(&desktop)).unwrap();
    let page = http(port, "GET", "/notices?group=y10", &dsl.0, &[]).body;
    assert_eq!(table_users(&page, "accepted"), [USER], "{page}");
    assert!(table_users(&page, "pending").is_empty(), "{page}");
    assert!(page.contains(r#"<span id="version">2</span>"#), "{page}");

    // The list names pupils: technicians are refused it.
    let tech = sign_in(port, "tech.tom", PASSWORD, "/fleet");
    let r = http(port, "GET", "/notices?group=y10", &tech.0, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains(USER), "{}", r.body);

    // The next sign-in, once per version: version 2 was acknowledged, so
    // nothing is shown; the DSL switches to every sign-in (version 3), which
    // is shown at once, and again at the following sign-in.
    agent.kill9();
    let before = acks(&collector).len();
    const NOTHING_SHOWN: &str = "no monitoring notice to show at sign-in";
    let decided = agent.log_text().matches(NOTHING_SHOWN).count();
    agent.start(&[]).unwrap();
    agent.wait_for_sensors(START_WAIT).unwrap();
    wait_for("the agent to decide on the notice", START_WAIT, || {
        agent.log_text().matches(NOTHING_SHOWN).count() > decided
    })
    .unwrap();
    assert!(
        window_gone(&desktop),
        "a version already acknowledged is not shown again"
    );
    let (status, _) = set_notice(port, &dsl, "Use is monitored.", "every-sign-in");
    assert_eq!(status, 303);
    let window = wait_for_window(&desktop, &agent, "the notice window for version 3");
    desktop.focus(&window).unwrap();
    desktop.keys(&["Return"]).unwrap();
    wait_for_acks(&collector, &agent, before + 1);
    agent.kill9();
    agent.start(&[]).unwrap();
    agent.wait_for_sensors(START_WAIT).unwrap();
    let window = wait_for_window(&desktop, &agent, "the notice window at the next sign-in");
    desktop.focus(&window).unwrap();
    desktop.keys(&["Return"]).unwrap();
    let stored = wait_for_acks(&collector, &agent, before + 2);
    let versions: Vec<u32> = stored.iter().map(|a| a.2).collect();
    assert!(versions[before..].iter().all(|&v| v == 3), "{versions:?}");

    // The pupil's subject-access export holds every acknowledgement.
    let r = http(
        port,
        "POST",
        "/subject-access",
        &dsl.0,
        &[("csrf", &dsl.1), ("account", USER)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.bytes)).unwrap();
    let mut data = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("data.json").unwrap(), &mut data).unwrap();
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let exported: Vec<u64> = data["notice_acknowledgements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(
                (k["station"].as_str(), k["group"].as_str()),
                (Some(STATION), Some(GROUP))
            );
            k["version"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        exported,
        versions.iter().map(|&v| u64::from(v)).collect::<Vec<_>>()
    );

    // The weekly summary counts them.
    let today = run_ok(std::process::Command::new("date").args(["-u", "+%F"])).unwrap();
    let preview = scratch.path("summary.html");
    run_ok(
        collector
            .cmd()
            .args(["summary", "--week", today.trim(), "--preview"])
            .arg(&preview),
    )
    .unwrap();
    let html = std::fs::read_to_string(&preview).unwrap();
    let line = format!(
        "Monitoring notice: {} acknowledgement(s) this week; 1 pupil(s) have accepted their group&#39;s current version, 0 have not yet.",
        versions.len()
    );
    assert!(html.contains(&line), "{line}\nnot in:\n{html}");
}
