//! Harness for the end-to-end tests: runs the real `tutela-collector` and
//! `tutela-agent` binaries in temporary directories on loopback.

pub mod s3;
pub mod script;
pub mod seed;
pub mod web;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod cluster;
pub mod extension;
pub mod ingest;
pub mod load;
pub mod postgres;
pub mod store;

/// Path of a workspace binary, next to the running test's `deps` directory,
/// or in `TUTELA_BIN_DIR` when that is set (to compare builds).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TUTELA_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` before the tests (the test script does)",
        path.display()
    );
    path
}

/// A fresh scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let base = std::env::var_os("TUTELA_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = base.join(format!("tutela-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("TUTELA_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion and fails with its output if it failed.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command expected to fail; returns its output.
pub fn run_failing(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    out
}

/// Waits until `check` is true, polling, or fails after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A collector data directory and, while serving, its process.
#[derive(Debug)]
pub struct Collector {
    pub dir: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Collector {
    /// `tutela-collector init` in `dir`, listening on a free loopback port.
    pub fn init(dir: PathBuf) -> Result<Self> {
        let port = free_port();
        run_ok(
            Command::new(bin("tutela-collector"))
                .arg("--data-dir")
                .arg(&dir)
                .args(["init", "--listen", &format!("127.0.0.1:{port}")]),
        )?;
        let log = dir.with_extension("log");
        Ok(Self {
            dir,
            port,
            child: None,
            log,
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("tutela-collector"));
        c.arg("--data-dir").arg(&self.dir);
        c
    }

    /// Starts `serve` and waits for its "listening" line.
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = self
            .cmd()
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("listening on") {
            let _ = child.kill();
            bail!(
                "collector did not start: {line:?}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, no clean shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn token(&self, extra: &[&str]) -> Result<String> {
        Ok(run_ok(self.cmd().args(["token", "create"]).args(extra))?
            .trim()
            .to_owned())
    }

    /// All stored alerts, as JSON objects.
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        let out = run_ok(self.cmd().args(["alerts", "list", "--format", "json"]))?;
        out.lines()
            .map(|l| serde_json::from_str(l).context("alert line is JSON"))
            .collect()
    }

    pub fn alert_count(&self) -> usize {
        self.alerts().map(|a| a.len()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An agent data directory and, while running, its process.
#[derive(Debug)]
pub struct Agent {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Agent {
    pub fn new(dir: PathBuf) -> Self {
        let log = dir.with_extension("log");
        Self {
            dir,
            child: None,
            log,
            env: vec![
                ("TUTELA_USER".into(), "pupil.one".into()),
                ("TUTELA_STATION".into(), "LAB1-PC07".into()),
            ],
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("tutela-agent"));
        c.arg("--data-dir").arg(&self.dir);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn enrol(&self, token: &str) -> Result<String> {
        run_ok(self.cmd().args(["enrol", token]))
    }

    /// Starts `run` with extra arguments.
    pub fn start(&mut self, args: &[&str]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .cmd()
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent id from its enrolment record.
    pub fn agent_id(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("enrolment.toml")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("agent_id = "))
            .map(|v| v.trim_matches('"').to_owned())
            .expect("agent_id in enrolment.toml")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Reads a file as text, for error messages.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Where `program` is on `PATH`, if anywhere.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Fails with a hint when a program the desktop tests drive is not installed.
pub fn require_programs(programs: &[&str]) {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found on PATH: run tests/setup-debian.sh to install the desktop test tools",
        missing.join(", ")
    );
}

/// Display numbers handed out in this process, so parallel tests never race for one.
static NEXT_DISPLAY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A virtual X desktop: Xvfb at 1920x1080 with the openbox window manager,
/// and the programs started on it. Everything is killed on drop.
#[derive(Debug)]
pub struct Desktop {
    /// The X display, e.g. `:121`.
    pub display: String,
    /// Where Xvfb, the window manager and the programs started here write their output.
    pub log: PathBuf,
    xvfb: Child,
    programs: Vec<Child>,
    /// Programs started in their own process group (browsers), killed as a group.
    groups: Vec<Child>,
}

impl Desktop {
    pub const WIDTH: u32 = 1920;
    pub const HEIGHT: u32 = 1080;

    /// Starts Xvfb on a free display number and openbox on it; output goes to `log`.
    pub fn start(log: PathBuf) -> Result<Self> {
        require_programs(&["Xvfb", "openbox", "xdotool", "xterm", "xprop", "xdpyinfo"]);
        for _ in 0..100 {
            let n = 120 + NEXT_DISPLAY.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if display_in_use(n) {
                continue;
            }
            let display = format!(":{n}");
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            let xvfb = Command::new("Xvfb")
                .arg(&display)
                .args(["-screen", "0", "1920x1080x24", "-nolisten", "tcp"])
                // Without it the server resets when its last client leaves (the readiness
                // probe), and a client connecting during the reset is refused.
                .arg("-noreset")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("starting Xvfb")?;
            let mut desktop = Self {
                display,
                log: log.clone(),
                xvfb,
                programs: Vec::new(),
                groups: Vec::new(),
            };
            if desktop.wait_for_server()? {
                desktop.start_window_manager()?;
                return Ok(desktop);
            }
            // Another X server took this number first: try the next one.
        }
        bail!("no free X display number; see {}", log.display())
    }

    /// Whether the X server answers; `false` when it exited (display number taken).
    fn wait_for_server(&mut self) -> Result<bool> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.xvfb.try_wait()?.is_some() {
                return Ok(false);
            }
            let up = Command::new("xdpyinfo")
                .args(["-display", &self.display])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if up {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "Xvfb {} did not start within 15 s; log:\n{}",
            self.display,
            read(&self.log)
        )
    }

    fn start_window_manager(&mut self) -> Result<()> {
        self.spawn(&mut self.command("openbox"))?;
        let display = self.display.clone();
        wait_for(
            "openbox to manage the display",
            Duration::from_secs(15),
            || {
                Command::new("xprop")
                    .args(["-display", &display, "-root", "_NET_SUPPORTING_WM_CHECK"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("window id"))
            },
        )
        .with_context(|| format!("log:\n{}", read(&self.log)))
    }

    /// A command that runs on this desktop.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display);
        c
    }

    fn log_file(&self) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?)
    }

    /// Starts a program that is killed with the desktop; returns its process id.
    pub fn spawn(&mut self, cmd: &mut Command) -> Result<u32> {
        let log = self.log_file()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let id = child.id();
        self.programs.push(child);
        Ok(id)
    }

    /// Starts a program in its own process group (a browser and its helpers), all of which
    /// are killed with the desktop.
    pub fn spawn_group(&mut self, cmd: &mut Command) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let log = self.log_file()?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let id = child.id();
        self.groups.push(child);
        Ok(id)
    }

    /// Runs xdotool on this desktop.
    pub fn xdotool(&self, args: &[&str]) -> Result<String> {
        run_ok(self.command("xdotool").args(args))
    }

    /// Opens an xterm titled `title` running `cat` (typed lines go nowhere), focuses it and
    /// returns its window id.
    pub fn open_xterm(&mut self, title: &str) -> Result<String> {
        self.spawn(
            self.command("xterm")
                .args([
                    "-geometry",
                    "100x30+100+100",
                    "-bg",
                    "white",
                    "-fg",
                    "black",
                ])
                .args(["-T", title])
                .args(["-e", "cat"]),
        )?;
        let pattern = format!("^{}$", regex_escape(title));
        let mut window = String::new();
        wait_for(
            &format!("an xterm titled {title:?}"),
            Duration::from_secs(15),
            || match self.xdotool(&["search", "--name", &pattern]) {
                Ok(out) => {
                    window = out.lines().next().unwrap_or_default().to_owned();
                    !window.is_empty()
                }
                Err(_) => false,
            },
        )?;
        self.focus(&window)?;
        Ok(window)
    }

    /// Activates `window` and waits until the window manager reports it active.
    pub fn focus(&self, window: &str) -> Result<()> {
        self.xdotool(&["windowactivate", "--sync", window])?;
        wait_for(
            &format!("window {window} to be active"),
            Duration::from_secs(10),
            || {
                self.xdotool(&["getactivewindow"])
                    .is_ok_and(|out| out.trim() == window)
            },
        )
    }

    /// Types `text` into the focused window, key by key.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.xdotool(&["type", "--delay", "40", "--", text])
            .map(drop)
    }

    /// Presses keys by name (`Return`, `BackSpace`, ...) in the focused window.
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["key", "--delay", "40"];
        args.extend_from_slice(keys);
        self.xdotool(&args).map(drop)
    }

    /// Position and size of `window` on the screen: (x, y, width, height).
    pub fn geometry(&self, window: &str) -> Result<(u32, u32, u32, u32)> {
        let out = self.xdotool(&["getwindowgeometry", "--shell", window])?;
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("no {name} in {out:?}"))
        };
        Ok((field("X")?, field("Y")?, field("WIDTH")?, field("HEIGHT")?))
    }

    /// Sets the title of `window`, as an application renaming itself would.
    pub fn rename(&self, window: &str, title: &str) -> Result<()> {
        self.xdotool(&["set_window", "--name", title, window])
            .map(drop)
    }
}

/// Whether a live X server holds display `n` (a lock left by a dead one is stale: the X
/// server replaces it).
fn display_in_use(n: u32) -> bool {
    match std::fs::read_to_string(format!("/tmp/.X{n}-lock")) {
        Ok(pid) => Path::new(&format!("/proc/{}", pid.trim())).exists(),
        Err(_) => false,
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in &mut self.groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
        for child in self.programs.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SIGTERM lets the X server remove its lock file and socket.
        let _ = Command::new("kill")
            .args(["-TERM", &self.xvfb.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.xvfb.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

/// A collector started in `scratch/collector`, and an agent in `scratch/agent`
/// enrolled with it, watching `desktop` for a pupil whose home is
/// `scratch/home`, with `agent_toml` as its settings. The agent is not yet
/// started. Returns the collector, the agent and the home directory.
pub fn desktop_agent(
    scratch: &Scratch,
    desktop: &Desktop,
    agent_toml: &str,
) -> Result<(Collector, Agent, PathBuf)> {
    let mut collector = Collector::init(scratch.path("collector"))?;
    collector.start()?;
    let home = scratch.path("home");
    std::fs::create_dir_all(&home)?;
    let mut agent = Agent::new(scratch.path("agent"));
    agent.on_desktop(desktop, &home);
    agent.enrol(&collector.token(&[])?)?;
    std::fs::write(agent.dir.join("agent.toml"), agent_toml)?;
    Ok((collector, agent, home))
}

impl Agent {
    /// Reports as station `station` (in place of the default name).
    pub fn as_station(&mut self, station: &str) {
        self.env.retain(|(k, _)| k != "TUTELA_STATION");
        self.env.push(("TUTELA_STATION".into(), station.into()));
    }

    /// Runs as if on the machine with id `machine_id`.
    pub fn on_machine(&mut self, machine_id: &str) {
        self.env
            .push(("TUTELA_MACHINE_ID".into(), machine_id.into()));
    }

    /// Watches `desktop`, with `home` as the pupil's home directory (where browsers keep
    /// their profiles).
    pub fn on_desktop(&mut self, desktop: &Desktop, home: &Path) {
        self.env.push(("DISPLAY".into(), desktop.display.clone()));
        self.env
            .push(("HOME".into(), home.to_string_lossy().into_owned()));
        self.env.push(("NO_COLOR".into(), "1".into()));
    }

    /// Waits for the log line saying the sensors run (the rules are compiled by then).
    pub fn wait_for_sensors(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log_text().contains("sensors started") {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the agent exited ({status}) before its sensors started; log:\n{}",
                        self.log_text()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the agent's sensors did not start within {timeout:?}; log:\n{}",
            self.log_text()
        )
    }

    /// Events in the spool not yet acknowledged by the collector, from `status`.
    pub fn backlog(&self) -> Result<u64> {
        let status = run_ok(self.cmd().arg("status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("spool backlog:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no spool backlog in the status:\n{status}"))
    }
}

impl Collector {
    /// Stored alerts including folded repeats and extra burst shots.
    pub fn all_alerts(&self) -> Result<Vec<serde_json::Value>> {
        let out = run_ok(
            self.cmd()
                .args(["alerts", "list", "--all", "--format", "json"]),
        )?;
        out.lines()
            .map(|l| serde_json::from_str(l).context("alert line is JSON"))
            .collect()
    }

    /// Decrypts the capture of alert `alert_id` into `out` (a JPEG file).
    pub fn capture(&self, alert_id: i64, out: &Path) -> Result<Vec<u8>> {
        run_ok(
            self.cmd()
                .args(["alerts", "capture", &alert_id.to_string(), "--out"])
                .arg(out),
        )?;
        Ok(std::fs::read(out)?)
    }

    /// Waits for a stored alert that `matches`, and returns it.
    pub fn wait_for_alert(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut found = None;
        let waited = wait_for(what, timeout, || {
            found = self
                .alerts()
                .ok()
                .and_then(|alerts| alerts.into_iter().find(|a| matches(a)));
            found.is_some()
        });
        match (waited, found) {
            (Ok(()), Some(alert)) => Ok(alert),
            (waited, _) => {
                let stored: Vec<String> = self
                    .all_alerts()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                bail!(
                    "{}; stored alerts:\n{}",
                    waited.err().map(|e| e.to_string()).unwrap_or_default(),
                    stored.join("\n")
                )
            }
        }
    }
}

impl Collector {
    /// A new collector in `dir` with its review console on a free loopback
    /// port and `users` (name, role) added, each with `password`; not yet
    /// started. Returns it and the console's port.
    pub fn with_console(
        dir: PathBuf,
        users: &[(&str, &str)],
        password: &str,
    ) -> Result<(Collector, u16)> {
        let collector = Collector::init(dir)?;
        let port = free_port();
        collector.set_console_port(port)?;
        for (name, role) in users {
            collector.add_console_user(name, role, password)?;
        }
        Ok((collector, port))
    }

    /// Points the review console at `port` on loopback (before `start`);
    /// returns its base URL.
    pub fn set_console_port(&self, port: u16) -> Result<String> {
        let path = self.dir.join("collector.toml");
        let text = std::fs::read_to_string(&path)?;
        let mut in_console = false;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                in_console = line.trim() == "[console]";
            }
            if in_console && line.trim_start().starts_with("listen") {
                out.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&path, out)?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Makes a console account with `password` given on standard input.
    pub fn add_console_user(&self, name: &str, role: &str, password: &str) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(["user", "add", name, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("user add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// A Python 3 that can import `module` (Debian's python3-* packages live in the system Python).
pub fn python_with(module: &str) -> Option<PathBuf> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A real SMTP server (aiosmtpd, `tests/smtp/sink.py`) on a loopback port,
/// writing each accepted message to `dir`. Stopped on drop.
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn smtp_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("smtp")
        .join(name)
}

impl SmtpSink {
    /// Starts the server on `port` and waits until it accepts connections.
    pub fn start(port: u16, dir: PathBuf) -> Result<Self> {
        Self::start_with(port, dir, &[])
    }

    /// As `start`, with `sink.py` options (`--tls starttls|implicit --cert PEM --key PEM`,
    /// `--auth USER:PASSWORD`).
    pub fn start_with(port: u16, dir: PathBuf, options: &[&str]) -> Result<Self> {
        let python = python_with("aiosmtpd")
            .context("python3-aiosmtpd is not installed: run tests/setup-debian.sh")?;
        let mut child = Command::new(python)
            .arg(smtp_script("sink.py"))
            .arg(port.to_string())
            .arg(&dir)
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the SMTP server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the SMTP server did not start: {line:?}");
        }
        Ok(Self {
            port,
            dir,
            child: Some(child),
        })
    }

    /// Stops the server (it refuses connections afterwards).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Received messages, oldest first: (envelope recipients, path of the .eml file).
    pub fn messages(&self) -> Vec<(Vec<String>, PathBuf)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let rcpt = read(&p.with_extension("rcpt"))
                    .lines()
                    .map(str::to_owned)
                    .collect();
                (rcpt, p)
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<(Vec<String>, PathBuf)>> {
        wait_for(&format!("{n} emails"), timeout, || {
            self.messages().len() >= n
        })?;
        Ok(self.messages())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses an email with Python's `email` package (`tests/smtp/parse.py`):
/// headers, MIME tree and decoded leaf parts, as JSON.
pub fn parse_email(path: &Path) -> Result<serde_json::Value> {
    let python = python_with("email").context("python3 is not installed")?;
    let out = run_ok(Command::new(python).arg(smtp_script("parse.py")).arg(path))?;
    serde_json::from_str(&out).context("parse.py prints JSON")
}

impl Collector {
    /// Replaces the `[name]` section of collector.toml (and its sub-tables)
    /// with `body`, a TOML text that starts with the section's own keys.
    pub fn set_section(&self, name: &str, body: &str) -> Result<()> {
        let path = self.dir.join("collector.toml");
        let text = std::fs::read_to_string(&path)?;
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                let header = t.trim_matches(|c| c == '[' || c == ']');
                skipping = header == name || header.starts_with(&format!("{name}."));
            }
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str(&format!("\n[{name}]\n{body}\n"));
        std::fs::write(&path, out)?;
        Ok(())
    }
}

/// Small rule packs written as TOML, for tests that publish, sign or load a
/// pack and want it quick to compile.
pub mod packs {
    /// Who a small pack is: its id, name, description and the start of each
    /// release's changelog notes ("Test release" gives "Test release 2.").
    pub struct About<'a> {
        pub id: &'a str,
        pub name: &'a str,
        pub description: &'a str,
        pub notes: &'a str,
    }

    impl<'a> About<'a> {
        /// A test pack whose releases are noted "Test release N.".
        pub fn new(id: &'a str, name: &'a str, description: &'a str) -> Self {
            About {
                id,
                name,
                description,
                notes: "Test release",
            }
        }
    }

    /// One category of a small pack and its phrase terms.
    pub struct Category<'a> {
        pub name: &'a str,
        pub severity: u8,
        pub description: &'a str,
        pub terms: &'a [&'a str],
    }

    /// The weapons category (severity 4) with `terms` as phrases.
    pub fn weapons<'a>(terms: &'a [&'a str]) -> Category<'a> {
        Category {
            name: "weapons",
            severity: 4,
            description: "Weapons.",
            terms,
        }
    }

    /// The drugs category (severity 3) with `terms` as phrases.
    pub fn drugs<'a>(terms: &'a [&'a str]) -> Category<'a> {
        Category {
            name: "drugs",
            severity: 3,
            description: "Drugs.",
            terms,
        }
    }

    /// The TOML of pack `about` at `version`, with one changelog entry and
    /// `categories` in order: all category headers first, then their terms.
    pub fn small_pack(about: &About, version: u32, categories: &[Category]) -> String {
        let About {
            id,
            name,
            description,
            notes,
        } = about;
        let mut out = format!(
            r#"[pack]
id = "{id}"
name = "{name}"
version = {version}
language = "en-GB"
description = "{description}"

[[changelog]]
version = {version}
date = "2026-11-22"
notes = "{notes} {version}."
"#
        );
        for c in categories {
            out.push_str(&format!(
                "\n[categories.{}]\nseverity = {}\ndescription = \"{}\"\n",
                c.name, c.severity, c.description
            ));
        }
        for c in categories {
            let terms = c
                .terms
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "\n[[terms]]\ncategory = \"{}\"\nkind = \"phrase\"\nterms = [{terms}]\n",
                c.name
            ));
        }
        out
    }
}

/// The repository's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_owned()
}

/// `tests/console` with its Node packages (playwright-core, axe-core)
/// installed from its lockfile, unless every one is there already.
pub fn console_scripts() -> PathBuf {
    let dir = workspace().join("tests/console");
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&dir.join("package.json"))).expect("package.json is JSON");
    let installed = manifest["dependencies"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(name, _)| {
            dir.join("node_modules")
                .join(name)
                .join("package.json")
                .exists()
        });
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (Node 20 or later is needed for the browser tests)");
        assert!(status.success(), "npm ci in tests/console failed");
    }
    dir
}
