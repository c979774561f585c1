//! The set-up the X11 sensor tests share: a private Xvfb (with openbox,
//! xterm and xdotool on it), child processes ended when dropped, and
//! waiting for sensor events. Each test file uses a part of it.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tutela_agent::sensor::{SensorConfig, SensorEvent};

pub const SETUP_HINT: &str = "install the sensor test tools first: \
     apt-get install xvfb xdotool openbox xterm chromium (the project's test setup script does this)";

pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` not found on PATH; {SETUP_HINT}");
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub static NEXT_DISPLAY: AtomicU32 = AtomicU32::new(91);

/// A child process asked to end with SIGTERM when dropped, so it can clean up after itself
/// (Xvfb removes its lock file and socket).
pub struct Graceful(pub Child);

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
pub struct Xvfb {
    pub display: String,
    _server: Graceful,
}

impl Xvfb {
    pub fn start() -> Self {
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

    pub fn command(&self, program: &str) -> Command {
        require(program);
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs a command to completion (within 20 s) and returns its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
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

    pub fn openbox(&self) -> Proc {
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

    /// Activates `window` and waits until the window manager names it active and the input
    /// focus is inside it, several polls in a row: on a loaded machine openbox may still be
    /// settling (focusing nothing, i.e. its own support window) just after `--sync` returns.
    pub fn activate(&self, window: u64) {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{AtomEnum, ConnectionExt};
        let (conn, screen) = x11rb::connect(Some(&self.display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let active_atom = conn
            .intern_atom(false, b"_NET_ACTIVE_WINDOW")
            .unwrap()
            .reply()
            .unwrap()
            .atom;
        let settled = || {
            let active = conn
                .get_property(false, root, active_atom, AtomEnum::WINDOW, 0, 1)
                .ok()
                .and_then(|c| c.reply().ok())
                .and_then(|r| r.value32().and_then(|mut v| v.next()));
            let Some(mut focus) = conn
                .get_input_focus()
                .ok()
                .and_then(|c| c.reply().ok())
                .map(|r| r.focus)
            else {
                return false;
            };
            // The focus may sit on the window or on one of its children.
            let mut inside = false;
            for _ in 0..8 {
                if u64::from(focus) == window {
                    inside = true;
                    break;
                }
                match conn.query_tree(focus).ok().and_then(|c| c.reply().ok()) {
                    Some(tree) if tree.parent != 0 && tree.parent != root => focus = tree.parent,
                    _ => break,
                }
            }
            active.map(u64::from) == Some(window) && inside
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut in_a_row = 0;
        while in_a_row < 5 {
            assert!(
                Instant::now() < deadline,
                "window {window:#x} never kept the focus"
            );
            if settled() {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                self.run(
                    "xdotool",
                    &["windowactivate", "--sync", &window.to_string()],
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wm_running(&self) -> bool {
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
    pub fn xterm(&self, title: &str, geometry: &str) -> (Proc, u64) {
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

    pub fn window_named(&self, title: &str) -> u64 {
        let pattern = format!("^{title}$");
        let out = self.run("xdotool", &["search", "--sync", "--name", &pattern]);
        out.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no window id for {title:?} in {out:?}"))
    }
}

pub fn config(x: &Xvfb) -> SensorConfig {
    SensorConfig {
        display: Some(x.display.clone()),
        discover_browser_profiles: false,
        ..SensorConfig::default()
    }
}

/// Receives until `want` matches, failing with everything seen on timeout.
pub fn wait_for(
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
pub fn drain(rx: &mut mpsc::Receiver<SensorEvent>, quiet: Duration) -> Vec<SensorEvent> {
    std::thread::sleep(quiet);
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.push(event);
    }
    out
}

pub fn is_window(event: &SensorEvent, id: u64, want_title: &str) -> bool {
    matches!(event, SensorEvent::Window { window_id, title, .. } if *window_id == id && title == want_title)
}

pub const WAIT: Duration = Duration::from_secs(10);
