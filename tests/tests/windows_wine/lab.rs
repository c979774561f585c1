//! The machine under test: a Wine prefix on a virtual desktop, its
//! collector, the MSI and the scratch directory, with the steps' common
//! moves (msiexec, the session agent, waiting for alerts, focusing windows).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use tutela_tests::{read, wait_for, Collector, Desktop, Scratch};

use crate::wine::Wine;

/// The group the station enrols into; its monitoring notice is shown at session start.
pub const GROUP: &str = "year-7";
pub const INSTALLED_EXE: &str = "Program Files/Tutela/Agent/tutela-agent.exe";
pub const DATA_DIR: &str = "ProgramData/Tutela/agent";
/// Generous: a debug agent under Wine compiles the full pack before its sensors start.
pub const AGENT_START: Duration = Duration::from_secs(180);
pub const ALERT: Duration = Duration::from_secs(90);

/// One machine and its collector. Fields drop in order: Wine first, the scratch directory
/// holding its prefix last.
pub struct Lab {
    pub wine: Wine,
    pub desktop: Desktop,
    pub collector: Collector,
    pub msi: String,
    pub scratch: Scratch,
}

impl Lab {
    pub fn installed(&self) -> PathBuf {
        self.wine.drive_c(INSTALLED_EXE)
    }

    pub fn data(&self) -> PathBuf {
        self.wine.drive_c(DATA_DIR)
    }

    pub fn msiexec(&self, args: &[&str], log: &str) -> (String, String) {
        let log = self.scratch.path(log);
        let (ok, out, text) = self.wine.msiexec(args, &log);
        assert!(ok, "msiexec {args:?} failed: {out}\nlog:\n{text}");
        (out, text)
    }

    /// `tutela-agent run` as installed, its log at `log`.
    pub fn start_session_agent(&mut self, log: &str) -> (Child, PathBuf) {
        let log = self.scratch.path(log);
        let mut run = self.wine.agent();
        run.arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let agent = run.spawn().expect("wine starts the agent");
        wait_for("the agent's sensors", AGENT_START, || {
            read(&log).contains("sensors started")
        })
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(&log)));
        (agent, log)
    }

    pub fn wait_for_alert(
        &self,
        what: &str,
        agent_log: &std::path::Path,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.collector
            .wait_for_alert(what, ALERT, matches)
            .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", read(agent_log)))
    }

    /// Starts a program in the prefix on the desktop (ended with the desktop).
    pub fn spawn(&mut self, program: &str, args: &[&str]) {
        let mut cmd = self.wine.wine(program);
        cmd.args(args);
        self.desktop.spawn(&mut cmd).unwrap();
    }

    /// The X window of a Wine window whose title contains `name`, focused.
    pub fn focus(&self, name: &str) -> String {
        let found = self
            .desktop
            .xdotool(&["search", "--sync", "--name", name])
            .unwrap();
        let window = found.lines().next().expect("a window").to_owned();
        self.desktop.focus(&window).unwrap();
        window
    }
}
