//! The agent's identity: an Ed25519 key pair made on first start, kept with
//! owner-only permissions, and the enrolment record (agent id, collector
//! address, pinned certificate fingerprint).

use std::fs;
use std::io::Write;
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

/// Writes a file atomically (temp file + rename) with owner-only permissions.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
