//! `installer/demo.sh` as a newcomer runs it: with no configuration it starts
//! a collector, a virtual desktop and an enrolled agent, raises a title, a
//! typed and a browser alert through the real sensors, and prints a console
//! address and a DSL sign-in that work, with every alert's screenshot there;
//! the pupil's session opened with the monitoring notice, which was accepted,
//! and the 'Report a concern' page is open to pupils.

use std::process::{Command, Stdio};

use tutela_tests::web::{http, sign_in};
use tutela_tests::{bin, free_port, require_programs, run_ok, Collector, Scratch};

#[test]
fn the_demo_ends_with_a_console_a_newcomer_signs_in_to_and_sees_alerts_with_captures() {
    require_programs(&["Xvfb", "openbox", "xterm", "xdotool", "chromium", "python3"]);
    let scratch = Scratch::new("demo");
    let demo = scratch.path("demo");
    let (port, console_port) = (free_port(), free_port());
    let bins = bin("tutela-collector").parent().unwrap().to_owned();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("sh")
        .arg(root.join("installer/demo.sh"))
        .env("TUTELA_DEMO_DIR", &demo)
        .env("TUTELA_DEMO_PORT", port.to_string())
        .env("TUTELA_DEMO_CONSOLE_PORT", console_port.to_string())
        .env("TUTELA_DEMO_BIN", &bins)
        .env("TUTELA_DEMO_EXIT", "1")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        ["agent.log", "collector.log"]
            .iter()
            .map(|f| std::fs::read_to_string(demo.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success() && said.contains("demo: ready"),
        "{said}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let url = format!("http://127.0.0.1:{console_port}/");
    assert!(said.contains(&url), "{said}");
    let password = std::fs::read_to_string(demo.join("dsl-password")).unwrap();
    assert!(
        said.contains(&format!("sign in as demo-dsl with the password {password}")),
        "{said}"
    );

    // The demo stopped everything on its way out; the collector it made
    // serves again from its directory, console included.
    let mut collector = Collector {
        dir: demo.join("collector"),
        port,
        child: None,
        log: demo.join("collector-again.log"),
    };
    collector.start().unwrap();
    let alerts = collector.alerts().unwrap();
    let pupil = std::env::var("USER").unwrap_or_else(|_| {
        String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned()
    });
    let mut ids = Vec::new();
    for (source, context) in [
        ("title", "best online casino bonus - free spins"),
        ("typed", "how do i make a pipe bomb"),
        ("url", "How to buy a gun without a licence"),
    ] {
        let alert = alerts
            .iter()
            .find(|a| a["source"] == source && a["context"].as_str().unwrap().contains(context))
            .unwrap_or_else(|| panic!("no {source} alert in {alerts:#?}\n{}", logs()));
        assert_eq!(alert["user"], pupil.as_str(), "the desktop's user: {alert}");
        assert_eq!(alert["has_capture"], true, "{alert}");
        let id = alert["id"].as_i64().unwrap();
        let jpeg = scratch.path(&format!("capture-{id}.jpg"));
        run_ok(
            collector
                .cmd()
                .args(["alerts", "capture", &id.to_string(), "--out"])
                .arg(&jpeg),
        )
        .unwrap();
        assert!(std::fs::read(&jpeg)
            .unwrap()
            .starts_with(&[0xff, 0xd8, 0xff]));
        ids.push(id);
    }

    // The pupil accepted the monitoring notice: a signed acknowledgement is stored.
    let acks: i64 = rusqlite::Connection::open(demo.join("collector/tutela.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM notice_acks WHERE user = ?1",
            [pupil.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(acks >= 1, "the notice was acknowledged: {said}\n{}", logs());

    // Pupils' 'Report a concern' page needs no sign-in.
    let concern = http(console_port, "GET", "/concern", "", &[]);
    assert_eq!(concern.status, 200);
    assert!(
        said.contains(&format!("http://127.0.0.1:{console_port}/concern")),
        "{said}"
    );

    // The printed sign-in opens the queue, which lists them, and each alert's page.
    let (session, _) = sign_in(console_port, "demo-dsl", password.trim(), "/queue");
    let queue = http(console_port, "GET", "/queue", &session, &[]);
    assert_eq!(queue.status, 200);
    for id in &ids {
        assert!(
            queue.body.contains(&format!("/alerts/{id}")),
            "{}",
            queue.body
        );
        let page = http(console_port, "GET", &format!("/alerts/{id}"), &session, &[]);
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains(&format!("/alerts/{id}/")),
            "a capture: {}",
            page.body
        );
    }
}
