//! A backup's encryption: a key derived with Argon2id from the operator's
//! passphrase seals each file with AES-256-GCM in 1 MiB chunks and
//! authenticates the manifest with HMAC-SHA256.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::files::{create_private, io};
use super::{BackupError, Manifest, MIN_PASSPHRASE_BYTES};

/// How the files of a backup are encrypted, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `argon2id-aes256gcm-stream1`: Argon2id derives a 32-byte key; each file
    /// is a 7-byte random prefix, then 1 MiB chunks sealed with AES-256-GCM
    /// (nonce = prefix, chunk number, last-chunk flag; the file name as AAD).
    pub scheme: String,
    /// Argon2id salt (hex).
    pub salt: String,
    /// Argon2id memory in KiB.
    pub m_cost: u32,
    /// Argon2id passes.
    pub t_cost: u32,
    /// Argon2id lanes.
    pub p_cost: u32,
}

pub(super) const SCHEME: &str = "argon2id-aes256gcm-stream1";

/// The operator's passphrase, read from a file kept off the server.
pub struct Passphrase(Vec<u8>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// Reads a passphrase file: its content with surrounding whitespace
    /// trimmed, at least [`MIN_PASSPHRASE_BYTES`] long.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let bad = |reason: String| BackupError::BadPassphrase {
            path: path.to_owned(),
            reason,
        };
        let bytes = fs::read(path).map_err(|e| bad(e.to_string()))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_PASSPHRASE_BYTES {
            return Err(bad(format!(
                "it holds {} bytes, fewer than {MIN_PASSPHRASE_BYTES}; make one with: head -c 32 /dev/urandom | base64 > FILE",
                trimmed.len()
            )));
        }
        Ok(Self(trimmed.to_vec()))
    }
}

/// The key sealing one backup's files, and the key authenticating its manifest.
pub(super) struct BackupKey(LessSafeKey, ring::hmac::Key);

/// Bounds on the Argon2 parameters a restore accepts from a manifest: new
/// backups use 64 MiB, 3 passes, 1 lane.
pub(super) const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
pub(super) const ARGON2_MIN_M_KIB: u32 = 8 * 1024;
pub(super) const ARGON2_MAX_T: u32 = 16;
pub(super) const ARGON2_MAX_P: u32 = 8;
/// The context the manifest key is derived for.
pub(super) const MANIFEST_MAC_CONTEXT: &[u8] = b"tutela backup manifest hmac-sha256 v1";

pub(super) const CHUNK: usize = 1 << 20;
pub(super) const PREFIX: usize = 7;

impl BackupKey {
    pub(super) fn derive(passphrase: &Passphrase, enc: &Encryption) -> Result<Self, BackupError> {
        if enc.scheme != SCHEME {
            return Err(BackupError::Kdf(format!(
                "unknown encryption scheme {:?}; restore with the collector version that made the backup",
                enc.scheme
            )));
        }
        let salt = hex::decode(&enc.salt).map_err(|e| BackupError::Kdf(e.to_string()))?;
        if !(ARGON2_MIN_M_KIB..=ARGON2_MAX_M_KIB).contains(&enc.m_cost)
            || !(1..=ARGON2_MAX_T).contains(&enc.t_cost)
            || !(1..=ARGON2_MAX_P).contains(&enc.p_cost)
            || !(16..=64).contains(&salt.len())
        {
            return Err(BackupError::Kdf(format!(
                "the manifest asks for Argon2 memory {} KiB, {} passes, {} lanes and a {}-byte salt, outside the accepted bounds ({ARGON2_MIN_M_KIB}-{ARGON2_MAX_M_KIB} KiB, 1-{ARGON2_MAX_T} passes, 1-{ARGON2_MAX_P} lanes, 16-64 bytes); the manifest is damaged or was not made by Tutela",
                enc.m_cost,
                enc.t_cost,
                enc.p_cost,
                salt.len()
            )));
        }
        let params = argon2::Params::new(enc.m_cost, enc.t_cost, enc.p_cost, Some(32))
            .map_err(|e| BackupError::Kdf(e.to_string()))?;
        let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        kdf.hash_password_into(&passphrase.0, &salt, &mut key)
            .map_err(|e| BackupError::Kdf(e.to_string()))?;
        let unbound = UnboundKey::new(&aead::AES_256_GCM, &key)
            .map_err(|_| BackupError::Kdf("AES-256-GCM key rejected".into()))?;
        // A separate key for the manifest: HMAC-SHA256 of a fixed context
        // under the derived key.
        let mac_key = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            MANIFEST_MAC_CONTEXT,
        );
        key.fill(0);
        Ok(Self(
            LessSafeKey::new(unbound),
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mac_key.as_ref()),
        ))
    }

    /// The MAC of `manifest` (hex).
    pub(super) fn sign_manifest(&self, manifest: &Manifest) -> String {
        hex::encode(ring::hmac::sign(&self.1, &manifest.mac_input()))
    }

    /// Checks the MAC of `manifest` read from `path`.
    pub(super) fn verify_manifest(
        &self,
        manifest: &Manifest,
        path: &Path,
    ) -> Result<(), BackupError> {
        let forged = || BackupError::ManifestForged(path.to_owned());
        let mac = hex::decode(manifest.mac.as_deref().ok_or_else(forged)?).map_err(|_| forged())?;
        ring::hmac::verify(&self.1, &manifest.mac_input(), &mac).map_err(|_| forged())
    }

    fn nonce(prefix: &[u8; PREFIX], chunk: u32, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[..PREFIX].copy_from_slice(prefix);
        n[PREFIX..11].copy_from_slice(&chunk.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `from` into the new file `to`, bound to the name `name`.
    #[cfg(test)]
    pub(super) fn seal_file(&self, name: &str, from: &Path, to: &Path) -> Result<(), BackupError> {
        let mut input = fs::File::open(from).map_err(io(from))?;
        self.seal(name, &mut input, from, to)
    }

    /// Encrypts what `input` (read from `from`) holds into the new file `to`,
    /// bound to the name `name`. A failed write removes `to`.
    pub(super) fn seal(
        &self,
        name: &str,
        input: &mut impl Read,
        from: &Path,
        to: &Path,
    ) -> Result<(), BackupError> {
        let mut out = create_private(to)?;
        let sealed = self.seal_into(name, input, from, &mut out, to);
        if sealed.is_err() {
            let _ = fs::remove_file(to);
        }
        sealed
    }

    fn seal_into(
        &self,
        name: &str,
        input: &mut impl Read,
        from: &Path,
        out: &mut fs::File,
        to: &Path,
    ) -> Result<(), BackupError> {
        let mut prefix = [0u8; PREFIX];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| BackupError::Kdf("no randomness for a nonce".into()))?;
        out.write_all(&prefix).map_err(io(to))?;
        let mut buf = vec![0u8; CHUNK];
        for chunk in 0u32.. {
            let n = read_full(input, &mut buf).map_err(io(from))?;
            let last = n < CHUNK;
            let mut block = buf[..n].to_vec();
            self.0
                .seal_in_place_append_tag(
                    Self::nonce(&prefix, chunk, last),
                    Aad::from(name.as_bytes()),
                    &mut block,
                )
                .map_err(|_| BackupError::Kdf("encryption failed".into()))?;
            out.write_all(&block).map_err(io(to))?;
            if last {
                break;
            }
        }
        out.sync_all().map_err(io(to))
    }

    /// Decrypts `from` (made by [`seal_file`](Self::seal_file) for `name`) into the new file `to`.
    pub(super) fn open_file(&self, name: &str, from: &Path, to: &Path) -> Result<(), BackupError> {
        let mut input = fs::File::open(from).map_err(io(from))?;
        let mut prefix = [0u8; PREFIX];
        input
            .read_exact(&mut prefix)
            .map_err(|_| BackupError::Decrypt(from.to_owned()))?;
        let mut out = create_private(to)?;
        let tag = aead::AES_256_GCM.tag_len();
        let mut buf = vec![0u8; CHUNK + tag];
        for chunk in 0u32.. {
            let n = read_full(&mut input, &mut buf).map_err(io(from))?;
            let last = n < CHUNK + tag;
            let plain = self
                .0
                .open_in_place(
                    Self::nonce(&prefix, chunk, last),
                    Aad::from(name.as_bytes()),
                    &mut buf[..n],
                )
                .map_err(|_| BackupError::Decrypt(from.to_owned()))?;
            out.write_all(plain).map_err(io(to))?;
            if last {
                break;
            }
        }
        out.sync_all().map_err(io(to))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Argon2id parameters for new backups: 64 MiB, 3 passes, 1 lane.
pub(super) fn new_encryption() -> Result<Encryption, BackupError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| BackupError::Kdf("no randomness for a salt".into()))?;
    Ok(Encryption {
        scheme: SCHEME.to_owned(),
        salt: hex::encode(salt),
        m_cost: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    })
}
