//! Protobuf encodings of the messages the extension sends and receives, made
//! by the same generated code (`tutela-proto`) the native agent uses, and the
//! protocol's field limits applied before anything is signed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message;
use serde_json::{json, Value};
use tutela_proto::limits::{
    MAX_AGENT_PROBLEMS, MAX_FIELD_BYTES, MAX_ID_BYTES, MAX_MATCHES, MAX_NAME_BYTES,
};
use tutela_proto::token::EnrolmentToken;
use tutela_proto::v1::{
    CaptureInfo, EnrolRequest, EnrolResponse, EventBatch, EventBatchReply, EventBody,
    HeartbeatBody, HeartbeatReply, NoticeAckReply, Observation, RekeyRequest, RuleMatch,
    SignedEvent, SignedHeartbeat, SubscribeBody,
};

use crate::Failure;

/// A string field of the request ("" when absent).
pub fn text(request: &Value, field: &str) -> String {
    request[field].as_str().unwrap_or_default().to_owned()
}

/// An integer field of the request (0 when absent).
pub fn int(request: &Value, field: &str) -> i64 {
    request[field].as_i64().unwrap_or_default()
}

/// A base64 field of the request (empty when absent).
pub fn bytes(request: &Value, field: &str) -> Result<Vec<u8>, Failure> {
    STANDARD
        .decode(request[field].as_str().unwrap_or_default())
        .map_err(|_| format!("`{field}` is not base64"))
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub fn parse_token(request: &Value) -> Result<Value, Failure> {
    let token = EnrolmentToken::decode(&text(request, "token"), int(request, "now_ms"))
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "collector": token.collector,
        "fallbacks": token.fallbacks,
        "fingerprint": token.fingerprint.to_ascii_lowercase(),
        "secret": token.secret,
        "expires_ms": token.expires_ms,
    }))
}

pub fn enrol_request(request: &Value) -> Result<Value, Failure> {
    let message = EnrolRequest {
        token_secret: text(request, "secret"),
        public_key: bytes(request, "public_key")?,
        station: cut(text(request, "station"), MAX_NAME_BYTES),
        agent_version: text(request, "agent_version"),
        proof: bytes(request, "proof")?,
        machine_id: String::new(),
    };
    Ok(json!({ "bytes": b64(&message.encode_to_vec()) }))
}

pub fn enrol_response(request: &Value) -> Result<Value, Failure> {
    let reply = EnrolResponse::decode(bytes(request, "bytes")?.as_slice())
        .map_err(|_| "the collector's enrolment answer is not an EnrolResponse".to_owned())?;
    if reply.bundle_public_key.len() != 32 {
        return Err("the collector's enrolment answer has no valid bundle key".into());
    }
    Ok(json!({
        "agent_id": reply.agent_id,
        "group": reply.group,
        "bundle_public_key": b64(&reply.bundle_public_key),
    }))
}

/// The encoded `EventBody` for an event the extension raises: text fields
/// and matches cut to the protocol's limits, so the body is the one signed
/// and sent.
pub fn event_body(request: &Value) -> Result<Value, Failure> {
    let o = &request["observation"];
    let observation = Observation {
        source: int(o, "source") as i32,
        context: cut(text(o, "context"), MAX_FIELD_BYTES),
        app: cut(text(o, "app"), MAX_FIELD_BYTES),
        app_path: String::new(),
        window_title: cut(text(o, "window_title"), MAX_FIELD_BYTES),
        url: cut(text(o, "url"), MAX_FIELD_BYTES),
        search_query: cut(text(o, "search_query"), MAX_FIELD_BYTES),
    };
    let context_len = observation.context.len() as u32;
    let mut matches: Vec<RuleMatch> = request["matches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let end = (int(m, "end").max(0) as u32).min(context_len);
            RuleMatch {
                rule_id: cut(text(m, "rule_id"), MAX_NAME_BYTES),
                category: cut(text(m, "category"), MAX_NAME_BYTES),
                severity: int(m, "severity").clamp(0, 5) as u32,
                term: cut(text(m, "term"), MAX_NAME_BYTES),
                start: (int(m, "start").max(0) as u32).min(end),
                end,
            }
        })
        .collect();
    matches.sort_by_key(|m| std::cmp::Reverse(m.severity));
    matches.truncate(MAX_MATCHES);
    let capture = match &request["capture"] {
        Value::Object(_) => {
            let c = &request["capture"];
            Some(CaptureInfo {
                sha256: bytes(c, "sha256")?,
                size: int(c, "size").max(0) as u64,
                width: int(c, "width").max(0) as u32,
                height: int(c, "height").max(0) as u32,
                mime: "image/jpeg".into(),
            })
        }
        _ => None,
    };
    let prev_hash = bytes(request, "prev_hash")?;
    if prev_hash.len() != 32 {
        return Err("prev_hash must be 32 bytes".into());
    }
    let seq = int(request, "seq");
    if seq < 1 {
        return Err("seq must be 1 or more".into());
    }
    let body = EventBody {
        event_id: cut(text(request, "event_id"), MAX_ID_BYTES),
        agent_id: text(request, "agent_id"),
        seq: seq as u64,
        prev_hash,
        time_ms: int(request, "time_ms"),
        user: cut(text(request, "user"), MAX_NAME_BYTES),
        station: cut(text(request, "station"), MAX_NAME_BYTES),
        observation: Some(observation),
        matches,
        capture,
        rules_version: int(request, "rules_version").max(0) as u32,
        // A folded record of repeats says how many; a first alert is 1.
        count: request["count"]
            .as_u64()
            .unwrap_or(1)
            .min(u64::from(u32::MAX)) as u32,
        dropped_before: int(request, "dropped_before").max(0) as u64,
        repeat_of: cut(text(request, "repeat_of"), MAX_ID_BYTES),
    };
    Ok(json!({ "body": b64(&body.encode_to_vec()) }))
}

pub fn event_batch(request: &Value) -> Result<Value, Failure> {
    let events = request["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            Ok(SignedEvent {
                body: bytes(e, "body")?,
                signature: bytes(e, "signature")?,
                capture: bytes(e, "capture")?,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(json!({ "bytes": b64(&EventBatch { events }.encode_to_vec()) }))
}

pub fn batch_reply(request: &Value) -> Result<Value, Failure> {
    let reply = EventBatchReply::decode(bytes(request, "bytes")?.as_slice())
        .map_err(|_| "the collector's answer is not an EventBatchReply".to_owned())?;
    Ok(json!({
        "ack": reply.ack.map(|a| json!({"agent_id": a.agent_id, "seq": a.seq, "status": a.status})),
        "refused_code": reply.refused_code,
        "refused_message": reply.refused_message,
        "rejected_seq": reply.rejected_seq,
    }))
}

pub fn heartbeat_body(request: &Value) -> Result<Value, Failure> {
    let body = HeartbeatBody {
        agent_id: text(request, "agent_id"),
        time_ms: int(request, "time_ms"),
        agent_version: text(request, "agent_version"),
        rules_version: int(request, "rules_version").max(0) as u32,
        spool_backlog: int(request, "spool_backlog").max(0) as u64,
        spool_dropped: int(request, "spool_dropped").max(0) as u64,
        station: cut(text(request, "station"), MAX_NAME_BYTES),
        shadow_counts: request["shadow_counts"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .map(|(rule, n)| (cut(rule.clone(), MAX_NAME_BYTES), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
        shadow_version: int(request, "shadow_version").clamp(0, i64::from(u32::MAX)) as u32,
        shadow_run: cut(text(request, "shadow_run"), MAX_ID_BYTES),
        machine_id: text(request, "machine_id"),
        problems: request["problems"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_AGENT_PROBLEMS)
            .map(|p| cut(p.to_owned(), MAX_NAME_BYTES))
            .collect(),
    };
    Ok(json!({ "body": b64(&body.encode_to_vec()) }))
}

pub fn heartbeat_reply(request: &Value) -> Result<Value, Failure> {
    let reply = HeartbeatReply::decode(bytes(request, "bytes")?.as_slice())
        .map_err(|_| "the collector's answer is not a HeartbeatReply".to_owned())?;
    Ok(json!({ "server_time_ms": reply.server_time_ms, "rekey": reply.rekey }))
}

pub fn subscribe_body(request: &Value) -> Result<Value, Failure> {
    let body = SubscribeBody {
        agent_id: text(request, "agent_id"),
        current_version: int(request, "current_version").max(0) as u32,
        time_ms: int(request, "time_ms"),
        current_shadow_version: int(request, "current_shadow_version").max(0) as u32,
    };
    Ok(json!({ "body": b64(&body.encode_to_vec()) }))
}

/// A signed heartbeat or subscription (both are `{body, signature}`).
pub fn signed(request: &Value) -> Result<Value, Failure> {
    let message = SignedHeartbeat {
        body: bytes(request, "body")?,
        signature: bytes(request, "signature")?,
    };
    Ok(json!({ "bytes": b64(&message.encode_to_vec()) }))
}

/// The bytes both keys sign to exchange a cloned identity for a new one:
/// `{agent_id, new_public_key, time_ms}`.
pub fn rekey_message(request: &Value) -> Result<Value, Failure> {
    let message = tutela_proto::rekey_message(
        &text(request, "agent_id"),
        &bytes(request, "new_public_key")?,
        int(request, "time_ms"),
    );
    Ok(json!({ "bytes": b64(&message) }))
}

pub fn rekey_request(request: &Value) -> Result<Value, Failure> {
    let message = RekeyRequest {
        agent_id: text(request, "agent_id"),
        new_public_key: bytes(request, "new_public_key")?,
        station: cut(text(request, "station"), MAX_NAME_BYTES),
        machine_id: text(request, "machine_id"),
        agent_version: text(request, "agent_version"),
        time_ms: int(request, "time_ms"),
        reason: cut(text(request, "reason"), 64),
        old_signature: bytes(request, "old_signature")?,
        new_signature: bytes(request, "new_signature")?,
    };
    Ok(json!({ "bytes": b64(&message.encode_to_vec()) }))
}

/// A queued event's body moved to a new identity after a re-key: the same
/// observation, matches and capture under `{agent_id, seq, prev_hash}`.
pub fn event_rebody(request: &Value) -> Result<Value, Failure> {
    let mut body = EventBody::decode(bytes(request, "body")?.as_slice())
        .map_err(|_| "a queued event is not an EventBody".to_owned())?;
    let prev_hash = bytes(request, "prev_hash")?;
    let seq = int(request, "seq");
    if prev_hash.len() != 32 || seq < 1 {
        return Err("seq must be 1 or more and prev_hash 32 bytes".into());
    }
    body.agent_id = text(request, "agent_id");
    body.seq = seq as u64;
    body.prev_hash = prev_hash;
    Ok(json!({ "body": b64(&body.encode_to_vec()), "repeat_of": body.repeat_of }))
}

pub fn notice_ack_reply(request: &Value) -> Result<Value, Failure> {
    let reply = NoticeAckReply::decode(bytes(request, "bytes")?.as_slice())
        .map_err(|_| "the collector's answer is not a NoticeAckReply".to_owned())?;
    Ok(json!({ "stored": reply.stored }))
}
