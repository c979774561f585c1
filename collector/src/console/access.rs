//! Subject-access exports: for one pupil account, everything Tutela holds
//! about it (alerts with their context and captures, folded repeats and
//! burst shots, and the reports the pupil signed with that name) as one ZIP
//! with a readable `index.html`, the same data as `data.json`, and the
//! captures as JPEG files. Produced by the reviewing roles for accounts in
//! their scope; every export, and every request that found nothing, is
//! audited.
//!
//! Withheld by default, and listed as withheld in the export: staff notes,
//! false-positive reasons, who reviewed or was assigned (other people's
//! words and personal data, and safeguarding records whose disclosure the
//! DSL must weigh case by case), and captures of the gravest alerts (they
//! may show harmful or illegal material; the DSL can look at them in the
//! console first).

use std::fmt::Write as _;
use std::io::Write as _;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use rusqlite::Connection;

use super::alert::{self, Alert};
use super::auth::{self, Viewer};
use super::html::{csrf_field, esc, page};
use super::queue::state_label;
use super::{audit, deny, html_response, session, typed_response, with_status, App, Fail, Req};
use crate::reports;
use crate::store::now_ms;

/// What every export leaves out, and why (also in the README).
pub const WITHHELD: [(&str, &str); 3] = [
    (
        "Staff notes, false-positive reasons and who reviewed or was assigned each alert",
        "They are staff members' words and personal data, and safeguarding records whose disclosure the designated safeguarding lead must weigh case by case; ask them if you want these considered.",
    ),
    (
        "Captures of the most serious alerts",
        "They may show harmful or illegal material. The safeguarding lead can view each one in the console and decide whether to release it.",
    ),
    (
        "Other people's data, the rule pack and the audit log",
        "They are not about this account.",
    ),
];

fn may_export(viewer: &Viewer) -> bool {
    viewer.role.reviews()
}

pub fn page_handler(_app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !may_export(&viewer) {
        return Err(deny(conn, &viewer, "subject access"));
    }
    Ok(html_response(form(&viewer, "", None)))
}

fn form(viewer: &Viewer, account: &str, error: Option<&str>) -> String {
    let mut body = String::from(
        r#"<h1>Subject-access export</h1><p>Everything held about one pupil account: alerts with their context and captures, and the reports the pupil signed with that name, as a ZIP with a readable index and the same data as JSON. The export is recorded in the audit log.</p>"#,
    );
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="access-error">{}</p>"#, esc(e));
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/subject-access" id="access-form" class="panel">{}
<label>Account<input type="text" name="account" value="{}" required></label> <button type="submit">Export</button></form>
<h2>Withheld by default</h2><ul>{}</ul>"#,
        csrf_field(viewer),
        esc(account),
        WITHHELD
            .iter()
            .map(|(what, why)| format!("<li><b>{}</b>: {}</li>", esc(what), esc(why)))
            .collect::<String>()
    );
    page("Subject access", Some(viewer), &body)
}

/// Whether the capture of `a` is left out of an export.
fn capture_withheld(a: &Alert) -> bool {
    alert::sensitive(a)
}

fn capture_name(a: &Alert) -> String {
    format!("captures/alert-{}.jpg", a.id)
}

fn alert_json(app: &App, a: &Alert, capture: Option<&str>) -> serde_json::Value {
    let words: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&a.matches)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let start = m.get("start")?.as_u64()? as usize;
            let end = m.get("end")?.as_u64()? as usize;
            a.context.get(start..end).map(str::to_owned)
        })
        .collect();
    serde_json::json!({
        "id": a.id,
        "time": app.zone.format(a.time_ms),
        "time_ms": a.time_ms,
        "received_ms": a.received_ms,
        "station": a.station,
        "source": a.source,
        "app": a.app,
        "window_title": a.window_title,
        "url": a.url,
        "search_query": a.search_query,
        "context": a.context,
        "matched_words": words,
        "category": a.category,
        "severity": a.severity,
        "rule_id": a.rule_id,
        "rules_version": a.rules_version,
        "repeats": a.repeats,
        "state": a.state,
        "repeat_of_event": a.repeat_of,
        "capture": capture,
        "capture_withheld": a.has_capture && capture.is_none(),
    })
}

fn report_json(app: &App, a: &Alert) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "time": app.zone.format(a.time_ms),
        "time_ms": a.time_ms,
        "category": a.category,
        "help_now": a.severity >= reports::HELP_NOW_SEVERITY,
        "text": a.context,
        "state": a.state,
    })
}

/// The export's readable index.
fn index_html(data: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    let mut out = format!(
        r#"<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>Data held about {account}</title>
<style>body{{font:14px/1.45 sans-serif;max-width:960px;margin:20px auto;padding:0 12px}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}}</style></head><body>
<h1>Data held by Tutela about the account {account}</h1>
<p>Produced {produced} by the school's safeguarding team. Tutela is the school's safeguarding monitor: it keeps what was on screen or typed when it matched words that may mean someone is at risk, and the concerns a pupil reported. The same data is in <code>data.json</code>; pictures of the screen are in the <code>captures</code> folder.</p>
<h2>Alerts ({n_alerts})</h2>"#,
        account = s(&data["account"]),
        produced = s(&data["produced"]),
        n_alerts = data["alerts"].as_array().map_or(0, Vec::len),
    );
    out.push_str("<table><tr><th>Time</th><th>Station</th><th>Kind</th><th>Where</th><th>Words</th><th>State</th><th>Capture</th></tr>");
    for a in data["alerts"].as_array().into_iter().flatten() {
        let capture = match a["capture"].as_str() {
            Some(path) => format!(r#"<a href="{0}">{0}</a>"#, esc(path)),
            None if a["capture_withheld"] == true => "withheld (see below)".to_owned(),
            None => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} (severity {})</td><td>{} {} {} {}</td><td>{}</td><td>{}</td><td>{capture}</td></tr>",
            s(&a["time"]),
            s(&a["station"]),
            s(&a["category"]),
            a["severity"],
            s(&a["app"]),
            s(&a["window_title"]),
            s(&a["url"]),
            s(&a["search_query"]),
            s(&a["context"]),
            esc(state_label(a["state"].as_str().unwrap_or(""))),
        );
    }
    let _ = write!(
        out,
        "</table><h2>Reports of a concern ({})</h2><table><tr><th>Time</th><th>About</th><th>Help now</th><th>Words</th><th>State</th></tr>",
        data["reports"].as_array().map_or(0, Vec::len)
    );
    for r in data["reports"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(&r["time"]),
            s(&r["category"]),
            if r["help_now"] == true { "yes" } else { "no" },
            s(&r["text"]),
            esc(state_label(r["state"].as_str().unwrap_or(""))),
        );
    }
    let acks = data["notice_acknowledgements"].as_array();
    let _ = write!(
        out,
        "</table><h2>Monitoring notice acknowledged ({})</h2><table><tr><th>Time</th><th>Station</th><th>Group</th><th>Version</th></tr>",
        acks.map_or(0, Vec::len)
    );
    for k in acks.into_iter().flatten() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(&k["time"]),
            s(&k["station"]),
            s(&k["group"]),
            k["version"],
        );
    }
    out.push_str("</table><h2>Withheld</h2><ul>");
    for w in data["withheld"].as_array().into_iter().flatten() {
        let _ = write!(out, "<li><b>{}</b>: {}</li>", s(&w["what"]), s(&w["why"]));
    }
    out.push_str("</ul><p>Anonymous reports cannot be linked to anyone and so are not in any export.</p></body></html>");
    out
}

/// The ZIP's entry time: the local time the export was made (ZIP has no zone).
fn zip_time(app: &App, now: i64) -> zip::DateTime {
    let text = app.zone.format(now);
    let n: Vec<u16> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    match n[..] {
        [y, mo, d, h, mi, sec, ..] => {
            zip::DateTime::from_date_and_time(y, mo as u8, d as u8, h as u8, mi as u8, sec as u8)
                .unwrap_or_default()
        }
        _ => zip::DateTime::default(),
    }
}

/// What one export holds, counted for the audit log.
#[derive(Debug, Default)]
struct Counts {
    alerts: usize,
    reports: usize,
    captures: usize,
    withheld_captures: usize,
}

fn build(
    app: &App,
    conn: &Connection,
    account: &str,
    rows: &[Alert],
    acks: &[crate::notice::AckRecord],
) -> Result<(Vec<u8>, Counts), Fail> {
    use zip::write::SimpleFileOptions;
    let now = now_ms();
    let options = SimpleFileOptions::default().last_modified_time(zip_time(app, now));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let zip_err = |e: zip::result::ZipError| {
        tracing::error!(error = %e, "writing a subject-access ZIP failed");
        Fail::BadRequest("The export could not be written; try again.".into())
    };
    let io_err = |e: std::io::Error| zip_err(e.into());
    let mut counts = Counts::default();
    let (mut alerts, mut reports_out) = (Vec::new(), Vec::new());
    for a in rows {
        if a.source == reports::SOURCE {
            counts.reports += 1;
            reports_out.push(report_json(app, a));
            continue;
        }
        counts.alerts += 1;
        let mut capture = None;
        if a.has_capture {
            if capture_withheld(a) {
                counts.withheld_captures += 1;
            } else {
                let bytes = alert::capture_bytes(app, conn, a)?;
                let name = capture_name(a);
                zip.start_file(
                    &name,
                    options.compression_method(zip::CompressionMethod::Stored),
                )
                .map_err(zip_err)?;
                zip.write_all(&bytes).map_err(io_err)?;
                counts.captures += 1;
                capture = Some(name);
            }
        }
        alerts.push(alert_json(app, a, capture.as_deref()));
    }
    let data = serde_json::json!({
        "export": "Tutela subject-access export",
        "account": account,
        "produced": app.zone.format(now),
        "produced_ms": now,
        "alerts": alerts,
        "reports": reports_out,
        "notice_acknowledgements": acks.iter().map(|k| serde_json::json!({
            "time": app.zone.format(k.time_ms),
            "time_ms": k.time_ms,
            "station": k.station,
            "group": k.group,
            "version": k.version,
        })).collect::<Vec<_>>(),
        "withheld": WITHHELD.iter().map(|(what, why)| serde_json::json!({"what": what, "why": why})).collect::<Vec<_>>(),
    });
    let deflated = options.compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("index.html", deflated).map_err(zip_err)?;
    zip.write_all(index_html(&data).as_bytes())
        .map_err(io_err)?;
    zip.start_file("data.json", deflated).map_err(zip_err)?;
    zip.write_all(
        serde_json::to_string_pretty(&data)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(io_err)?;
    let bytes = zip.finish().map_err(zip_err)?.into_inner();
    Ok((bytes, counts))
}

pub fn submit(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !may_export(&viewer) {
        return Err(deny(conn, &viewer, "subject access"));
    }
    let account = req.f("account").trim();
    if !auth::valid_account_name(account) {
        return Ok(with_status(
            StatusCode::BAD_REQUEST,
            html_response(form(
                &viewer,
                account,
                Some("That is not an account name: account names are 1-64 letters, digits, '.', '_', '-' or '@'. Type the account as the pupil signs in, e.g. pupil.one."),
            )),
        ));
    }
    let rows = alert::for_account(app, conn, &viewer, account)?;
    let acks = crate::notice::acks_of(conn, account)?;
    if rows.is_empty() && acks.is_empty() {
        audit::append(
            conn,
            &viewer.name,
            "subject_access_export",
            &format!("user:{account}"),
            "nothing held",
        )?;
        return Ok(with_status(
            StatusCode::NOT_FOUND,
            html_response(form(
                &viewer,
                account,
                Some(&format!("Nothing is held for the account '{account}': no alert, named report or notice acknowledgement. Check the spelling against the school's account list; nothing was exported.")),
            )),
        ));
    }
    let (bytes, counts) = build(app, conn, account, &rows, &acks)?;
    audit::append(
        conn,
        &viewer.name,
        "subject_access_export",
        &format!("user:{account}"),
        &format!(
            "{} alerts, {} reports, {} captures{}; {} captures withheld",
            counts.alerts,
            counts.reports,
            counts.captures,
            if acks.is_empty() {
                String::new()
            } else {
                format!(", {} notice acknowledgements", acks.len())
            },
            counts.withheld_captures
        ),
    )?;
    let mut r = typed_response("application/zip", bytes);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"tutela-subject-access-{account}.zip\""
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
