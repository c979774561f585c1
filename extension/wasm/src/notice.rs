//! The school's monitoring notice, checked exactly as the native agent checks
//! it (docs/PROTOCOL.md, Monitoring notices), and the pupil's signed
//! acknowledgement's body. The extension shows the text in its own page.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{json, Value};
use tutela_proto::limits::{
    MAX_ID_BYTES, MAX_NAME_BYTES, MAX_NOTICE_TEXT_BYTES, MAX_NOTICE_URL_BYTES,
};
use tutela_proto::v1::{Notice, NoticeAckBody, SignedNotice};

use crate::wire::{b64, bytes, cut, int, text};
use crate::{Engine, Failure};

fn refused(why: &str) -> Value {
    json!({"kind": "notice", "applied": false, "reason": why})
}

/// Checks a notice from the rules stream against the bundle `key` and this
/// device's `group`; one issued no earlier than the one held becomes the one held (its
/// version number may be lower: a device moved to another school is sent that school's
/// notice issued again). The
/// reply carries what the page shows and the SHA-256 the acknowledgement
/// names.
pub fn apply(engine: &mut Engine, signed: &SignedNotice, key: &[u8], group: &str) -> Value {
    let message = tutela_proto::notice_message(&signed.body);
    if UnparsedPublicKey::new(&ED25519, key)
        .verify(&message, &signed.signature)
        .is_err()
    {
        return refused("its signature does not verify with the collector's bundle key");
    }
    let Ok(notice) = Notice::decode(signed.body.as_slice()) else {
        return refused("it is not a Notice");
    };
    if group.is_empty() || notice.group != group {
        return refused("it is for another group");
    }
    if notice.text.len() > MAX_NOTICE_TEXT_BYTES || notice.concern_url.len() > MAX_NOTICE_URL_BYTES
    {
        return refused("its text or address is over its limit");
    }
    if notice.issue_order() < engine.notice_issue {
        return refused("it was issued before the notice held (a replay)");
    }
    engine.notice_issue = notice.issue_order();
    engine.notice_version = notice.version;
    let sha = ring::digest::digest(&ring::digest::SHA256, &signed.body);
    json!({
        "kind": "notice",
        "applied": true,
        "notice": {
            "group": notice.group,
            "version": notice.version,
            "text": notice.text,
            // Unknown modes are shown at every sign-in.
            "once_per_version": notice.mode == tutela_proto::v1::NoticeMode::OncePerVersion as i32,
            "concern_url": notice.concern_url,
            "sha256": STANDARD.encode(sha.as_ref()),
        },
    })
}

/// The encoded `NoticeAckBody` for the pupil's acknowledgement: `{agent_id,
/// ack_id, user, station, group, version, time_ms, notice_sha256}`.
pub fn ack_body(request: &Value) -> Result<Value, Failure> {
    let notice_sha256 = bytes(request, "notice_sha256")?;
    if notice_sha256.len() != 32 {
        return Err("notice_sha256 must be 32 bytes".into());
    }
    let body = NoticeAckBody {
        agent_id: text(request, "agent_id"),
        ack_id: cut(text(request, "ack_id"), MAX_ID_BYTES),
        user: cut(text(request, "user"), MAX_NAME_BYTES),
        station: cut(text(request, "station"), MAX_NAME_BYTES),
        group: cut(text(request, "group"), MAX_NAME_BYTES),
        version: int(request, "version").clamp(0, i64::from(u32::MAX)) as u32,
        time_ms: int(request, "time_ms"),
        notice_sha256,
    };
    Ok(json!({ "body": b64(&body.encode_to_vec()) }))
}
