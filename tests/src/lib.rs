//! Harness for the end-to-end tests: runs the real `tutela-collector` and
//! `tutela-agent` binaries in temporary directories on loopback.
//!
//! The collector and agent processes (`collector`, `agent`), the virtual
//! desktop (`desktop`), the SMTP server (`smtp`) and small rule packs
//! (`packs`) each have a module; the common ones are re-exported here.

pub mod agent;
pub mod cluster;
pub mod collector;
pub mod console_client;
pub mod console_db;
pub mod console_pg;
pub mod desktop;
pub mod extension;
pub mod ingest;
pub mod load;
pub mod mail_setup;
pub mod packs;
pub mod postgres;
pub mod s3;
pub mod script;
pub mod seed;
pub mod smtp;
pub mod store;
pub mod summary_week;
pub mod typed;
pub mod web;

pub use agent::Agent;
pub use collector::Collector;
pub use desktop::{desktop_agent, Desktop};
pub use smtp::{parse_email, SmtpSink};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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

/// A free TCP port on loopback, for a server a test starts later.
///
/// Chosen below the kernel's ephemeral range: a port the kernel hands out for
/// `bind(0)` or an outgoing connection could otherwise be given to another
/// server (or client) between this call and the server binding it (seen: a
/// collector's console port taken by its own ingest listener).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    const FLOOR: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|low| *low > FLOOR + 1_000)
        .unwrap_or(32_768)
        .min(u32::from(u16::MAX));
    let span = ephemeral_low - FLOOR;
    // Spread processes apart (several test binaries may run at once), then step.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id().wrapping_mul(7_919) ^ nanos;
    for _ in 0..span {
        let step = CALLS.fetch_add(1, Ordering::Relaxed);
        let port = FLOOR + seed.wrapping_add(step.wrapping_mul(7_927)) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback between {FLOOR} and {ephemeral_low}");
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

/// Whether the tests run as root (installing packages and switching users need it).
pub fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u"))
        .map(|u| u.trim() == "0")
        .unwrap_or(false)
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
