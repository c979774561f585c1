//! The window sensor against real parts: Xvfb, openbox, xterm and xdotool.
//!
//! Needs the packages xvfb, xdotool, openbox and xterm; the tests fail with a
//! hint when they are missing rather than skipping.

#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{config, drain, is_window, wait_for, Xvfb, WAIT};
use tokio::sync::mpsc;
use tutela_agent::sensor::{self, SensorEvent};

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
