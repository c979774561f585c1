//! A real SMTP server for the mail tests, and parsing what it received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{python_with, read, run_ok, wait_for};

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
