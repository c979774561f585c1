//! A collector data directory and its `serve` process: init, start, tokens,
//! alerts, the review console's settings and collector.toml sections.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{bin, free_port, run_ok, wait_for};

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
