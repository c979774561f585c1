//! Sensors and evidence capture against real parts: Xvfb, openbox, xterm, xdotool, SQLite
//! history files and (when installed) a headless Chromium.
//!
//! Needs the packages xvfb, xdotool, openbox, xterm (and chromium for the browser run); the
//! tests fail with a hint when they are missing rather than skipping.

#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tutela_agent::capture::{capture_screen_with, CaptureOptions};
use tutela_agent::sensor::{self, Key, SensorConfig, SensorEvent};

const SETUP_HINT: &str = "install the sensor test tools first: \
     apt-get install xvfb xdotool openbox xterm chromium (the project's test setup script does this)";

fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` not found on PATH; {SETUP_HINT}");
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static NEXT_DISPLAY: AtomicU32 = AtomicU32::new(91);

/// A child process asked to end with SIGTERM when dropped, so it can clean up after itself
/// (Xvfb removes its lock file and socket).
struct Graceful(Child);

impl Drop for Graceful {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private Xvfb server, 1920x1080x24.
struct Xvfb {
    display: String,
    _server: Graceful,
}

impl Xvfb {
    fn start() -> Self {
        require("Xvfb");
        for _ in 0..40 {
            // Xvfb itself refuses a display in use and takes over stale lock files.
            let n = NEXT_DISPLAY.fetch_add(1, Ordering::SeqCst);
            let display = format!(":{n}");
            let mut server = Graceful(
                Command::new("Xvfb")
                    .args([
                        &display,
                        "-screen",
                        "0",
                        "1920x1080x24",
                        "-nolisten",
                        "tcp",
                        "-noreset",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn Xvfb"),
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.0.try_wait() {
                    break; // display taken by someone else: try the next one
                }
                if x11rb::connect(Some(&display)).is_ok() {
                    return Xvfb {
                        display,
                        _server: server,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start Xvfb on any display from :91 on; {SETUP_HINT}");
    }

    fn command(&self, program: &str) -> Command {
        require(program);
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs a command to completion (within 20 s) and returns its stdout.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut child = self
            .command(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                assert!(status.success(), "{program} {args:?} failed: {status}");
                return out;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{program} {args:?} did not finish within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn openbox(&self) -> Proc {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut wm = Proc(
            self.command("openbox")
                .arg("--debug")
                .stdout(log.reopen().unwrap())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("spawn openbox"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.wm_running() {
            let exited = wm.0.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("openbox did not start ({exited:?}): {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        wm
    }

    fn wm_running(&self) -> bool {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{AtomEnum, ConnectionExt};
        let (conn, screen) = x11rb::connect(Some(&self.display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let atom = conn
            .intern_atom(false, b"_NET_SUPPORTING_WM_CHECK")
            .unwrap()
            .reply()
            .unwrap()
            .atom;
        conn.get_property(false, root, atom, AtomEnum::WINDOW, 0, 1)
            .unwrap()
            .reply()
            .map(|r| r.value_len > 0)
            .unwrap_or(false)
    }

    /// An xterm titled `title` running `cat` (no shell that could retitle it).
    fn xterm(&self, title: &str, geometry: &str) -> (Proc, u64) {
        let term = Proc(
            self.command("xterm")
                .args(["-T", title, "-geometry", geometry, "-e", "cat"])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn xterm"),
        );
        let id = self.window_named(title);
        (term, id)
    }

    fn window_named(&self, title: &str) -> u64 {
        let pattern = format!("^{title}$");
        let out = self.run("xdotool", &["search", "--sync", "--name", &pattern]);
        out.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no window id for {title:?} in {out:?}"))
    }
}

fn config(x: &Xvfb) -> SensorConfig {
    SensorConfig {
        display: Some(x.display.clone()),
        discover_browser_profiles: false,
        ..SensorConfig::default()
    }
}

/// Receives until `want` matches, failing with everything seen on timeout.
fn wait_for(
    rx: &mut mpsc::Receiver<SensorEvent>,
    timeout: Duration,
    what: &str,
    mut want: impl FnMut(&SensorEvent) -> bool,
) -> SensorEvent {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(event) if want(&event) => return event,
            Ok(event) => seen.push(event),
            Err(mpsc::error::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; saw {seen:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("sensor channel closed while waiting for {what}: {e}"),
        }
    }
}

/// Everything that arrives within `quiet`.
fn drain(rx: &mut mpsc::Receiver<SensorEvent>, quiet: Duration) -> Vec<SensorEvent> {
    std::thread::sleep(quiet);
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.push(event);
    }
    out
}

fn is_window(event: &SensorEvent, id: u64, want_title: &str) -> bool {
    matches!(event, SensorEvent::Window { window_id, title, .. } if *window_id == id && title == want_title)
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn window_sensor_follows_activation_and_renames_under_openbox() {
    let x = Xvfb::start();
    let _wm = x.openbox();
    let (tx, mut rx) = mpsc::channel(256);
    let _sensor = sensor::window::start(&config(&x), tx).expect("window sensor starts");

    let (alpha_proc, alpha) = x.xterm("tutela alpha", "80x24+0+0");
    let event = wait_for(&mut rx, WAIT, "alpha active", |e| {
        is_window(e, alpha, "tutela alpha")
    });
    let SensorEvent::Window { app, .. } = event else {
        unreachable!()
    };
    assert_eq!(app.name, "xterm");
    assert!(app.path.ends_with("/xterm"), "path {:?}", app.path);
    assert_eq!(app.pid, Some(alpha_proc.0.id()));

    let (_beta_proc, beta) = x.xterm("tutela beta", "80x24+900+0");
    wait_for(&mut rx, WAIT, "beta active", |e| {
        is_window(e, beta, "tutela beta")
    });

    x.run("xdotool", &["windowactivate", "--sync", &alpha.to_string()]);
    wait_for(&mut rx, WAIT, "alpha active again", |e| {
        is_window(e, alpha, "tutela alpha")
    });

    // A rename fires both title atoms and openbox echoes it: one event only.
    x.run(
        "xdotool",
        &[
            "set_window",
            "--name",
            "Renamed — ünïcode",
            &alpha.to_string(),
        ],
    );
    wait_for(&mut rx, WAIT, "rename", |e| {
        is_window(e, alpha, "Renamed — ünïcode")
    });
    // Re-activating the already active window changes nothing.
    x.run("xdotool", &["windowactivate", "--sync", &alpha.to_string()]);
    let extra = drain(&mut rx, Duration::from_millis(500));
    assert!(
        extra.is_empty(),
        "no repeat of an identical window and title: {extra:?}"
    );
}

#[test]
fn window_sensor_falls_back_to_focus_and_pointer_without_a_window_manager() {
    let x = Xvfb::start();
    let (tx, mut rx) = mpsc::channel(256);
    let _sensor = sensor::window::start(&config(&x), tx).expect("window sensor starts");
    let (_left_proc, left) = x.xterm("left term", "80x24+0+0");
    let (_right_proc, right) = x.xterm("right term", "80x24+1000+0");

    x.run("xdotool", &["mousemove", "100", "100"]);
    wait_for(&mut rx, WAIT, "pointer over left", |e| {
        is_window(e, left, "left term")
    });
    x.run("xdotool", &["mousemove", "1100", "100"]);
    wait_for(&mut rx, WAIT, "pointer over right", |e| {
        is_window(e, right, "right term")
    });
    // Explicit input focus wins over the pointer.
    x.run("xdotool", &["windowfocus", "--sync", &left.to_string()]);
    wait_for(&mut rx, WAIT, "focus on left", |e| {
        is_window(e, left, "left term")
    });
    x.run(
        "xdotool",
        &["set_window", "--name", "left renamed", &left.to_string()],
    );
    wait_for(&mut rx, WAIT, "rename without a WM", |e| {
        is_window(e, left, "left renamed")
    });
}

#[test]
fn window_sensor_notices_when_the_window_manager_dies() {
    let x = Xvfb::start();
    let mut wm = x.openbox();
    let (tx, mut rx) = mpsc::channel(256);
    let _sensor = sensor::window::start(&config(&x), tx).expect("window sensor starts");
    let (_a_proc, a) = x.xterm("first term", "80x24+0+0");
    wait_for(&mut rx, WAIT, "first active", |e| {
        is_window(e, a, "first term")
    });
    let (_b_proc, b) = x.xterm("second term", "80x24+1000+0");
    wait_for(&mut rx, WAIT, "second active", |e| {
        is_window(e, b, "second term")
    });

    // openbox leaves _NET_ACTIVE_WINDOW = second behind; the sensor must not trust it.
    wm.0.kill().unwrap();
    wm.0.wait().unwrap();
    x.run("xdotool", &["windowfocus", "--sync", &a.to_string()]);
    wait_for(&mut rx, WAIT, "first focused after the WM died", |e| {
        is_window(e, a, "first term")
    });
}

#[test]
fn key_sensor_decodes_typed_text_with_shift_remapped_keys_and_editing() {
    let x = Xvfb::start();
    let _wm = x.openbox();
    let (_term, term) = x.xterm("typing here", "80x24+0+0");
    x.run("xdotool", &["windowactivate", "--sync", &term.to_string()]);
    let (tx, mut rx) = mpsc::channel(1024);
    let _sensor = sensor::keys::start(&config(&x), tx).expect("key sensor starts");

    // 'é' and '€' are not on the US map: xdotool remaps a spare keycode for them.
    let text = "Hello World! safe?_X1 é€";
    x.run("xdotool", &["type", "--delay", "20", text]);
    x.run("xdotool", &["key", "BackSpace", "Return", "Tab", "Escape"]);
    x.run("xdotool", &["key", "ctrl+a"]);
    x.run("xdotool", &["type", "z"]);

    let mut typed = String::new();
    let mut keys = Vec::new();
    wait_for(&mut rx, WAIT, "all typed keys", |e| {
        let SensorEvent::Key { window_id, key } = e else {
            return false;
        };
        assert_eq!(*window_id, term, "keys carry the focused window");
        keys.push(*key);
        if let Key::Char(c) = key {
            typed.push(*c);
        }
        *key == Key::Char('z')
    });
    assert_eq!(
        typed,
        format!("{text}z"),
        "typed characters, Ctrl+A left out"
    );
    let tail = &keys[keys.len() - 5..];
    assert_eq!(
        tail,
        [
            Key::Backspace,
            Key::Enter,
            Key::Tab,
            Key::Escape,
            Key::Char('z')
        ]
    );
}

#[test]
fn screenshot_of_an_xterm_is_a_downscaled_non_blank_jpeg() {
    let x = Xvfb::start();
    let (_term, term) = x.xterm("evidence", "100x30+50+50");
    // Give xterm a moment to paint its first frame.
    std::thread::sleep(Duration::from_millis(500));
    let options = CaptureOptions {
        display: Some(x.display.clone()),
        ..CaptureOptions::default()
    };
    let mut timings = Vec::new();
    let mut capture = None;
    for _ in 0..5 {
        let started = Instant::now();
        capture = Some(capture_screen_with(&options, Some(term)).expect("capture"));
        timings.push(started.elapsed());
    }
    let capture = capture.unwrap();
    eprintln!(
        "capture 1920x1080 -> {}x{}: {:?} per capture, {} bytes JPEG",
        capture.width,
        capture.height,
        timings,
        capture.jpeg.len()
    );
    assert_eq!((capture.width, capture.height), (1280, 720));
    let decoded = image::load_from_memory_with_format(&capture.jpeg, image::ImageFormat::Jpeg)
        .expect("valid JPEG")
        .into_luma8();
    assert_eq!(decoded.dimensions(), (1280, 720));
    let n = decoded.len() as f64;
    let mean = decoded.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
    let variance = decoded
        .iter()
        .map(|&p| (f64::from(p) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        variance > 100.0,
        "screenshot looks blank (mean {mean:.1}, variance {variance:.1})"
    );
    // The xterm (white, top-left) is where it should be: bright there, black root elsewhere.
    let inside = decoded.get_pixel(200 * 1280 / 1920, 200 * 720 / 1080)[0];
    let outside = decoded.get_pixel(1200, 700)[0];
    assert!(
        inside > 200 && outside < 30,
        "xterm not found where placed: inside {inside}, outside {outside}"
    );
    // No window: the primary monitor, same size.
    let whole = capture_screen_with(&options, None).expect("capture without a window");
    assert_eq!((whole.width, whole.height), (1280, 720));
}

#[test]
fn process_sensor_reports_processes_started_after_it() {
    let before = Proc(
        Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep"),
    );
    let (tx, mut rx) = mpsc::channel(4096);
    let config = SensorConfig {
        process_poll: Duration::from_millis(200),
        ..SensorConfig::default()
    };
    let _sensor = sensor::process::start(&config, tx).expect("process sensor starts");
    let after = Proc(
        Command::new("sleep")
            .arg("31")
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = after.0.id();
    let mut reported = Vec::new();
    let event = wait_for(&mut rx, WAIT, "the new sleep", |e| {
        if let SensorEvent::ProcessStarted { pid: p, .. } = e {
            reported.push(*p);
        }
        matches!(e, SensorEvent::ProcessStarted { pid: p, .. } if *p == pid)
    });
    let SensorEvent::ProcessStarted { name, path, .. } = event else {
        unreachable!()
    };
    assert_eq!(name, "sleep");
    assert!(path.ends_with("/sleep"), "path {path:?}");
    for event in drain(&mut rx, Duration::from_millis(600)) {
        if let SensorEvent::ProcessStarted { pid: p, .. } = event {
            reported.push(p);
        }
    }
    assert_eq!(
        reported.iter().filter(|&&p| p == pid).count(),
        1,
        "reported once"
    );
    assert!(
        !reported.contains(&before.0.id()),
        "a process that started before the sensor is not reported"
    );
}

/// Microseconds since 1601 (Chromium's `visit_time`) for a Unix time in milliseconds.
fn chromium_time(unix_ms: i64) -> i64 {
    (unix_ms + 11_644_473_600_000) * 1000
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn browser_config(profiles: Vec<std::path::PathBuf>) -> SensorConfig {
    SensorConfig {
        browser_profiles: profiles,
        discover_browser_profiles: false,
        browser_poll: Duration::from_millis(300),
        ..SensorConfig::default()
    }
}

fn visits(events: &[SensorEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            SensorEvent::Visit { url, .. } => Some(url.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn browser_sensor_reports_each_new_chromium_visit_once() {
    // A Chromium-format History file, made elsewhere and copied into a profile directory.
    let work = tempfile::tempdir().unwrap();
    let made = work.path().join("made-History");
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
    let hour_ago = chromium_time(now_ms() - 3_600_000);
    conn.execute(
        "INSERT INTO urls (id, url, title, last_visit_time) VALUES (1, 'https://old.example/', 'Old', ?1)",
        [hour_ago],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO visits (url, visit_time) VALUES (1, ?1), (1, ?1)",
        [hour_ago],
    )
    .unwrap();
    drop(conn);
    let user_data = work.path().join("chromium");
    std::fs::create_dir_all(user_data.join("Default")).unwrap();
    let history = user_data.join("Default/History");
    std::fs::copy(&made, &history).unwrap();

    let (tx, mut rx) = mpsc::channel(256);
    let _sensor = sensor::browser::start(&browser_config(vec![user_data]), tx)
        .expect("browser sensor starts");
    std::thread::sleep(Duration::from_millis(400));

    let conn = rusqlite::Connection::open(&history).unwrap();
    let visit_ms = now_ms();
    conn.execute(
        "INSERT INTO urls (id, url, title, last_visit_time) VALUES (2, 'https://new.example/search?q=help', 'New page', ?1)",
        [chromium_time(visit_ms)],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO visits (url, visit_time) VALUES (2, ?1)",
        [chromium_time(visit_ms)],
    )
    .unwrap();
    let event = wait_for(
        &mut rx,
        WAIT,
        "the new visit",
        |e| matches!(e, SensorEvent::Visit { url, .. } if url == "https://new.example/search?q=help"),
    );
    assert_eq!(
        event,
        SensorEvent::Visit {
            url: "https://new.example/search?q=help".into(),
            title: "New page".into(),
            browser: "chromium".into(),
            time_ms: visit_ms,
        }
    );
    // Another write to the file (no new visit) must not repeat anything.
    conn.execute("UPDATE urls SET visit_count = 1 WHERE id = 2", [])
        .unwrap();
    let later = drain(&mut rx, Duration::from_millis(1200));
    assert!(
        visits(&later).is_empty(),
        "each visit once, old ones never: {later:?}"
    );
}

/// Serves a small page to every request on 127.0.0.1.
fn serve_page() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body =
                "<html><head><title>Tutela test page</title></head><body>hello</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, server)
}

#[test]
fn browser_sensor_sees_a_real_headless_chromium_visit() {
    require("chromium");
    let (port, _server) = serve_page();
    let profile = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    let _sensor = sensor::browser::start(&browser_config(vec![profile.path().to_path_buf()]), tx)
        .expect("browser sensor starts");
    let url = format!("http://127.0.0.1:{port}/safeguarding-test");
    let started = Instant::now();
    let _chromium = Graceful(
        Command::new("chromium")
            .args([
                "--no-sandbox",
                "--headless",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-gpu",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium"),
    );
    let event = wait_for(
        &mut rx,
        Duration::from_secs(45),
        "the Chromium visit",
        |e| matches!(e, SensorEvent::Visit { url: u, .. } if *u == url),
    );
    eprintln!("chromium visit reported after {:?}", started.elapsed());
    let SensorEvent::Visit { title, browser, .. } = event else {
        unreachable!()
    };
    assert_eq!(title, "Tutela test page");
    assert_eq!(browser, "chromium");
}

#[test]
fn start_runs_every_sensor_and_dropping_the_handle_stops_them() {
    let x = Xvfb::start();
    let (tx, mut rx) = mpsc::channel(4096);
    let handle = sensor::start(&config(&x), tx).expect("sensors start");
    assert_eq!(handle.sensors(), ["window", "keys", "browser", "process"]);
    let started = Instant::now();
    drop(handle);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stopping took {:?}",
        started.elapsed()
    );
    // Every sensor thread has ended and dropped its sender.
    while let Ok(event) = rx.try_recv() {
        drop(event);
    }
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

#[test]
fn without_a_display_the_x11_sensors_are_skipped_with_a_hint() {
    let missing = SensorConfig {
        display: Some(":239".into()),
        discover_browser_profiles: false,
        ..SensorConfig::default()
    };
    let (tx, _rx) = mpsc::channel(16);
    let error = sensor::window::start(&missing, tx.clone()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(":239") && message.contains("DISPLAY"),
        "{message}"
    );
    let handle = sensor::start(&missing, tx).expect("the other sensors still start");
    assert_eq!(handle.sensors(), ["browser", "process"]);
    let capture = capture_screen_with(
        &CaptureOptions {
            display: Some(":239".into()),
            ..CaptureOptions::default()
        },
        None,
    );
    assert!(capture.unwrap_err().to_string().contains("DISPLAY"));
}
