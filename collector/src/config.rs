//! Collector configuration: `<data dir>/collector.toml`, written by `init`
//! with every default spelled out. A missing field takes its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC listen address for agents (TLS).
    pub listen: SocketAddr,
    /// Address agents are told to use in enrolment tokens (`host:port`).
    /// Empty: the listen address, with 127.0.0.1 for an unspecified host.
    pub advertise: String,
    pub limits: Limits,
    pub storage: Storage,
    pub console: Console,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest capture one event may carry.
    pub max_capture_bytes: usize,
    /// Largest signed event body.
    pub max_body_bytes: usize,
    /// Agent clock further than this from the collector's is flagged (not rejected).
    pub skew_flag_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Most events committed in one transaction by the writer.
    pub batch_max: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7443".parse().expect("a valid address"),
            advertise: String::new(),
            limits: Limits::default(),
            storage: Storage::default(),
            console: Console::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_capture_bytes: tutela_proto::DEFAULT_MAX_CAPTURE_BYTES,
            max_body_bytes: tutela_proto::DEFAULT_MAX_BODY_BYTES,
            skew_flag_secs: 300,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self { batch_max: 1000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}; run `tutela-collector init` first")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid collector configuration: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The address written into enrolment tokens.
    pub fn advertised(&self) -> String {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        addr.to_string()
    }

    /// The maximum gRPC message the collector decodes.
    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_capture_bytes + self.limits.max_body_bytes + 4096
    }
}

/// The review console: a web application for the DSL, head, technicians and auditors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// Serve the console at all.
    pub enabled: bool,
    /// Listen address. Plain HTTP unless `tls` is set; keep it on loopback
    /// (behind a TLS reverse proxy) or set `tls` before opening it to the network.
    pub listen: SocketAddr,
    /// Serve HTTPS with the collector's certificate (session cookies become `Secure`).
    pub tls: bool,
    /// The school's time zone for displayed times: `Europe/London` (GMT/BST),
    /// `UTC`, or a fixed offset such as `+01:00`.
    pub time_zone: String,
    /// Accounts matching this pattern (`*` wildcard, case-insensitive) are
    /// staff, besides those imported with `users import`; their alerts go to
    /// the head teacher only. Empty: none.
    pub staff_pattern: String,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8443".parse().expect("a valid address"),
            tls: false,
            time_zone: "Europe/London".into(),
            staff_pattern: String::new(),
        }
    }
}
