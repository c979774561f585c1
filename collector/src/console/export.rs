//! Exports: an incident record for CPOMS or MyConcern (a printable page and
//! JSON carrying the signed body, signature and agent key so anyone can
//! re-verify it), and a CSV of a filtered queue. Every export is audited.

use std::fmt::Write;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use base64::Engine;
use rusqlite::Connection;

use super::alert::{self, Signature};
use super::html::{esc, page as layout};
use super::queue::{self, state_label, QueueQuery};
use super::{audit, deny, html_response, session, typed_response, App, Fail, Req};

fn reviewer(conn: &Connection, req: &Req) -> Result<super::auth::Viewer, Fail> {
    let viewer = session(conn, req)?;
    if !viewer.role.reviews() {
        return Err(deny(conn, &viewer, "export"));
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
pub fn record(app: &App, conn: &Connection, a: &alert::Alert) -> Result<serde_json::Value, Fail> {
    let (signature, key) = alert::verify(conn, a)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let capture_sha: Option<String> = if a.has_capture {
        conn.query_row(
            "SELECT sha256 FROM captures WHERE alert_id = ?1",
            [a.id],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .ok()
        .map(hex::encode)
    } else {
        None
    };
    let notes: Vec<serde_json::Value> = alert::notes(conn, a.id)?
        .into_iter()
        .map(|(t, author, text)| serde_json::json!({"time": app.zone.format(t), "time_ms": t, "author": author, "text": text}))
        .collect();
    let history: Vec<serde_json::Value> = alert::history(conn, a.id)?
        .into_iter()
        .map(|(t, actor, from, to, reason)| serde_json::json!({"time": app.zone.format(t), "time_ms": t, "by": actor, "from": from, "to": to, "reason": reason}))
        .collect();
    Ok(serde_json::json!({
        "record": "Tutela safeguarding incident",
        "alert_id": a.id,
        "username": a.user,
        "station": a.station,
        "time": app.zone.format(a.time_ms),
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

pub fn record_json(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let a = alert::load(app, conn, &viewer, req.id())?;
    let json = record(app, conn, &a)?;
    audit::append(
        conn,
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

pub fn record_page(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let a = alert::load(app, conn, &viewer, req.id())?;
    let json = record(app, conn, &a)?;
    audit::append(
        conn,
        &viewer.name,
        "export_record",
        &format!("alert:{}", a.id),
        "printable",
    )?;
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    let ev = &json["evidence"];
    let sig = &json["signature"];
    let mut body = format!(
        r#"<h1>Safeguarding incident record</h1><p class="noprint"><a href="/alerts/{id}">Back to the alert</a> &middot; use your browser's Print to save it as PDF for CPOMS or MyConcern.</p>
<dl class="facts"><dt>Account (username)</dt><dd>{user}</dd><dt>Station</dt><dd>{station}</dd><dt>Time</dt><dd>{time}</dd>
<dt>Category, severity</dt><dd>{category}, {severity}</dd><dt>Rule</dt><dd>{rule} (rules version {rv})</dd><dt>Status</dt><dd>{state}</dd>
<dt>Where</dt><dd>{source} in {app_name}; window "{title}"</dd><dt>URL</dt><dd>{url}</dd><dt>Search query</dt><dd>{search}</dd>
<dt>Matched words</dt><dd>{words}</dd><dt>Evidence</dt><dd class="context">{context}</dd><dt>Capture</dt><dd>{capture}</dd></dl>"#,
        id = a.id,
        user = esc(&a.user),
        station = esc(&a.station),
        time = esc(&app.zone.format(a.time_ms)),
        category = esc(&a.category),
        severity = a.severity,
        rule = esc(&a.rule_id),
        rv = a.rules_version,
        state = esc(state_label(&a.state)),
        source = s(&ev["source"]),
        app_name = s(&ev["app"]),
        title = s(&ev["window_title"]),
        url = s(&ev["url"]),
        search = s(&ev["search_query"]),
        words = esc(&matched_words(&a).join(", ")),
        context = alert::highlight(&a.context, &a.matches),
        capture = match ev["capture_sha256"].as_str() {
            Some(h) => format!("screenshot held in Tutela, SHA-256 {}", esc(h)),
            None => "none".into(),
        },
    );
    body.push_str("<h2>Notes</h2><ul>");
    for n in json["notes"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<li>{} ({}): {}</li>",
            s(&n["author"]),
            s(&n["time"]),
            s(&n["text"])
        );
    }
    body.push_str("</ul><h2>Actions</h2><ul>");
    for h in json["history"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<li>{} by {}: {} &rarr; {} {}</li>",
            s(&h["time"]),
            s(&h["by"]),
            esc(state_label(h["from"].as_str().unwrap_or(""))),
            esc(state_label(h["to"].as_str().unwrap_or(""))),
            s(&h["reason"])
        );
    }
    let _ = write!(
        body,
        r#"</ul><h2>Signature</h2><dl class="facts"><dt>Verified</dt><dd>{}</dd><dt>Event</dt><dd>{} (agent {}, #{})</dd><dt>Body SHA-256</dt><dd>{}</dd><dt>Signature (Ed25519)</dt><dd>{}</dd><dt>Agent public key</dt><dd>{}</dd></dl>"#,
        if sig["verified"].as_bool() == Some(true) {
            "yes: the evidence is as the agent signed it"
        } else if a.source == crate::reports::SOURCE {
            "not signed: a pupil's report from the 'Report a concern' page"
        } else {
            "NO"
        },
        s(&sig["event_id"]),
        s(&sig["agent_id"]),
        a.seq,
        s(&sig["body_sha256"]),
        s(&sig["signature_base64"]),
        s(&sig["agent_public_key_base64"]),
    );
    Ok(html_response(layout(
        &format!("Incident record {}", a.id),
        Some(&viewer),
        &body,
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
        let time = app.zone.format(r.time_ms);
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

pub fn csv(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let q = QueueQuery::from_req(req);
    let rows = queue::rows(app, conn, &viewer, &q, 0, 100_000)?;
    let out = queue_csv(app, &rows)
        .map_err(|e| Fail::BadRequest(format!("the CSV could not be written: {e}")))?;
    audit::append(
        conn,
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
