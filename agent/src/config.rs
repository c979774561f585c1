//! Agent configuration (TOML). Every field has a default, so no file is needed.
//!
//! ```toml
//! # <data dir>/agent.toml
//! [spool]
//! max_bytes = 268435456        # 256 MiB; when full, lowest severity is dropped first
//! [uplink]
//! backoff_initial_ms = 500     # first retry delay; doubles per failure, with jitter
//! backoff_max_ms = 30000
//! max_message_bytes = 3145728  # largest event sent (capture + body)
//! heartbeat_secs = 60          # status report (versions, spool backlog) to the collector
//! idle_close_secs = 20         # event stream closed this long after its last event is
//!                              # acknowledged, opened again for the next (0: kept open)
//! [evidence]
//! cooldown_secs = 60           # repeats of a rule in one window within this fold into one alert
//! burst_shots = 3              # shots taken for rules with capture = "burst"
//! burst_interval_ms = 1000
//! screenshots = true          # false: alerts carry no capture
//! [typed]
//! hold_words = 10             # a typed match that a later cue could lower waits for up to this
//! hold_secs = 8               # many more words, or this long, then is matched again (0: no hold)
//! urgent_hold_secs = 3        # the wait for severity 5 (suicide, self-harm, exploitation)
//! [rules]
//! pack_file = ""              # a local pack (TOML) to run instead of published bundles; watched, so
//!                             # a technician's edit takes effect at once (unsigned: keep it admin-only)
//! age = "all"                 # all | primary | secondary: which age band's terms apply
//! [notice]
//! concern_link_file = "/var/lib/tutela-agent-public/concern-url"  # the 'Report a concern'
//!                             # address, published for the desktop entry (Windows:
//!                             # C:\ProgramData\Tutela\concern-url.txt)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub spool: SpoolSection,
    pub uplink: UplinkSection,
    pub evidence: EvidenceSection,
    pub rules: RulesSection,
    pub notice: NoticeSection,
    pub typed: TypedSection,
}

/// How long a typed match waits for a cue typed after it (see `monitor::hold`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TypedSection {
    pub hold_words: usize,
    pub hold_secs: u64,
    pub urgent_hold_secs: u64,
}

impl Default for TypedSection {
    fn default() -> Self {
        let d = crate::monitor::HoldSettings::default();
        Self {
            hold_words: d.words,
            hold_secs: d.time.as_secs(),
            urgent_hold_secs: d.urgent_time.as_secs(),
        }
    }
}

impl TypedSection {
    /// The hold as the monitor uses it; values out of range are refused.
    pub fn hold(&self) -> Result<crate::monitor::HoldSettings, String> {
        let max = crate::monitor::HoldSettings::MAX_WORDS;
        if self.hold_words > max {
            return Err(format!(
                "[typed] hold_words = {} is too many: use 0 to {max}",
                self.hold_words
            ));
        }
        let max = crate::monitor::HoldSettings::MAX_SECS;
        for (name, v) in [
            ("hold_secs", self.hold_secs),
            ("urgent_hold_secs", self.urgent_hold_secs),
        ] {
            if v > max {
                return Err(format!(
                    "[typed] {name} = {v} is too long: use 0 to {max} seconds"
                ));
            }
        }
        Ok(crate::monitor::HoldSettings {
            words: self.hold_words,
            time: std::time::Duration::from_secs(self.hold_secs),
            urgent_time: std::time::Duration::from_secs(self.urgent_hold_secs),
        })
    }
}

/// The monitoring notice's side effects on this computer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticeSection {
    /// Where the 'Report a concern' address is published for the desktop
    /// entry (world-readable; holds only the address).
    pub concern_link_file: PathBuf,
}

impl Default for NoticeSection {
    fn default() -> Self {
        Self {
            concern_link_file: crate::concern::default_link_file(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSection {
    pub pack_file: Option<PathBuf>,
    pub age: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    pub max_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            max_bytes: crate::spool::SpoolConfig::default().max_bytes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UplinkSection {
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub max_message_bytes: usize,
    pub heartbeat_secs: u64,
    pub idle_close_secs: u64,
}

impl UplinkSection {
    /// How long the event stream stays open with nothing to send; `None`
    /// (0 in the file) keeps it open.
    pub fn idle_close(&self) -> Option<std::time::Duration> {
        (self.idle_close_secs > 0).then(|| std::time::Duration::from_secs(self.idle_close_secs))
    }
}

impl Default for UplinkSection {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_message_bytes: 3 * 1024 * 1024,
            heartbeat_secs: 60,
            idle_close_secs: crate::uplink::IDLE_CLOSE.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceSection {
    pub cooldown_secs: u64,
    pub burst_shots: u32,
    pub burst_interval_ms: u64,
    pub screenshots: bool,
}

impl Default for EvidenceSection {
    fn default() -> Self {
        Self {
            cooldown_secs: 60,
            burst_shots: 3,
            burst_interval_ms: 1000,
            screenshots: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid agent configuration: {reason}; see the README's agent configuration section")]
    Invalid { path: PathBuf, reason: String },
}

impl AgentConfig {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                config.typed.hold().map_err(|reason| ConfigError::Invalid {
                    path: path.to_owned(),
                    reason,
                })?;
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_hold_settings_out_of_range_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "[typed]\nhold_words = 31\n").unwrap();
        let e = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("hold_words = 31") && e.contains("0 to 30"),
            "{e}"
        );
        std::fs::write(&path, "[typed]\nurgent_hold_secs = 61\n").unwrap();
        let e = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("urgent_hold_secs = 61"), "{e}");
        std::fs::write(&path, "[typed]\nhold_secs = 0\n").unwrap();
        let hold = AgentConfig::load(&path).unwrap().typed.hold().unwrap();
        assert_eq!(hold.time, std::time::Duration::ZERO, "0: no hold");
        let defaults = AgentConfig::default().typed.hold().unwrap();
        assert_eq!(defaults, crate::monitor::HoldSettings::default());
    }

    #[test]
    fn the_event_stream_closes_when_idle_by_default_and_0_keeps_it_open() {
        let defaults = AgentConfig::default();
        assert_eq!(
            defaults.uplink.idle_close(),
            Some(crate::uplink::IDLE_CLOSE)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "[uplink]\nidle_close_secs = 0\n").unwrap();
        assert_eq!(AgentConfig::load(&path).unwrap().uplink.idle_close(), None);
        std::fs::write(&path, "[uplink]\nidle_close_secs = 5\n").unwrap();
        assert_eq!(
            AgentConfig::load(&path).unwrap().uplink.idle_close(),
            Some(std::time::Duration::from_secs(5))
        );
    }
}
