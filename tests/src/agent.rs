//! An agent data directory and its `tutela-agent` process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bin, run_ok, Desktop};

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

/// Opens `agent`'s rule stream as the agent does, signed with its key.
pub async fn subscribe(agent: &Agent) -> tonic::Streaming<tutela_proto::v1::RulesUpdate> {
    use prost::Message;
    use tutela_agent::identity::{Enrolment, Identity};
    use tutela_proto::v1::rules_client::RulesClient;
    use tutela_proto::v1::{SignedSubscribe, SubscribeBody};

    let enrolment = Enrolment::load(&agent.dir).unwrap();
    let identity = Identity::load_or_create(&agent.dir).unwrap();
    let channel = tutela_agent::pinning::connect(&enrolment.collector, &enrolment.fingerprint)
        .await
        .unwrap();
    let body = SubscribeBody {
        agent_id: enrolment.agent_id.clone(),
        current_version: 0,
        time_ms: crate::load::now_ms(),
        current_shadow_version: 0,
    }
    .encode_to_vec();
    RulesClient::new(channel)
        .subscribe(SignedSubscribe {
            signature: identity.sign(&tutela_proto::subscribe_message(&body)),
            body,
        })
        .await
        .unwrap()
        .into_inner()
}
