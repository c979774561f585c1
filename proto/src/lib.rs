//! The Tutela wire protocol, `tutela.v1`, generated from `tutela/v1/tutela.proto`,
//! and the few formats both sides share (enrolment tokens, signing domains).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tutela.v1");
}

pub mod private_file;
pub mod token;

/// Default limit for a capture carried by one event (2 MiB).
pub const DEFAULT_MAX_CAPTURE_BYTES: usize = 2 * 1024 * 1024;
/// Default limit for the signed body of one event (64 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Domain-separation prefix for the enrolment proof of possession.
pub const ENROL_PROOF_DOMAIN: &[u8] = b"tutela-enrol-v1";
/// Domain-separation prefix of the collector's signature on a `SignedExemptions`.
pub const EXEMPTIONS_DOMAIN: &[u8] = b"tutela-exemptions-v1";
/// Domain-separation prefix of the two signatures in a `RekeyRequest`.
pub const REKEY_DOMAIN: &[u8] = b"tutela-rekey-v1";

/// The bytes both keys sign in a `RekeyRequest`: the domain, the old agent
/// id (length-prefixed), the new public key and the request time.
pub fn rekey_message(agent_id: &str, new_public_key: &[u8], time_ms: i64) -> Vec<u8> {
    let mut m = REKEY_DOMAIN.to_vec();
    m.extend_from_slice(&(agent_id.len() as u32).to_be_bytes());
    m.extend_from_slice(agent_id.as_bytes());
    m.extend_from_slice(new_public_key);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}
/// gRPC metadata key carrying the sequence number of a rejected event, so the
/// agent can set that one event aside instead of resending it forever.
pub const REJECTED_SEQ_METADATA: &str = "tutela-rejected-seq";
