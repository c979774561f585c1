//! Harness for the end-to-end tests: runs the real `tutela-collector` and
//! `tutela-agent` binaries in temporary directories on loopback.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Path of a workspace binary, next to the running test's `deps` directory.
pub fn bin(name: &str) -> PathBuf {
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
