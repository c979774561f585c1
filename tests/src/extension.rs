//! What the browser extension's test and benchmark share: its managed
//! configuration as a Chromium policy file, the browser's trust in the
//! collector's certificate, and a small rule pack.

use std::path::{Path, PathBuf};

use base64::Engine;

/// Where Chromium on Linux reads managed policy (nowhere else: it needs root).
pub const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// The extension's id, fixed by the key in its manifest.
pub const EXTENSION_ID: &str = "hojnioahjpebjkgiinoedoemfdjifemj";

/// A pack with a title/typed phrase in each of two categories and a domain.
pub const TEST_PACK: &str = r#"[pack]
id = "extension-test"
name = "Extension test pack"
version = 1
language = "en-GB"

[[changelog]]
version = 1
date = "2026-12-06"
notes = "For the extension test."

[categories.weapons]
severity = 4
domains = ["weapons.test"]

[categories.self-harm]
severity = 5

[[terms]]
category = "weapons"
kind = "phrase"
terms = ["pipe bomb"]

[[terms]]
category = "self-harm"
kind = "phrase"
terms = ["hurt myself"]
"#;

/// The managed configuration, as a policy file; removed on drop.
pub struct Policy(PathBuf);

impl Policy {
    /// Writes `config` as this extension's policy.
    pub fn write(config: serde_json::Value) -> Self {
        std::fs::create_dir_all(POLICY_DIR).unwrap_or_else(|e| {
            panic!("cannot create {POLICY_DIR} ({e}); the extension test runs as root")
        });
        let path = Path::new(POLICY_DIR).join("tutela-extension-test.json");
        let policy = serde_json::json!({"3rdparty": {"extensions": {EXTENSION_ID: config}}});
        std::fs::write(&path, policy.to_string()).unwrap();
        Self(path)
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Base64 of the SHA-256 of the collector certificate's public key: what
/// the browser is told to trust (a school pushes the certificate instead).
pub fn spki_pin(cert_pem: &str) -> String {
    let der: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let der = rustls::pki_types::CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der).unwrap();
    let spki = cert.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Builds the extension as Chromium loads it (its WebAssembly engine and scripts).
pub fn build() {
    let built = std::process::Command::new("sh")
        .arg(crate::workspace().join("extension/build.sh"))
        .status()
        .expect("sh runs");
    assert!(built.success(), "extension/build.sh failed");
}

/// Writes the pack `text` into `scratch`, pushes it to `collector` and starts the collector.
pub fn start_with_pack(collector: &mut crate::Collector, scratch: &crate::Scratch, text: &str) {
    let pack = scratch.path("pack.toml");
    std::fs::write(&pack, text).unwrap();
    crate::run_ok(collector.cmd().args(["rules", "push"]).arg(&pack)).unwrap();
    collector.start().unwrap();
}
