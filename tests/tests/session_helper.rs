//! The Linux session helper: it follows the active X session, and a forged
//! X authority neither hangs the agent nor fools it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tutela_tests::{
    bin, free_port, is_root, require_programs, run_ok, wait_for, workspace, Agent, Collector,
    Scratch,
};

/// The Linux session helper, run as the service runs it, with the X session
/// described by a stand-in for `loginctl` (this machine has no logind); the
/// X server, agent and collector are real.
struct SessionHelper {
    child: std::process::Child,
    log: PathBuf,
}

impl SessionHelper {
    /// Starts the helper for `agent` with `loginctl` from `stub_dir`, its run
    /// directory `scratch/run` and its log `scratch/helper.log`; with `home`
    /// as HOME when given.
    fn start(scratch: &Scratch, stub_dir: &Path, agent: &Agent, home: Option<&Path>) -> Self {
        let log = scratch.path("helper.log");
        let out = std::fs::File::create(&log).unwrap();
        let path = format!(
            "{}:{}",
            stub_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.arg(workspace().join("installer/debian/agent/tutela-agent-session"))
            .env("PATH", path)
            .env("TUTELA_AGENT_BIN", bin("tutela-agent"))
            .env("TUTELA_AGENT_DIR", &agent.dir)
            .env("TUTELA_SESSION_POLL", "1")
            .env("TUTELA_RUN_DIR", scratch.path("run"))
            .env("TUTELA_STATION", "LAB1-PC07");
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .env_remove("DISPLAY")
            .env_remove("XAUTHORITY")
            .env_remove("TUTELA_USER")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        SessionHelper { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, what: &str, count: usize) {
        wait_for(what, Duration::from_secs(180), || {
            self.log_text().matches(what).count() >= count
        })
        .unwrap_or_else(|e| panic!("{e}; helper log:\n{}", self.log_text()));
    }

    /// Stops it as systemd does (SIGTERM); returns whether it exited cleanly.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for SessionHelper {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && !self.stop() {
            let _ = self.child.kill();
        }
    }
}

fn set_session(state: &Path, session: &str, class: &str, display: &str, user: &str) {
    std::fs::write(
        state,
        format!(
            "ActiveSession={session}\nType=x11\nClass={class}\nState=active\nDisplay={display}\nName={user}\n"
        ),
    )
    .unwrap();
}

/// A logind stand-in: a `loginctl` in a fresh `bin` directory of `scratch`
/// that answers the two questions the session helper asks from a state file
/// (written by `set_session`). Returns the directory and the state file.
fn loginctl_stub(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let stub_dir = scratch.path("bin");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let state = scratch.path("logind.state");
    let stub = stub_dir.join("loginctl");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nstate='{}'\ncase \"$1\" in\n  show-seat) ;;\n  show-session) [ \"$2\" = \"$(sed -n 's/^ActiveSession=//p' \"$state\")\" ] || exit 1 ;;\n  *) exit 1 ;;\nesac\nsed -n \"s/^$4=//p\" \"$state\"\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    (stub_dir, state)
}

#[test]
fn the_session_helper_follows_the_active_x_session() {
    let scratch = Scratch::new("session-helper");
    let desktop = tutela_tests::Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let home = scratch.path("home");
    std::fs::create_dir_all(&home).unwrap();

    // logind stand-in: answers the two questions the helper asks.
    let (stub_dir, state) = loginctl_stub(&scratch);
    // The login screen is up: nothing to watch yet.
    set_session(&state, "c0", "greeter", &desktop.display, "lightdm");

    let mut helper = SessionHelper::start(&scratch, &stub_dir, &agent, Some(&home));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !helper.log_text().contains("watching"),
        "the agent started for the login screen:\n{}",
        helper.log_text()
    );

    // A pupil signs in: the agent starts on that display, as that pupil.
    set_session(&state, "c1", "user", &desktop.display, "pupil.one");
    helper.wait_for_log("watching session c1 of pupil.one", 1);
    helper.wait_for_log("sensors started", 1);
    let mut desktop = desktop;
    let alert_titled = |what: &str, title: &str| {
        collector
            .wait_for_alert(what, Duration::from_secs(60), |a| {
                a["window_title"] == title
            })
            .unwrap()
    };
    let window = desktop.open_xterm("Year 9 history notes").unwrap();
    let title = "I want to kill myself tonight";
    desktop.rename(&window, title).unwrap();
    let alert = alert_titled("the first pupil's alert", title);
    assert_eq!(alert["user"], "pupil.one", "{alert}");

    // Another pupil's session comes to the front: the agent follows it.
    set_session(&state, "c2", "user", &desktop.display, "pupil.two");
    helper.wait_for_log("session c1 is no longer in front", 1);
    helper.wait_for_log("watching session c2 of pupil.two", 1);
    helper.wait_for_log("sensors started", 2);
    let title = "best online casino bonus - free spins";
    desktop.rename(&window, title).unwrap();
    let alert = alert_titled("the second pupil's alert", title);
    assert_eq!(alert["user"], "pupil.two", "{alert}");

    // Stopping the service stops the agent with it.
    assert!(helper.stop(), "the helper did not exit cleanly on SIGTERM");
    let agent_dir = agent.dir.to_string_lossy().into_owned();
    let still_running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            // Only the agent itself (the helper's short sleeps share its environment).
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .next()
                        .is_some_and(|arg0| arg0.ends_with(b"tutela-agent"))
                })
                .unwrap_or(false)
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|kv| kv == format!("TUTELA_AGENT_DIR={agent_dir}").as_bytes())
                })
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for pid in &still_running {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    assert!(
        still_running.is_empty(),
        "an agent outlived the helper: {still_running:?}"
    );
}

/// Processes started for a test, killed when it ends.
struct Reap(Vec<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mkfifo(path: &Path) {
    run_ok(Command::new("mkfifo").arg(path)).unwrap();
}

/// Runs `sh -c 'loop' ARGS...` as `uid` (0: as the test), so that its command
/// line carries ARGS the way an X server's does.
fn lookalike(uid: u32, args: &[&str], env: &[(&str, &Path)]) -> std::process::Child {
    let mut c = if uid == 0 {
        Command::new("sh")
    } else {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("sh");
        c
    };
    c.args(["-c", "while :; do sleep 1; done"])
        .args(args)
        .env_remove("XAUTHORITY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// An Xvfb that admits only clients with its cookie: (display, server).
fn guarded_x_server(scratch: &Scratch) -> (String, Reap) {
    let auth = scratch.path("server.Xauthority");
    for n in 300 + std::process::id() % 100..500 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let display = format!(":{n}");
        run_ok(Command::new("xauth").arg("-f").arg(&auth).args([
            "add",
            &display,
            ".",
            "fedcba9876543210fedcba9876543210",
        ]))
        .unwrap();
        let server = Command::new("Xvfb")
            .arg(&display)
            .arg("-auth")
            .arg(&auth)
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut reap = Reap(vec![server]);
        let socket = format!("/tmp/.X11-unix/X{n}");
        let up = wait_for("the guarded X server", Duration::from_secs(15), || {
            Path::new(&socket).exists()
        });
        if up.is_ok() && matches!(reap.0[0].try_wait(), Ok(None)) {
            return (display, reap);
        }
    }
    panic!("no free X display for a second Xvfb");
}

#[test]
fn a_forged_x_authority_neither_hangs_the_agent_nor_fools_the_session_helper() {
    require_programs(&["setpriv", "xauth", "mkfifo", "timeout"]);
    assert!(
        is_root(),
        "the session helper runs as root: run the tests as root (CI does)"
    );
    let scratch = Scratch::new("xauth-forged");
    let mut desktop = tutela_tests::Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();

    // A pupil's directory with a FIFO, a symlink to it, and a FIFO of their own.
    let nobody = 65534;
    let pupil = scratch.path("pupil");
    std::fs::create_dir_all(&pupil).unwrap();
    let fifo = pupil.join("fifo");
    mkfifo(&fifo);
    let link = pupil.join("Xauthority");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let own_fifo = pupil.join("own-fifo");
    mkfifo(&own_fifo);
    std::os::unix::fs::chown(&pupil, Some(nobody), Some(nobody)).unwrap();
    std::os::unix::fs::chown(&own_fifo, Some(nobody), Some(nobody)).unwrap();

    // The agent, as root, pointed at a FIFO or a symlink to one, fails at once
    // with a clear error instead of blocking in the sensor start.
    for (xauthority, why) in [(&fifo, "it is a FIFO"), (&link, "it is a symbolic link")] {
        let mut child = agent
            .cmd()
            .arg("run")
            .env("DISPLAY", &desktop.display)
            .env("XAUTHORITY", xauthority)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_for("the agent to give up", Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if exited.is_err() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            exited.is_ok(),
            "the agent hung on {xauthority:?}:\n{stderr}"
        );
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("refusing XAUTHORITY") && stderr.contains(why),
            "{stderr}"
        );
        assert!(!stderr.contains("sensors started"), "{stderr}");
    }

    // An X server with access control, and a wrong cookie (as a pupil could
    // leave in their session's XAUTHORITY): started for a session, the agent
    // does not run half-blind with only its browser and process sensors.
    let (guarded, _xvfb) = guarded_x_server(&scratch);
    let wrong = scratch.path("wrong.Xauthority");
    run_ok(Command::new("xauth").arg("-f").arg(&wrong).args([
        "add",
        &guarded,
        ".",
        "0123456789abcdef0123456789abcdef",
    ]))
    .unwrap();
    let out = agent
        .cmd()
        .arg("run")
        .env("DISPLAY", &guarded)
        .env("XAUTHORITY", &wrong)
        .env("TUTELA_REQUIRE_DISPLAY", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("could not be watched"), "{stderr}");

    // Processes that look like the X server of this display and name the FIFO
    // as its -auth file: one started by the pupil, one by root from a binary
    // that is not an X server. A process of the pupil's session advertises
    // XAUTHORITY=<their FIFO>.
    let display = desktop.display.clone();
    let fifo_arg = fifo.to_string_lossy().into_owned();
    let _fakes = Reap(vec![
        lookalike(
            nobody,
            &["/usr/lib/xorg/Xorg", &display, "-auth", &fifo_arg],
            &[],
        ),
        lookalike(
            0,
            &["/usr/lib/xorg/Xorg", &display, "-auth", &fifo_arg],
            &[],
        ),
        lookalike(nobody, &["session"], &[("XAUTHORITY", own_fifo.as_path())]),
    ]);
    // Processes here have no audit session: that is the session logind names.
    let session = std::fs::read_to_string("/proc/self/sessionid").unwrap();
    let (stub_dir, state) = loginctl_stub(&scratch);
    set_session(&state, session.trim(), "user", &display, "nobody");
    let run_dir = scratch.path("run");
    let mut helper = SessionHelper::start(&scratch, &stub_dir, &agent, None);
    helper.wait_for_log("watching session", 1);
    helper.wait_for_log("sensors started", 1);
    let text = helper.log_text();
    assert!(
        !text.contains("using the X server's authority file"),
        "a forged -auth was believed:\n{text}"
    );
    assert!(
        text.contains("no X authority cookie found"),
        "the pupil's FIFO should yield no cookie:\n{text}"
    );
    // The agent was given the root-only copy, a regular file.
    let copy = run_dir.join("Xauthority");
    let m = std::fs::symlink_metadata(&copy).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o600));
    assert_eq!(
        std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // And it watches: a title on the desktop becomes an alert.
    let window = desktop.open_xterm("Year 9 history notes").unwrap();
    let title = "I want to kill myself tonight";
    desktop.rename(&window, title).unwrap();
    let alert = collector
        .wait_for_alert("the pupil's alert", Duration::from_secs(60), |a| {
            a["window_title"] == title
        })
        .unwrap_or_else(|e| panic!("{e}\nhelper log:\n{}", helper.log_text()));
    assert_eq!(alert["user"], "nobody", "{alert}");
    assert!(helper.stop(), "the helper did not exit cleanly on SIGTERM");
}
