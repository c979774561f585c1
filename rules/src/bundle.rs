//! Signed rule bundles: a pack's TOML with its id, version, signing time and key id,
//! signed with the collector's Ed25519 key. Agents apply a bundle only when the signature
//! verifies with the pinned key and the version is newer than the one they run.

use crate::{CompileOptions, Matcher, Pack};
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "tutela-rule-bundle";
const FORMAT_VERSION: u32 = 1;

/// A verified bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// The pack, parsed and validated (its terms compile: the signer checked).
    pub pack: Pack,
    pub pack_id: String,
    pub version: u32,
    pub pack_toml: String,
    pub signed_at_ms: i64,
    pub key_id: String,
}

/// Why a bundle could not be made or was rejected.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("malformed rule bundle: {0}; the file is damaged or not a Tutela rule bundle, fetch it again")]
    Malformed(String),
    #[error("rule bundle signed by key {found}, but this device trusts key {expected}; publish bundles with the collector's own signing key")]
    WrongKey { expected: String, found: String },
    #[error("rule bundle signature does not verify; the bundle was altered or corrupted, do not apply it")]
    BadSignature,
    #[error("rule bundle version {offered} is not newer than the running version {current}; bump [pack] version before publishing")]
    NotNewer { current: u32, offered: u32 },
    #[error("rule bundle holds an invalid pack: {0}; run `tutela-rules check` on it and fix the problems")]
    InvalidPack(String),
    #[error("signing key problem: {0}; generate a key with `tutela-rules keygen`")]
    Key(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    format_version: u32,
    pack_id: String,
    version: u32,
    signed_at_ms: i64,
    key_id: String,
    pack_toml: String,
    signature: String,
}

/// Short id of an Ed25519 public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new Ed25519 key pair as PKCS#8 bytes. (Not in a bare WebAssembly
/// build, which only verifies bundles and has no source of randomness.)
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub fn generate_pkcs8() -> Result<Vec<u8>, BundleError> {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| BundleError::Key("the system random generator failed".into()))
}

/// Load a PKCS#8 Ed25519 key.
pub fn load_pkcs8(bytes: &[u8]) -> Result<Ed25519KeyPair, BundleError> {
    Ed25519KeyPair::from_pkcs8(bytes)
        .map_err(|e| BundleError::Key(format!("not an Ed25519 PKCS#8 key ({e})")))
}

fn message(w: &Wire) -> Vec<u8> {
    let mut m = Vec::with_capacity(w.pack_toml.len() + 128);
    m.extend_from_slice(FORMAT.as_bytes());
    m.push(0);
    m.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    for field in [
        w.pack_id.as_bytes(),
        w.key_id.as_bytes(),
        w.pack_toml.as_bytes(),
    ] {
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field);
    }
    m.extend_from_slice(&w.version.to_be_bytes());
    m.extend_from_slice(&w.signed_at_ms.to_be_bytes());
    m
}

fn validate(pack_toml: &str) -> Result<Pack, BundleError> {
    let pack =
        Pack::parse(pack_toml, "bundle").map_err(|e| BundleError::InvalidPack(e.to_string()))?;
    Matcher::compile(&pack, &CompileOptions::default())
        .map_err(|e| BundleError::InvalidPack(e.to_string()))?;
    Ok(pack)
}

/// Validate a pack and sign it into a bundle.
pub fn sign(pack_toml: &str, key: &Ed25519KeyPair) -> Result<Vec<u8>, BundleError> {
    sign_at(pack_toml, key, now_ms())
}

/// [`sign`] with an explicit signing time.
pub fn sign_at(
    pack_toml: &str,
    key: &Ed25519KeyPair,
    signed_at_ms: i64,
) -> Result<Vec<u8>, BundleError> {
    let pack = validate(pack_toml)?;
    let mut wire = Wire {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        pack_id: pack.id,
        version: pack.version,
        signed_at_ms,
        key_id: key_id(key.public_key().as_ref()),
        pack_toml: pack_toml.to_string(),
        signature: String::new(),
    };
    let signature = key.sign(&message(&wire));
    wire.signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
    serde_json::to_vec_pretty(&wire).map_err(|e| BundleError::Malformed(e.to_string()))
}

/// Verify a bundle against the trusted public key (32 raw Ed25519 bytes). With
/// `current_version`, only a strictly newer version is accepted.
pub fn verify(
    bytes: &[u8],
    public_key: &[u8],
    current_version: Option<u32>,
) -> Result<Bundle, BundleError> {
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if wire.format != FORMAT || wire.format_version != FORMAT_VERSION {
        return Err(BundleError::Malformed(format!(
            "format `{}` version {}, expected `{FORMAT}` version {FORMAT_VERSION}",
            wire.format, wire.format_version
        )));
    }
    let expected = key_id(public_key);
    if wire.key_id != expected {
        return Err(BundleError::WrongKey {
            expected,
            found: wire.key_id,
        });
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(wire.signature.as_bytes())
        .map_err(|e| BundleError::Malformed(format!("signature is not base64: {e}")))?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message(&wire), &signature)
        .map_err(|_| BundleError::BadSignature)?;
    // The signer compiled the pack before signing it; the receiver compiles
    // it once, with its own options, so here it is only parsed.
    let origin = format!("bundle {} v{}", wire.pack_id, wire.version);
    let pack = Pack::parse(&wire.pack_toml, &origin)
        .map_err(|e| BundleError::InvalidPack(e.to_string()))?;
    if pack.id != wire.pack_id || pack.version != wire.version {
        return Err(BundleError::Malformed(format!(
            "header says {} v{} but the pack is {} v{}",
            wire.pack_id, wire.version, pack.id, pack.version
        )));
    }
    if let Some(current) = current_version {
        if wire.version <= current {
            return Err(BundleError::NotNewer {
                current,
                offered: wire.version,
            });
        }
    }
    Ok(Bundle {
        pack,
        pack_id: wire.pack_id,
        version: wire.version,
        pack_toml: wire.pack_toml,
        signed_at_ms: wire.signed_at_ms,
        key_id: wire.key_id,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str = "[pack]\nid = \"b\"\nname = \"B\"\nversion = 4\nlanguage = \"en-GB\"\n\n[categories.violence]\nseverity = 3\n\n[[terms]]\ncategory = \"violence\"\nterms = [\"stab\"]\n";

    fn key() -> Ed25519KeyPair {
        load_pkcs8(&generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = key();
        let public = k.public_key().as_ref().to_vec();
        let bytes = sign_at(PACK, &k, 1_700_000_000_000).unwrap();
        let b = verify(&bytes, &public, Some(3)).unwrap();
        assert_eq!(
            (b.pack_id.as_str(), b.version, b.signed_at_ms),
            ("b", 4, 1_700_000_000_000)
        );
        assert_eq!(b.pack_toml, PACK);
        assert!(verify(&bytes, &public, None).is_ok());

        assert!(matches!(
            verify(&bytes, &public, Some(4)),
            Err(BundleError::NotNewer {
                current: 4,
                offered: 4
            })
        ));
        assert!(matches!(
            verify(&bytes, &public, Some(9)),
            Err(BundleError::NotNewer { .. })
        ));
        let other = key();
        assert!(matches!(
            verify(&bytes, other.public_key().as_ref(), None),
            Err(BundleError::WrongKey { .. })
        ));
        assert!(matches!(
            verify(b"junk", &public, None),
            Err(BundleError::Malformed(_))
        ));

        let tampered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("stab", "stub");
        assert!(matches!(
            verify(tampered.as_bytes(), &public, None),
            Err(BundleError::BadSignature)
        ));
        let bumped = String::from_utf8(bytes)
            .unwrap()
            .replace("\"version\": 4", "\"version\": 5");
        assert!(matches!(
            verify(bumped.as_bytes(), &public, Some(4)),
            Err(BundleError::BadSignature)
        ));
    }

    #[test]
    fn a_validly_signed_malformed_pack_is_refused_naming_its_line() {
        // A signer that skipped validation: the receiver still refuses the pack.
        let key = key();
        let good = sign(PACK, &key).unwrap();
        let mut wire: Wire = serde_json::from_slice(&good).unwrap();
        wire.pack_toml = PACK.replacen("[[terms]]", "[lists.empty]\nwords = []\n\n[[terms]]", 1);
        wire.signature =
            base64::engine::general_purpose::STANDARD.encode(key.sign(&message(&wire)).as_ref());
        let bytes = serde_json::to_vec(&wire).unwrap();
        let err = verify(&bytes, key.public_key().as_ref(), None).unwrap_err();
        assert!(matches!(err, BundleError::InvalidPack(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("bundle {} v{}:", wire.pack_id, wire.version)),
            "{text}"
        );
        assert!(text.contains("word list `empty` is empty"), "{text}");
    }

    #[test]
    fn sign_validates_the_pack() {
        let err = sign("[pack]\nid = 1\n", &key()).unwrap_err();
        assert!(matches!(err, BundleError::InvalidPack(_)), "{err}");
    }
}
