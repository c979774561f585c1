//! The browser sensor against real parts: Chromium-format SQLite history
//! files and (when installed) a headless Chromium.
//!
//! Needs the chromium package for the browser run; the test fails with a
//! hint when it is missing rather than skipping.

#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{drain, require, wait_for, Graceful, WAIT};
use tokio::sync::mpsc;
use tutela_agent::sensor::{self, SensorConfig, SensorEvent};

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
