//! Exports: an incident record for CPOMS or MyConcern (a printable page and
//! JSON carrying the signed body, signature and agent key so anyone can
//! re-verify it), and a CSV of a filtered queue. Every export is audited.

use crate::store::console::Console;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use base64::Engine;
use maud::html;

use super::alert::{self, Signature};
use super::html::page as layout;
use super::queue::{self, state_label, QueueQuery};
use super::{deny, html_response, session, typed_response, App, Fail, Req};

fn reviewer(db: &Console<'_>, req: &Req) -> Result<super::auth::Viewer, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.reviews() {
        return Err(deny(db, &viewer, "export"));
    }
    Ok(viewer)
}

fn matched_words(a: &alert::Alert) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(&a.matches)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let start = m.get("start")?.as_u64()? as usize;
            let end = m.get("end")?.as_u64()? as usize;
            a.context.get(start..end).map(str::to_owned)
        })
        .collect()
}

/// The incident record as JSON.
pub fn record(app: &App, db: &Console<'_>, a: &alert::Alert) -> Result<serde_json::Value, Fail> {
    let (signature, key) = alert::verify(db, a)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let capture_sha: Option<String> = if a.has_capture {
        db.capture_sha256(a.id)?.map(hex::encode)
    } else {
        None
    };
    let notes: Vec<serde_json::Value> = db.notes(a.id)?
        .into_iter()
        .map(|(t, author, text)| serde_json::json!({"time": app.zone_of(&a.school).format(t), "time_ms": t, "author": author, "text": text}))
        .collect();
    let history: Vec<serde_json::Value> = db.history(a.id)?
        .into_iter()
        .map(|(t, actor, from, to, reason)| serde_json::json!({"time": app.zone_of(&a.school).format(t), "time_ms": t, "by": actor, "from": from, "to": to, "reason": reason}))
        .collect();
    Ok(serde_json::json!({
        "record": "Tutela safeguarding incident",
        "alert_id": a.id,
        "username": a.user,
        "station": a.station,
        "time": app.zone_of(&a.school).format(a.time_ms),
        "time_ms": a.time_ms,
        "received_ms": a.received_ms,
        "category": a.category,
        "severity": a.severity,
        "rule_id": a.rule_id,
        "rules_version": a.rules_version,
        "state": a.state,
        "false_positive_reason": a.fp_reason,
        "assigned_to": a.assignee,
        "evidence": {
            "source": a.source,
            "app": a.app,
            "window_title": a.window_title,
            "url": a.url,
            "search_query": a.search_query,
            "context": a.context,
            "matched_words": matched_words(a),
            "repeats": a.repeats,
            "capture_sha256": capture_sha,
        },
        "notes": notes,
        "history": history,
        "signature": {
            "verified": signature == Signature::Verified,
            "problem": match &signature {
                Signature::Verified => None,
                Signature::Failed(w) => Some(w.clone()),
                Signature::PupilReport => Some("a pupil's report from the report page: no agent signed it".to_owned()),
            },
            "algorithm": "Ed25519",
            // `verified` was decided under these rules (see signature.rs);
            // an honest agent's signature verifies under RFC 8032 as well.
            "verification_rules": "ZIP-215",
            // What the signature covers (docs/PROTOCOL.md): the body after
            // the event domain, or the bare body for protocol 1 events.
            "signed_bytes": if a.signed_as >= 2 { "tutela-event-v2 || body" } else { "body" },
            "event_id": a.event_id,
            "agent_id": a.agent_id,
            "seq": a.seq,
            "body_base64": b64(&a.body),
            "body_sha256": hex::encode(&a.body_hash),
            "signature_base64": b64(&a.signature),
            "agent_public_key_base64": b64(&key),
            "hash_chain_ok": a.chain_ok,
        },
    }))
}

pub fn record_json(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let a = alert::load(app, db, &viewer, req.id())?;
    let json = record(app, db, &a)?;
    db.audit(
        &viewer.name,
        "export_record_json",
        &format!("alert:{}", a.id),
        "",
    )?;
    let mut r = typed_response(
        "application/json",
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"tutela-incident-{}.json\"",
        a.id
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

pub fn record_page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let a = alert::load(app, db, &viewer, req.id())?;
    let json = record(app, db, &a)?;
    db.audit(
        &viewer.name,
        "export_record",
        &format!("alert:{}", a.id),
        "printable",
    )?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let ev = &json["evidence"];
    let sig = &json["signature"];
    let list = |key: &str| json[key].as_array().map(Vec::as_slice).unwrap_or_default();
    let body = html! {
        h1 { "Safeguarding incident record" }
        p.noprint {
            a href={ "/alerts/" (a.id) } { "Back to the alert" }
            " \u{b7} use your browser's Print to save it as PDF for CPOMS or MyConcern."
        }
        "\n"
        dl.facts {
            dt { "Account (username)" } dd { (a.user) }
            dt { "Station" } dd { (a.station) }
            dt { "Time" } dd { (app.zone_of(&a.school).format(a.time_ms)) } "\n"
            dt { "Category, severity" } dd { (a.category) ", " (a.severity) }
            dt { "Rule" } dd { (a.rule_id) " (rules version " (a.rules_version) ")" }
            dt { "Status" } dd { (state_label(&a.state)) } "\n"
            dt { "Where" }
            dd { (s(&ev["source"])) " in " (s(&ev["app"])) "; window \"" (s(&ev["window_title"])) "\"" }
            dt { "URL" } dd { (s(&ev["url"])) }
            dt { "Search query" } dd { (s(&ev["search_query"])) } "\n"
            dt { "Matched words" } dd { (matched_words(&a).join(", ")) }
            dt { "Evidence" } dd.context { (alert::highlight(&a.context, &a.matches)) }
            dt { "Capture" }
            dd {
                @match ev["capture_sha256"].as_str() {
                    Some(h) => { "screenshot held in Tutela, SHA-256 " (h) }
                    None => "none",
                }
            }
        }
        h2 { "Notes" }
        ul {
            @for n in list("notes") {
                li { (s(&n["author"])) " (" (s(&n["time"])) "): " (s(&n["text"])) }
            }
        }
        h2 { "Actions" }
        ul {
            @for h in list("history") {
                li {
                    (s(&h["time"])) " by " (s(&h["by"])) ": "
                    (state_label(h["from"].as_str().unwrap_or(""))) " \u{2192} "
                    (state_label(h["to"].as_str().unwrap_or(""))) " " (s(&h["reason"]))
                }
            }
        }
        h2 { "Signature" }
        dl.facts {
            dt { "Verified" }
            dd {
                @if sig["verified"].as_bool() == Some(true) {
                    "yes: the evidence is as the agent signed it"
                } @else if a.source == crate::reports::SOURCE {
                    "not signed: a pupil's report from the 'Report a concern' page"
                } @else {
                    "NO"
                }
            }
            dt { "Event" }
            dd { (s(&sig["event_id"])) " (agent " (s(&sig["agent_id"])) ", #" (a.seq) ")" }
            dt { "Body SHA-256" } dd { (s(&sig["body_sha256"])) }
            dt { "Signature (Ed25519)" } dd { (s(&sig["signature_base64"])) }
            dt { "Agent public key" } dd { (s(&sig["agent_public_key_base64"])) }
        }
    };
    Ok(html_response(layout(
        &format!("Incident record {}", a.id),
        Some(&viewer),
        body,
    )))
}

/// Text that a spreadsheet would run as a formula, defused with a leading `'`.
fn defuse(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

const CSV_HEADER: [&str; 12] = [
    "id",
    "time",
    "username",
    "station",
    "category",
    "severity",
    "rule",
    "term",
    "state",
    "assigned_to",
    "source",
    "repeats",
];

/// CSV for spreadsheets: text quoted, numbers bare, CRLF lines.
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::NonNumeric)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// The queue's rows as CSV, text defused, under a bare header line.
fn queue_csv(app: &App, rows: &[queue::Row]) -> csv::Result<String> {
    let mut out = csv_writer();
    for r in rows {
        let time = app.zone_of(&r.school).format(r.time_ms);
        out.write_record([
            r.id.to_string().as_str(),
            &defuse(&time),
            &defuse(&r.user),
            &defuse(&r.station),
            &defuse(&r.category),
            &r.severity.to_string(),
            &defuse(&r.rule_id),
            &defuse(&r.term),
            &defuse(&r.state),
            &defuse(&r.assignee),
            &defuse(&r.source),
            &r.repeats.to_string(),
        ])?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    // Every field written was a `str`.
    Ok(format!(
        "{}\r\n{}",
        CSV_HEADER.join(","),
        String::from_utf8_lossy(&bytes)
    ))
}

pub fn csv(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let q = QueueQuery::from_req(req);
    let rows = queue::rows(app, db, &viewer, &q, 0, 100_000)?;
    let out = queue_csv(app, &rows)
        .map_err(|e| Fail::BadRequest(format!("the CSV could not be written: {e}")))?;
    db.audit(
        &viewer.name,
        "export_csv",
        "queue",
        &format!("{} rows; filters: {}", rows.len(), q.query_string()),
    )?;
    let mut r = typed_response("text/csv; charset=utf-8", out);
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tutela-alerts.csv\""),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("pupil.one"), "pupil.one");
        let mut out = csv_writer();
        out.write_record(["7", &defuse("=HYPERLINK(\"x\")"), &defuse("-1+1"), "a\r\nb"])
            .unwrap();
        assert_eq!(
            String::from_utf8(out.into_inner().unwrap()).unwrap(),
            "7,\"'=HYPERLINK(\"\"x\"\")\",\"'-1+1\",\"a\r\nb\"\r\n"
        );
    }
}
