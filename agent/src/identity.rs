//! The agent's identity: an Ed25519 key pair made on first start, kept with
//! owner-only permissions, and the enrolment record (agent id, collector
//! address, pinned certificate fingerprint).

use std::fs;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

const KEY_FILE: &str = "agent.key";
const ENROLMENT_FILE: &str = "enrolment.toml";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}; check the agent's data directory permissions")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {0} is corrupt; remove it and enrol the device again")]
    CorruptKey(PathBuf),
    #[error("the enrolment record {path} is unreadable ({reason}); enrol the device again")]
    CorruptEnrolment { path: PathBuf, reason: String },
    #[error("this device is not enrolled; run `tutela-agent enrol <token>` with a token from a technician")]
    NotEnrolled,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What enrolment gave this device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrolment {
    pub agent_id: String,
    /// `host:port` of the collector.
    pub collector: String,
    /// Hex SHA-256 of the collector certificate, pinned.
    pub fingerprint: String,
    pub group: String,
    /// Hex SHA-256 of the public key this enrolment belongs to.
    pub key_fingerprint: String,
    /// Hex Ed25519 public key the collector signs rule bundles with.
    #[serde(default)]
    pub bundle_key: String,
    /// Further addresses of the same collector service, from the token,
    /// tried in order when `collector` cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

/// The agent's signing key.
pub struct Identity {
    key: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the key from `dir`, or makes and stores a new one on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        create_private_dir(dir)?;
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(pkcs8) => {
                let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .map_err(|_| IdentityError::CorruptKey(path.clone()))?;
                Ok(Self { key, pkcs8 })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self::generate();
                write_private(&path, &identity.pkcs8)?;
                tracing::info!(public_key = %hex::encode(identity.public_key()), "made a new agent key");
                Ok(identity)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// A fresh key held only in memory (tests, benchmarks, simulations).
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("the system random source works")
            .as_ref()
            .to_vec();
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("a fresh key parses");
        Self { key, pkcs8 }
    }

    /// Replaces the stored key with a fresh one (used when a clone is detected).
    pub fn rekey(dir: &Path) -> Result<Self, IdentityError> {
        let identity = Self::generate();
        write_private(&dir.join(KEY_FILE), &identity.pkcs8)?;
        Ok(identity)
    }

    /// Stores this key in `dir`, replacing any key there.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        write_private(&dir.join(KEY_FILE), &self.pkcs8)
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn key_fingerprint(&self) -> String {
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.public_key(),
        ))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).as_ref().to_vec()
    }
}

impl Enrolment {
    /// Every address of the collector service: `collector`, then the fallbacks.
    pub fn addresses(&self) -> Vec<String> {
        std::iter::once(self.collector.clone())
            .chain(self.fallbacks.iter().cloned())
            .collect()
    }

    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join(ENROLMENT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled)
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        toml::from_str(&text).map_err(|e| IdentityError::CorruptEnrolment {
            path,
            reason: e.message().to_owned(),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let text = toml::to_string(self).expect("enrolment serialises");
        write_private(&dir.join(ENROLMENT_FILE), text.as_bytes())
    }
}

/// Creates `dir` (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes a file atomically with owner-only permissions: a new temporary file
/// beside it (random name, never an existing file or a symlink someone else
/// planted), then a rename over `path`. The temporary file is removed on error.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    tutela_proto::private_file::write(path, bytes).map_err(|(at, e)| io_err(&at)(e))
}

/// File recording which host (machine and station) the key was made on.
const HOST_FILE: &str = "host.id";

/// The host this agent runs on: hex SHA-256 of the machine identifier and
/// the station name, so neither leaves the device. `TUTELA_MACHINE_ID`
/// overrides the machine identifier (tests; one machine playing two stations).
/// A cloned lab image keeps the key but runs on another machine or under
/// another station name, and so gets a different host id.
pub fn host_id(station: &str) -> String {
    let machine = std::env::var("TUTELA_MACHINE_ID")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .or_else(raw_machine_id)
        .unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"tutela-host-v1\n");
    ctx.update(machine.as_bytes());
    ctx.update(b"\n");
    ctx.update(station.as_bytes());
    hex::encode(ctx.finish())
}

/// The operating system's machine identifier, if it has one.
#[cfg(target_os = "linux")]
fn raw_machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The operating system's machine identifier, if it has one.
#[cfg(windows)]
fn raw_machine_id() -> Option<String> {
    // MachineGuid is regenerated by sysprep, so a properly generalised image
    // gives each clone its own.
    let out = std::process::Command::new("reg")
        .args([
            "query",
            r"HKLM\SOFTWARE\Microsoft\Cryptography",
            "/v",
            "MachineGuid",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("MachineGuid"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_owned)
}

/// The operating system's machine identifier, if it has one.
#[cfg(not(any(target_os = "linux", windows)))]
fn raw_machine_id() -> Option<String> {
    None
}

/// Whether the key in a data directory was made on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// Made here.
    Same,
    /// No record yet (an older agent): this host is recorded now.
    Recorded,
    /// Made on another host: the directory was copied (a cloned image).
    Moved,
}

/// Records `host` as the key's host if none is recorded; compares otherwise.
pub fn check_host(dir: &Path, host: &str) -> Result<HostCheck, IdentityError> {
    let path = dir.join(HOST_FILE);
    match fs::read_to_string(&path) {
        Ok(recorded) if recorded.trim() == host => Ok(HostCheck::Same),
        Ok(_) => Ok(HostCheck::Moved),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            record_host(dir, host)?;
            Ok(HostCheck::Recorded)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Records the host a (new) key belongs to.
pub fn record_host(dir: &Path, host: &str) -> Result<(), IdentityError> {
    write_private(&dir.join(HOST_FILE), host.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("tutela-id-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            Enrolment::load(&dir),
            Err(IdentityError::NotEnrolled)
        ));
        assert_eq!(check_host(&dir, "a").unwrap(), HostCheck::Recorded);
        assert_eq!(check_host(&dir, "a").unwrap(), HostCheck::Same);
        assert_eq!(check_host(&dir, "b").unwrap(), HostCheck::Moved);
        assert_ne!(host_id("PC01"), host_id("PC02"));
        assert_eq!(host_id("PC01").len(), 64);
        fs::remove_dir_all(&dir).unwrap();
    }
}
