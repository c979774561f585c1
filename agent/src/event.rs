//! Turning what the agent saw into the exact bytes it signs and sends.
//!
//! A body is bounded by construction: every free-text field is cut (at a
//! character boundary) to a fixed length and at most [`MAX_MATCHES`] matches
//! are carried, so no observation, however long the URL or title, can make a
//! body the collector refuses for its size (see [`MAX_BODY_BYTES_BOUND`]).

use prost::Message;
use ring::digest::{digest, SHA256};
use tutela_proto::v1::{CaptureInfo, EventBody, Observation as WireObservation, RuleMatch};

use crate::identity::Identity;

// The protocol's limits: the collector refuses an event over any of them.
pub use tutela_proto::limits::{MAX_FIELD_BYTES, MAX_ID_BYTES, MAX_MATCHES, MAX_NAME_BYTES};
/// Protobuf tags, lengths and the fixed-size fields, generously.
const FRAMING_BYTES: usize = 1024;
/// Largest body [`seal`] can produce.
pub const MAX_BODY_BYTES_BOUND: usize = 6 * (MAX_FIELD_BYTES + 8)
    + 2 * (MAX_NAME_BYTES + 8)
    + 2 * (MAX_ID_BYTES + 8)
    + MAX_MATCHES * (3 * (MAX_NAME_BYTES + 8) + 32)
    + FRAMING_BYTES;
const _: () = assert!(MAX_BODY_BYTES_BOUND < tutela_proto::DEFAULT_MAX_BODY_BYTES / 3 * 2);

/// Cuts `s` to at most `max` bytes, at a character boundary.
pub fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

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
    /// The draft a sealed event was made from (its body and capture bytes),
    /// for sealing it again under another identity; `None` when the body
    /// does not decode.
    pub fn from_sealed(body: &[u8], capture: Vec<u8>) -> Option<Self> {
        let body = EventBody::decode(body).ok()?;
        let evidence = body.capture.map(|info| Evidence {
            jpeg: capture,
            width: info.width,
            height: info.height,
        });
        Some(Self {
            time_ms: body.time_ms,
            user: body.user,
            station: body.station,
            observation: body.observation.unwrap_or_default(),
            matches: body.matches,
            evidence,
            rules_version: body.rules_version,
            count: body.count,
            event_id: Some(body.event_id),
            repeat_of: body.repeat_of,
        })
    }

    /// The draft with every free-text field cut to its limit and at most
    /// [`MAX_MATCHES`] matches (the highest severities, in their order).
    pub fn bounded(mut self) -> Self {
        truncate_at_char_boundary(&mut self.user, MAX_NAME_BYTES);
        truncate_at_char_boundary(&mut self.station, MAX_NAME_BYTES);
        if let Some(id) = self.event_id.as_mut() {
            truncate_at_char_boundary(id, MAX_ID_BYTES);
        }
        truncate_at_char_boundary(&mut self.repeat_of, MAX_ID_BYTES);
        let o = &mut self.observation;
        for field in [
            &mut o.context,
            &mut o.app,
            &mut o.app_path,
            &mut o.window_title,
            &mut o.url,
            &mut o.search_query,
        ] {
            truncate_at_char_boundary(field, MAX_FIELD_BYTES);
        }
        let context_len = o.context.len() as u32;
        if self.matches.len() > MAX_MATCHES {
            // Stable: equal severities keep their order.
            self.matches.sort_by_key(|m| std::cmp::Reverse(m.severity));
            self.matches.truncate(MAX_MATCHES);
        }
        for m in &mut self.matches {
            truncate_at_char_boundary(&mut m.rule_id, MAX_NAME_BYTES);
            truncate_at_char_boundary(&mut m.category, MAX_NAME_BYTES);
            truncate_at_char_boundary(&mut m.term, MAX_NAME_BYTES);
            m.end = m.end.min(context_len);
            m.start = m.start.min(m.end);
        }
        self
    }

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
/// encodes it once and signs exactly those bytes (after the event domain).
pub fn seal(
    identity: &Identity,
    agent_id: &str,
    seq: u64,
    prev_hash: [u8; 32],
    dropped_before: u64,
    draft: EventDraft,
) -> SealedEvent {
    let severity = draft.severity();
    let draft = draft.bounded();
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
    let signature = identity.sign(&tutela_proto::event_message(&body));
    SealedEvent {
        seq,
        severity,
        body,
        signature,
        capture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutela_proto::v1::Observation;

    fn huge_draft() -> EventDraft {
        // Multi-byte characters throughout, so a byte cut would land inside one.
        let long = |seed: &str| seed.repeat(100 * 1024 / seed.len() + 1);
        EventDraft {
            time_ms: 1,
            user: long("é"),
            station: long("ß"),
            observation: Observation {
                source: 3,
                context: long("ü"),
                app: long("ä"),
                app_path: long("/ö"),
                window_title: long("a€"),
                url: format!("https://www.google.com/search?q={}", long("%F0%9F%98%80😀")),
                search_query: long("😀"),
            },
            matches: (0..100u32)
                .map(|i| RuleMatch {
                    rule_id: long("r€"),
                    category: long("c€"),
                    severity: if i == 77 { 5 } else { 1 + i % 4 },
                    term: long("t€"),
                    start: 0,
                    end: 100_000,
                })
                .collect(),
            evidence: None,
            rules_version: 1,
            count: 1,
            event_id: Some(long("e")),
            repeat_of: long("f"),
        }
    }

    #[test]
    fn a_huge_observation_seals_to_a_body_under_the_limit() {
        let id = Identity::generate();
        let original = huge_draft();
        let sealed = seal(&id, "ag-1", 1, [0; 32], 0, original.clone());
        assert!(
            sealed.body.len() <= MAX_BODY_BYTES_BOUND,
            "{} bytes",
            sealed.body.len()
        );
        assert!(sealed.body.len() < tutela_proto::DEFAULT_MAX_BODY_BYTES);
        assert_eq!(sealed.severity, 5);
        // Decoding checks every string is valid UTF-8: each cut is at a
        // character boundary.
        let body = EventBody::decode(sealed.body.as_slice()).unwrap();
        let obs = body.observation.unwrap();
        let o = &original.observation;
        for (cut, whole) in [
            (&obs.url, &o.url),
            (&obs.window_title, &o.window_title),
            (&obs.search_query, &o.search_query),
            (&obs.app_path, &o.app_path),
            (&obs.context, &o.context),
        ] {
            assert!(cut.len() <= MAX_FIELD_BYTES);
            assert!(
                cut.len() > MAX_FIELD_BYTES - 4,
                "cut no shorter than needed"
            );
            assert!(whole.starts_with(cut.as_str()));
        }
        assert!(body.user.len() <= MAX_NAME_BYTES && original.user.starts_with(&body.user));
        assert_eq!(body.matches.len(), MAX_MATCHES);
        assert_eq!(body.matches[0].severity, 5, "the highest severity is kept");
        assert!(body.matches.iter().all(|m| m.severity >= 3));
        assert!(body
            .matches
            .iter()
            .all(|m| m.end as usize <= obs.context.len() && m.term.len() <= MAX_NAME_BYTES));
        assert!(body.event_id.len() <= MAX_ID_BYTES);
    }

    #[test]
    fn small_drafts_are_untouched() {
        let mut draft = huge_draft();
        draft.user = "pupil".into();
        draft.observation.url = "https://example.org/é".into();
        draft.matches.truncate(3);
        draft.matches[0].term = "pipe bomb".into();
        let bounded = draft.clone().bounded();
        assert_eq!(bounded.user, "pupil");
        assert_eq!(bounded.observation.url, draft.observation.url);
        assert_eq!(bounded.matches.len(), 3);
        assert_eq!(bounded.matches[0].term, "pipe bomb");
    }

    #[test]
    fn truncation_never_splits_a_character() {
        for max in 0..12 {
            let mut s = "a😀é€".to_string();
            truncate_at_char_boundary(&mut s, max);
            assert!(s.len() <= max);
            assert!("a😀é€".starts_with(&s));
        }
    }
}
