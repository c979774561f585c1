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
//! [evidence]
//! cooldown_secs = 60           # repeats of a rule in one window within this fold into one alert
//! burst_shots = 3              # shots taken for rules with capture = "burst"
//! burst_interval_ms = 1000
//! screenshots = true          # false: alerts carry no capture
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
}

impl Default for UplinkSection {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_message_bytes: 3 * 1024 * 1024,
            heartbeat_secs: 60,
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
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}
