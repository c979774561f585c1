//! The agent on a real X desktop (issue 4): a virtual screen with a window
//! manager, real xterm windows, keys typed through the X server, and a real
//! Chromium visiting a page, each raising (or, for school work, not raising)
//! an alert that reaches the collector with its evidence.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tutela_tests::{desktop_agent, require_programs, wait_for, Agent, Collector, Desktop, Scratch};

const USER: &str = "pupil.one";
const STATION: &str = "LAB1-PC07";
/// Fast retries, so a returning collector is reached within a second.
const UPLINK: &str = "[uplink]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n";
/// Generous: a debug agent compiles the full pack at start and encodes screenshots slowly.
const ALERT_WAIT: Duration = Duration::from_secs(60);

/// A desktop watched by an enrolled, running agent that reports to a collector.
struct Lab {
    agent: Agent,
    collector: Collector,
    desktop: Desktop,
    home: PathBuf,
    scratch: Scratch,
}

impl Lab {
    fn start(name: &str, agent_toml: &str) -> Self {
        let scratch = Scratch::new(name);
        let desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
        let (collector, mut agent, home) = desktop_agent(&scratch, &desktop, agent_toml).unwrap();
        agent.start(&[]).unwrap();
        agent.wait_for_sensors(Duration::from_secs(180)).unwrap();
        let log = agent.log_text();
        for sensor in ["window", "keys", "browser", "process"] {
            assert!(
                log.contains(&format!("\"{sensor}\"")),
                "the {sensor} sensor did not start; agent log:\n{log}"
            );
        }
        Self {
            agent,
            collector,
            desktop,
            home,
            scratch,
        }
    }

    /// Waits for an alert, failing with the agent's log as well as the stored alerts.
    fn wait_for_alert(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.collector
            .wait_for_alert(what, ALERT_WAIT, matches)
            .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", self.agent.log_text()))
    }

    fn alerts(&self) -> Vec<Value> {
        self.collector.alerts().unwrap()
    }

    /// Alerts on this desktop's windows: titles and typing. (The agent also reads the history
    /// of every browser profile on the machine and the whole process table, which the tests
    /// do not control.)
    fn window_alerts(&self) -> Vec<Value> {
        let mut alerts = self.alerts();
        alerts.retain(|a| a["source"] == "title" || a["source"] == "typed");
        alerts
    }
}

/// Fields every alert from this desktop carries.
fn assert_from_this_desktop(alert: &Value) {
    assert_eq!(alert["user"], USER, "{alert}");
    assert_eq!(alert["station"], STATION, "{alert}");
    assert_eq!(alert["chain_ok"], true, "{alert}");
    assert_eq!(alert["state"], "new", "{alert}");
}

fn typed_in(alert: &Value, title: &str) -> bool {
    alert["source"] == "typed" && alert["window_title"] == title
}

/// Mean and variance of the luma of an image.
fn luma_stats(image: &image::GrayImage) -> (f64, f64) {
    let n = f64::from(image.width() * image.height());
    let mean = image.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / n;
    let variance = image
        .pixels()
        .map(|p| (f64::from(p.0[0]) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance)
}

#[test]
fn a_window_title_trigger_raises_an_alert_with_a_screenshot() {
    let mut lab = Lab::start("desktop-title", UPLINK);
    let window = lab.desktop.open_xterm("Year 9 history notes").unwrap();
    let title = "I want to kill myself tonight";
    lab.desktop.rename(&window, title).unwrap();

    let alert = lab.wait_for_alert("an alert on the renamed window", |a| {
        a["source"] == "title" && a["window_title"] == title
    });
    assert_from_this_desktop(&alert);
    assert_eq!(alert["app"], "xterm", "{alert}");
    assert_eq!(alert["context"], title, "{alert}");
    assert_eq!(alert["category"], "suicide", "{alert}");
    assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
    assert_eq!(alert["severity"], 5, "{alert}");
    assert_eq!(alert["has_capture"], true, "{alert}");
    // The school-work title before the rename raised nothing.
    for a in lab.window_alerts() {
        assert_eq!(a["window_title"], title, "unexpected alert {a}");
    }

    let jpeg = lab
        .collector
        .capture(
            alert["id"].as_i64().unwrap(),
            &lab.scratch.path("capture.jpg"),
        )
        .unwrap();
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the capture is a JPEG");
    // 1920x1080 scaled to 1280 wide, keeping the aspect ratio.
    assert_eq!(
        (image.width(), image.height()),
        (1280, 1280 * Desktop::HEIGHT / Desktop::WIDTH)
    );
    let luma = image.to_luma8();
    let (mean, variance) = luma_stats(&luma);
    assert!(
        variance > 0.0,
        "the capture is blank (every pixel {mean:.0})"
    );
    // It shows the screen as it was: the xterm's white page where the window is.
    let (x, y, w, h) = lab.desktop.geometry(&window).unwrap();
    let scale = |v: u32| v * image.width() / Desktop::WIDTH;
    let centre = luma.get_pixel(scale(x + w / 2), scale(y + h / 2)).0[0];
    assert!(
        centre > 200 && f64::from(centre) > mean,
        "the xterm is not where it was on screen (luma {centre} at its centre, mean {mean:.0})"
    );
}

#[test]
fn typing_a_trigger_phrase_raises_a_typed_alert_with_the_phrase() {
    let mut lab = Lab::start("desktop-typed", UPLINK);
    lab.desktop.open_xterm("Homework").unwrap();
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();

    let alert = lab.wait_for_alert("a typed alert", |a| typed_in(a, "Homework"));
    assert_from_this_desktop(&alert);
    assert_eq!(alert["app"], "xterm", "{alert}");
    assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
    assert_eq!(alert["category"], "suicide", "{alert}");
    let context = alert["context"].as_str().unwrap();
    assert!(
        context.contains("i want to kill myself"),
        "context {context:?} lacks the typed phrase"
    );
}

#[test]
fn a_match_found_as_the_pupil_turns_to_a_sign_in_window_has_no_screenshot() {
    let mut lab = Lab::start("desktop-private-front", UPLINK);
    lab.desktop.open_xterm("Homework").unwrap();
    // No Return: the phrase is checked as the pupil leaves the window, and
    // they leave it for a sign-in prompt, which must not be photographed.
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.open_xterm("Sign in - Google Accounts").unwrap();
    let alert = lab.wait_for_alert("a typed alert", |a| typed_in(a, "Homework"));
    assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
    assert_eq!(alert["has_capture"], false, "{alert}");

    // The same phrase sent while its own window is in front is shot.
    lab.desktop.open_xterm("Diary").unwrap();
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    let alert = lab.wait_for_alert("a typed alert in Diary", |a| typed_in(a, "Diary"));
    assert_eq!(alert["has_capture"], true, "{alert}");
}

#[test]
fn typing_corrections_are_applied_before_matching() {
    let mut lab = Lab::start("desktop-corrections", UPLINK);
    // Two typos, each fixed with BackSpace: only the corrected text is a trigger, so the
    // alerts prove the corrections reached the matcher, and their context shows the
    // corrected words, not the keystrokes.
    let cases = [
        ("Journal one", "kill mysekf", 2, "lf"),
        ("Journal two", "kill myselx", 1, "f"),
    ];
    for (title, typo, erased, fix) in cases {
        lab.desktop.open_xterm(title).unwrap();
        lab.desktop.type_text(typo).unwrap();
        lab.desktop.keys(&vec!["BackSpace"; erased]).unwrap();
        lab.desktop.type_text(fix).unwrap();
        lab.desktop.keys(&["Return"]).unwrap();
    }
    for (title, typo, _, _) in cases {
        let alert = lab.wait_for_alert(&format!("a typed alert in {title:?}"), |a| {
            typed_in(a, title)
        });
        assert_from_this_desktop(&alert);
        assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
        let context = alert["context"].as_str().unwrap();
        assert!(context.contains("kill myself"), "context {context:?}");
        assert!(
            !context.contains(typo),
            "context {context:?} still holds the erased typo {typo:?}"
        );
    }
}

#[test]
fn school_work_typed_raises_nothing() {
    let mut lab = Lab::start("desktop-benign", UPLINK);
    lab.desktop.open_xterm("History essay").unwrap();
    for line in [
        "we studied the assassination of franz ferdinand in history",
        "how do i kill a python process",
    ] {
        lab.desktop.type_text(line).unwrap();
        lab.desktop.keys(&["Return"]).unwrap();
    }
    // A trigger typed afterwards in the same window: once its alert is stored, anything the
    // lines before it raised would be stored too (events are delivered in order).
    lab.desktop.type_text("how to make a bomb").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    lab.wait_for_alert("the alert typed after the school work", |a| {
        typed_in(a, "History essay") && a["category"] == "weapons"
    });
    let alerts = lab.window_alerts();
    assert_eq!(
        alerts.len(),
        1,
        "school work raised alerts: {}",
        alerts
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A web server on loopback answering every request with a page titled `title`; counts the
/// requests.
fn serve_page(title: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                "<!doctype html><html><head><title>{title}</title></head>\
                 <body><h1>{title}</h1><p>Forum thread.</p></body></html>"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn a_chromium_visit_raises_a_url_alert() {
    require_programs(&["chromium"]);
    let mut lab = Lab::start("desktop-browser", UPLINK);
    const TITLE: &str = "How to buy a gun without a licence";
    let (port, hits) = serve_page(TITLE);
    let url = format!("http://127.0.0.1:{port}/forum/thread-42");
    let profile = lab.home.join(".config/chromium");
    let mut chromium = lab.desktop.command("chromium");
    chromium
        .env("HOME", &lab.home)
        .args([
            "--headless",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url);
    lab.desktop.spawn_group(&mut chromium).unwrap();

    // Chromium writes the visit to its history about ten seconds after the page loads.
    let alert = self_explaining(&lab, &hits, |lab| {
        lab.wait_for_alert("an alert on the visit", |a| {
            a["source"] == "url" && a["url"] == url.as_str()
        })
    });
    assert_from_this_desktop(&alert);
    assert_eq!(alert["window_title"], TITLE, "{alert}");
    assert_eq!(alert["context"], TITLE, "{alert}");
    assert_eq!(alert["category"], "weapons", "{alert}");
    assert_eq!(alert["app"], "browser", "{alert}");
    // Not a known search engine: no query is extracted.
    assert_eq!(alert["search_query"], "", "{alert}");
}

/// Runs `wait`, adding whether the page was ever fetched to a failure.
fn self_explaining(lab: &Lab, hits: &AtomicUsize, wait: impl FnOnce(&Lab) -> Value) -> Value {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait(lab)));
    result.unwrap_or_else(|panic| {
        let fetched = hits.load(Ordering::SeqCst);
        eprintln!(
            "the page was fetched {fetched} times; desktop log:\n{}",
            tutela_tests::read(&lab.desktop.log)
        );
        std::panic::resume_unwind(panic)
    })
}

#[test]
fn repeats_within_the_cooldown_fold_into_one_alert_with_a_count() {
    let toml = format!("{UPLINK}[evidence]\ncooldown_secs = 5\n");
    let mut lab = Lab::start("desktop-cooldown", &toml);
    lab.desktop.open_xterm("Diary").unwrap();
    for _ in 0..3 {
        lab.desktop.type_text("i want to kill myself ").unwrap();
    }
    lab.desktop.keys(&["Return"]).unwrap();

    // The first alert is sent at once; when the cooldown ends, the two repeats are added
    // to it as a count.
    lab.wait_for_alert("the first alert counting three", |a| {
        typed_in(a, "Diary") && a["count"] == 3
    });
    let rule = |a: &&Value| typed_in(a, "Diary") && a["rule_id"] == "suicide/kill myself";
    let alerts = lab.alerts();
    let listed: Vec<&Value> = alerts.iter().filter(rule).collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_from_this_desktop(listed[0]);
    assert_eq!(listed[0]["has_capture"], true, "{}", listed[0]);
    // The folded repeats stay on record, out of the queue.
    let all = lab.collector.all_alerts().unwrap();
    assert!(
        all.iter()
            .filter(rule)
            .any(|a| a["state"] == "folded" && a["count"] == 2),
        "no folded record of the two repeats: {all:?}"
    );

    // After the cooldown the same phrase is a new alert.
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();
    let second = lab.wait_for_alert("a new alert after the cooldown", |a| {
        typed_in(a, "Diary") && a["id"] != listed[0]["id"]
    });
    assert_eq!(second["count"], 1, "{second}");
    assert_eq!(second["rule_id"], "suicide/kill myself", "{second}");
}

#[test]
fn alerts_are_spooled_while_the_collector_is_down_and_delivered_on_its_return() {
    let mut lab = Lab::start("desktop-offline", UPLINK);
    lab.collector.kill9();

    // The agent keeps watching: a title and a typed phrase while nobody listens.
    let window = lab.desktop.open_xterm("Revision").unwrap();
    let title = "Revision: where to buy a gun uk";
    lab.desktop.rename(&window, title).unwrap();
    lab.desktop.open_xterm("Chat").unwrap();
    lab.desktop.type_text("i want to kill myself").unwrap();
    lab.desktop.keys(&["Return"]).unwrap();

    wait_for("both alerts in the agent's spool", ALERT_WAIT, || {
        lab.agent.backlog().is_ok_and(|n| n >= 2)
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", lab.agent.log_text()));
    assert!(
        lab.alerts().is_empty(),
        "stored while the collector was down"
    );

    lab.collector.start().unwrap();
    let on_title = lab.wait_for_alert("the title alert after the return", |a| {
        a["source"] == "title" && a["window_title"] == title
    });
    assert_from_this_desktop(&on_title);
    assert_eq!(on_title["category"], "weapons", "{on_title}");
    let typed = lab.wait_for_alert("the typed alert after the return", |a| typed_in(a, "Chat"));
    assert_from_this_desktop(&typed);
    assert_eq!(typed["rule_id"], "suicide/kill myself", "{typed}");
    wait_for("an empty spool", ALERT_WAIT, || {
        lab.agent.backlog().is_ok_and(|n| n == 0)
    })
    .unwrap();
    let gaps = tutela_tests::run_ok(lab.collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert_eq!(gaps, "", "nothing may be lost");
}
