//! Sensors and evidence capture against real parts: Xvfb, openbox, xterm and
//! xdotool for keys, screenshots and processes; every sensor started and
//! stopped together; and the X11 sensors skipped without a display.
//!
//! Needs the packages xvfb, xdotool, openbox and xterm; the tests fail with a
//! hint when they are missing rather than skipping.

#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, drain, wait_for, Proc, Xvfb, WAIT};
use tokio::sync::mpsc;
use tutela_agent::capture::{capture_screen_with, CaptureOptions};
use tutela_agent::sensor::{self, Key, SensorConfig, SensorEvent};

#[test]
fn key_sensor_decodes_typed_text_with_shift_remapped_keys_and_editing() {
    let x = Xvfb::start();
    let _wm = x.openbox();
    let (_term, term) = x.xterm("typing here", "80x24+0+0");
    x.activate(term);
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
