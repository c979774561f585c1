//! The collector's own secrets, made at `init`: its TLS certificate (agents
//! pin its fingerprint), its Ed25519 key for signing rule bundles, and the
//! key that encrypts captures at rest. All files are owner-only.

use std::fs;
use std::path::{Path, PathBuf};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::Ed25519KeyPair;

pub const CERT_FILE: &str = "collector.crt";
pub const CERT_KEY_FILE: &str = "collector.key";
pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const CAPTURE_KEY_FILE: &str = "capture.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is corrupt; restore it from backup (re-running init would orphan enrolled agents)"
    )]
    Corrupt(PathBuf),
    #[error("cannot make the TLS certificate: {0}")]
    Certificate(String),
    #[error("a capture failed to decrypt: wrong key or tampered data")]
    Decrypt,
}

/// A secret the school configures in collector.toml one of three ways:
/// written inline, in a file (its first line; a warning when other users
/// can read it), or in an environment variable. `what` names it in errors.
/// `None`: none of the three is set, or the one set is empty.
pub fn configured(
    inline: &str,
    file: &str,
    env: &str,
    what: &str,
) -> Result<Option<String>, String> {
    let (inline, file, env) = (inline.trim(), file.trim(), env.trim());
    if [inline, file, env].iter().filter(|s| !s.is_empty()).count() > 1 {
        return Err(format!("give the {what} one way only"));
    }
    let text = if !file.is_empty() {
        let text = fs::read_to_string(file)
            .map_err(|e| format!("cannot read the {what} file {file:?}: {e}"))?;
        #[cfg(unix)]
        if let Ok(meta) = fs::metadata(file) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    file,
                    "the {what} file can be read by other users; chmod 600 it"
                );
            }
        }
        text.lines().next().unwrap_or("").trim().to_owned()
    } else if !env.is_empty() {
        std::env::var(env)
            .map_err(|_| format!("the environment variable {env} (the {what}) is not set"))?
            .trim()
            .to_owned()
    } else {
        inline.to_owned()
    };
    Ok((!text.is_empty()).then_some(text))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file atomically with owner-only permissions: a new temporary file
/// beside it (random name, never an existing file or a symlink someone else
/// planted), then a rename over `path`. The temporary file is removed on error.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    tutela_proto::private_file::write(path, bytes).map_err(|(at, e)| io(&at)(e))
}

/// Makes every secret that does not exist yet; keeps those that do.
pub fn create_missing(dir: &Path, hostnames: &[String]) -> Result<(), SecretsError> {
    let rng = SystemRandom::new();
    if !dir.join(CERT_FILE).exists() {
        let mut names = vec![
            "tutela-collector".to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        names.extend(hostnames.iter().cloned());
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| SecretsError::Certificate(e.to_string()))?;
        write_private(
            &dir.join(CERT_KEY_FILE),
            certified.signing_key.serialize_pem().as_bytes(),
        )?;
        write_private(&dir.join(CERT_FILE), certified.cert.pem().as_bytes())?;
    }
    if !dir.join(SIGNING_KEY_FILE).exists() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SecretsError::Decrypt)?;
        write_private(&dir.join(SIGNING_KEY_FILE), pkcs8.as_ref())?;
    }
    if !dir.join(CAPTURE_KEY_FILE).exists() {
        let mut key = [0u8; 32];
        rng.fill(&mut key).map_err(|_| SecretsError::Decrypt)?;
        write_private(&dir.join(CAPTURE_KEY_FILE), &key)?;
    }
    Ok(())
}

/// The TLS certificate and key as PEM, and the certificate's SHA-256.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub fingerprint: String,
}

pub fn load_tls(dir: &Path) -> Result<TlsIdentity, SecretsError> {
    let cert_path = dir.join(CERT_FILE);
    let cert_pem = fs::read(&cert_path).map_err(io(&cert_path))?;
    let key_path = dir.join(CERT_KEY_FILE);
    let key_pem = fs::read(&key_path).map_err(io(&key_path))?;
    let der = pem_to_der(&cert_pem).ok_or_else(|| SecretsError::Corrupt(cert_path.clone()))?;
    let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
    Ok(TlsIdentity {
        cert_pem,
        key_pem,
        fingerprint,
    })
}

fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

pub fn load_signing_key(dir: &Path) -> Result<Ed25519KeyPair, SecretsError> {
    let path = dir.join(SIGNING_KEY_FILE);
    let bytes = fs::read(&path).map_err(io(&path))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| SecretsError::Corrupt(path))
}

/// Encrypts and decrypts captures at rest (AES-256-GCM, random nonce,
/// the event id as associated data so a capture cannot be moved to another
/// event unnoticed).
pub struct CaptureVault {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for CaptureVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureVault")
    }
}

impl CaptureVault {
    pub fn load(dir: &Path) -> Result<Self, SecretsError> {
        let path = dir.join(CAPTURE_KEY_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        Self::from_key(&bytes).ok_or(SecretsError::Corrupt(path))
    }

    pub fn from_key(bytes: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&aead::AES_256_GCM, bytes).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// nonce (12 bytes) || ciphertext || tag
    pub fn seal(&self, event_id: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        self.rng
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut out = Vec::with_capacity(12 + plain.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(event_id.as_bytes()),
                &mut out[12..],
            )
            .expect("AES-GCM sealing cannot fail for these sizes");
        out.extend_from_slice(tag.as_ref());
        out
    }

    pub fn open(&self, event_id: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < 12 + 16 {
            return Err(SecretsError::Decrypt);
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&sealed[..12]).map_err(|_| SecretsError::Decrypt)?;
        let mut buf = sealed[12..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(event_id.as_bytes()), &mut buf)
            .map_err(|_| SecretsError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_round_trips_and_detects_tampering() {
        let vault = CaptureVault::from_key(&[7u8; 32]).unwrap();
        let sealed = vault.seal("e1", b"jpeg bytes");
        assert_eq!(vault.open("e1", &sealed).unwrap(), b"jpeg bytes");
        assert!(vault.open("e2", &sealed).is_err(), "bound to its event");
        let mut bad = sealed.clone();
        bad[14] ^= 1;
        assert!(vault.open("e1", &bad).is_err());
    }
}
