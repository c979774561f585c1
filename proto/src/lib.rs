//! The Tutela wire protocol, `tutela.v1`, generated from `tutela/v1/tutela.proto`,
//! and the few formats both sides share (enrolment tokens, signing domains).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/tutela.v1.rs"));
}

#[cfg(feature = "grpc")]
pub mod codec;
pub mod private_file;
pub mod token;

pub mod limits;
pub use limits::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CAPTURE_BYTES};

/// The protocol version this crate speaks (see `docs/PROTOCOL.md`,
/// "Versioning"). Version 2 put a domain-separation prefix in front of the
/// signed bytes of events, heartbeats and subscriptions, and signs the role
/// (live or shadow) of each rule bundle sent; version 1 agents cannot talk to
/// a version 2 collector.
pub const PROTOCOL_VERSION: u32 = 2;

/// Domain-separation prefix for the enrolment proof of possession.
pub const ENROL_PROOF_DOMAIN: &[u8] = b"tutela-enrol-v1";
/// Domain-separation prefix of the collector's signature on a `SignedExemptions`.
pub const EXEMPTIONS_DOMAIN: &[u8] = b"tutela-exemptions-v1";
/// Domain-separation prefix of the two signatures in a `RekeyRequest`.
pub const REKEY_DOMAIN: &[u8] = b"tutela-rekey-v1";
/// Domain-separation prefix of an agent's signature on a `SignedEvent`.
pub const EVENT_DOMAIN: &[u8] = b"tutela-event-v2";
/// Domain-separation prefix of an agent's signature on a `SignedHeartbeat`.
pub const HEARTBEAT_DOMAIN: &[u8] = b"tutela-heartbeat-v2";
/// Domain-separation prefix of an agent's signature on a `SignedSubscribe`.
pub const SUBSCRIBE_DOMAIN: &[u8] = b"tutela-subscribe-v2";
/// Domain-separation prefix of the collector's release signature on a
/// `RuleBundle` (which binds the `shadow` flag and version to the bundle).
pub const RELEASE_DOMAIN: &[u8] = b"tutela-bundle-release-v2";
/// Domain-separation prefix of the collector's signature on a `SignedNotice`.
pub const NOTICE_DOMAIN: &[u8] = b"tutela-notice-v1";
/// Domain-separation prefix of an agent's signature on a `SignedNoticeAck`.
pub const NOTICE_ACK_DOMAIN: &[u8] = b"tutela-notice-ack-v1";
/// Domain-separation prefix of the collector's signature on a `SignedGroupAssignment`.
pub const GROUP_DOMAIN: &[u8] = b"tutela-group-v1";

/// Every signing domain of the protocol. None is a prefix of another, so a
/// signature made for one kind of message never verifies as another kind.
/// (Signed rule bundles have their own prefix, `tutela-rule-bundle` and a
/// zero byte, inside the bundle format.)
pub const ALL_DOMAINS: [&[u8]; 10] = [
    ENROL_PROOF_DOMAIN,
    EXEMPTIONS_DOMAIN,
    REKEY_DOMAIN,
    EVENT_DOMAIN,
    HEARTBEAT_DOMAIN,
    SUBSCRIBE_DOMAIN,
    RELEASE_DOMAIN,
    NOTICE_DOMAIN,
    NOTICE_ACK_DOMAIN,
    GROUP_DOMAIN,
];

/// `domain || body`: the bytes signed for a message that carries an encoded
/// body (events, heartbeats, subscriptions, exemption sets).
pub fn domain_message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

/// The bytes an agent signs for an event whose encoded `EventBody` is `body`.
pub fn event_message(body: &[u8]) -> Vec<u8> {
    domain_message(EVENT_DOMAIN, body)
}

/// The bytes an agent signs for a heartbeat whose encoded `HeartbeatBody` is `body`.
pub fn heartbeat_message(body: &[u8]) -> Vec<u8> {
    domain_message(HEARTBEAT_DOMAIN, body)
}

/// The bytes an agent signs for a subscription whose encoded `SubscribeBody` is `body`.
pub fn subscribe_message(body: &[u8]) -> Vec<u8> {
    domain_message(SUBSCRIBE_DOMAIN, body)
}

/// The bytes the collector signs for an exemption set whose encoded `ExemptionSet` is `body`.
pub fn exemptions_message(body: &[u8]) -> Vec<u8> {
    domain_message(EXEMPTIONS_DOMAIN, body)
}

/// The bytes the collector signs for a monitoring notice whose encoded `Notice` is `body`.
pub fn notice_message(body: &[u8]) -> Vec<u8> {
    domain_message(NOTICE_DOMAIN, body)
}

impl v1::Notice {
    /// Where this notice stands in its group's order of issue: its `issue`, or, from a
    /// collector that numbers no issues, its version (such a collector gives every row its
    /// version as its first issue, so the orders agree). A holder refuses a notice issued
    /// before the one it holds (a replay), whatever the version numbers say.
    pub fn issue_order(&self) -> u64 {
        if self.issue > 0 {
            self.issue
        } else {
            u64::from(self.version)
        }
    }
}

/// The bytes the collector signs for a group assignment whose encoded `GroupAssignment` is `body`.
pub fn group_message(body: &[u8]) -> Vec<u8> {
    domain_message(GROUP_DOMAIN, body)
}

/// The bytes an agent signs for an acknowledgement whose encoded `NoticeAckBody` is `body`.
pub fn notice_ack_message(body: &[u8]) -> Vec<u8> {
    domain_message(NOTICE_ACK_DOMAIN, body)
}

/// The bytes a new key signs to prove its possession at enrolment.
pub fn enrol_proof_message(token_secret: &str) -> Vec<u8> {
    domain_message(ENROL_PROOF_DOMAIN, token_secret.as_bytes())
}

/// The bytes the collector signs to release `bundle` as version `version`,
/// live (`shadow` false) or shadow: the domain, one byte for the role
/// (0 live, 1 shadow), the version (big-endian u32) and the SHA-256 of the
/// bundle bytes.
pub fn release_message(bundle_sha256: &[u8; 32], version: u32, shadow: bool) -> Vec<u8> {
    let mut m = RELEASE_DOMAIN.to_vec();
    m.push(u8::from(shadow));
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(bundle_sha256);
    m
}

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
/// gRPC metadata key carrying the collector's clock (milliseconds since the
/// Unix epoch) on a heartbeat refused as stale, so an agent whose clock is
/// wrong can time its heartbeats by the collector's.
pub const COLLECTOR_TIME_METADATA: &str = "tutela-collector-time-ms";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_signing_domain_is_a_prefix_of_another() {
        for (i, a) in ALL_DOMAINS.iter().enumerate() {
            for (j, b) in ALL_DOMAINS.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
            assert!(!b"tutela-rule-bundle\0".starts_with(a));
        }
    }
}
