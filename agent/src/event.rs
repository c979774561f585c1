//! Turning what the agent saw into the exact bytes it signs and sends.

use prost::Message;
use ring::digest::{digest, SHA256};
use tutela_proto::v1::{CaptureInfo, EventBody, Observation as WireObservation, RuleMatch};

use crate::identity::Identity;

/// A screenshot attached to an event.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// An event before it has a place in the agent's sequence.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub time_ms: i64,
    pub user: String,
    pub station: String,
    pub observation: WireObservation,
    pub matches: Vec<RuleMatch>,
    pub evidence: Option<Evidence>,
    pub rules_version: u32,
    pub count: u32,
    /// The event id to use; a fresh random one when `None`.
    pub event_id: Option<String>,
    /// Event id of the alert this event adds to (folded repeats, burst shots).
    pub repeat_of: String,
}

impl EventDraft {
    /// Highest severity among the matches (0 when there are none).
    pub fn severity(&self) -> u8 {
        self.matches
            .iter()
            .map(|m| m.severity.min(255) as u8)
            .max()
            .unwrap_or(0)
    }
}

/// An event ready to send: the signed body bytes, the signature, the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEvent {
    pub seq: u64,
    pub severity: u8,
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub capture: Vec<u8>,
}

impl SealedEvent {
    pub fn body_hash(&self) -> [u8; 32] {
        sha256(&self.body)
    }

    pub fn to_wire(&self) -> tutela_proto::v1::SignedEvent {
        tutela_proto::v1::SignedEvent {
            body: self.body.clone(),
            signature: self.signature.clone(),
            capture: self.capture.clone(),
        }
    }

    pub fn stored_size(&self) -> u64 {
        (self.body.len() + self.signature.len() + self.capture.len()) as u64
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An event id: 6 bytes of millisecond time then 10 random bytes, as hex.
/// Time first keeps the collector's event-id index appending at its end
/// instead of touching a random page per insert.
pub fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let ms = crate::session::now_ms().max(0) as u64;
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    ring::rand::SystemRandom::new()
        .fill(&mut bytes[6..])
        .expect("the system random source works");
    hex::encode(bytes)
}

/// Places `draft` at `seq` after the event whose body hashed to `prev_hash`,
/// encodes it once and signs exactly those bytes.
pub fn seal(
    identity: &Identity,
    agent_id: &str,
    seq: u64,
    prev_hash: [u8; 32],
    dropped_before: u64,
    draft: EventDraft,
) -> SealedEvent {
    let severity = draft.severity();
    let (capture_info, capture) = match draft.evidence {
        Some(ev) => (
            Some(CaptureInfo {
                sha256: sha256(&ev.jpeg).to_vec(),
                size: ev.jpeg.len() as u64,
                width: ev.width,
                height: ev.height,
                mime: "image/jpeg".into(),
            }),
            ev.jpeg,
        ),
        None => (None, Vec::new()),
    };
    let body = EventBody {
        event_id: draft.event_id.unwrap_or_else(random_id),
        agent_id: agent_id.to_owned(),
        seq,
        prev_hash: prev_hash.to_vec(),
        time_ms: draft.time_ms,
        user: draft.user,
        station: draft.station,
        observation: Some(draft.observation),
        matches: draft.matches,
        capture: capture_info,
        rules_version: draft.rules_version,
        count: draft.count,
        dropped_before,
        repeat_of: draft.repeat_of,
    }
    .encode_to_vec();
    let signature = identity.sign(&body);
    SealedEvent {
        seq,
        severity,
        body,
        signature,
        capture,
    }
}
