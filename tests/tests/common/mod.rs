//! Helpers shared by the test files that store alerts with captures.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_proto::v1::{Observation, RuleMatch, Source};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A synthetic screenshot (no real content), different for each `n`.
pub fn jpeg(n: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(160, 100, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, n.wrapping_mul(40)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&img)
        .unwrap();
    out
}

/// Streams `contexts` as typed alerts 1.. with captures from the agent
/// enrolled in `dir`; waits until all are stored; returns the captures sent.
pub fn send(dir: &Path, contexts: &[&str]) -> Vec<Vec<u8>> {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let mut prev = [0u8; 32];
    let mut events = Vec::new();
    let mut shots = Vec::new();
    for (n, context) in contexts.iter().enumerate() {
        let word = "pipe bomb";
        let start = context.find(word).unwrap() as u32;
        let shot = jpeg(n as u8);
        shots.push(shot.clone());
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            1 + n as u64,
            prev,
            0,
            EventDraft {
                time_ms: now_ms() - 1_000 + n as i64,
                user: "pupil.one".into(),
                station: "LAB1-PC07".into(),
                observation: Observation {
                    source: Source::Typed as i32,
                    context: (*context).into(),
                    app: "chromium".into(),
                    ..Default::default()
                },
                matches: vec![RuleMatch {
                    rule_id: "weapons/seed".into(),
                    category: "weapons".into(),
                    severity: 3,
                    term: word.into(),
                    start,
                    end: start + word.len() as u32,
                }],
                evidence: Some(Evidence {
                    jpeg: shot,
                    width: 160,
                    height: 100,
                }),
                rules_version: 1,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    tutela_tests::ingest::stream_stored(&enrolment, events, contexts.len() as u64);
    shots
}
