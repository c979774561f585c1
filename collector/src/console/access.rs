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

use std::io::Write as _;

use crate::store::console::Console;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{html, DOCTYPE};

use super::alert::{self, Alert};
use super::auth::{self, Viewer};
use super::html::{csrf, page};
use super::queue::state_label;
use super::{deny, html_response, session, typed_response, with_status, App, Fail, Req};
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

pub fn page_handler(_app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_export(&viewer) {
        return Err(deny(db, &viewer, "subject access"));
    }
    Ok(html_response(form(&viewer, "", None)))
}

fn form(viewer: &Viewer, account: &str, error: Option<&str>) -> String {
    let body = html! {
        h1 { "Subject-access export" }
        p {
            "Everything held about one pupil account: alerts with their context and captures, and the reports the pupil signed with that name, as a ZIP with a readable index and the same data as JSON. The export is recorded in the audit log."
        }
        @if let Some(e) = error { p.error #access-error { (e) } }
        form method="post" action="/subject-access" id="access-form" class="panel" {
            (csrf(viewer)) "\n"
            label { "Account" input type="text" name="account" value=(account) required; }
            " " button type="submit" { "Export" }
        }
        "\n"
        h2 { "Withheld by default" }
        ul { @for (what, why) in WITHHELD { li { b { (what) } ": " (why) } } }
    };
    page("Subject access", Some(viewer), body)
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
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let list = |key: &str| data[key].as_array().map(Vec::as_slice).unwrap_or_default();
    let (alerts, reports, acks) = (
        list("alerts"),
        list("reports"),
        list("notice_acknowledgements"),
    );
    let page = html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                title { "Data held about " (s(&data["account"])) } "\n"
                style {
                    "body{font:14px/1.45 sans-serif;max-width:960px;margin:20px auto;padding:0 12px}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}"
                }
            }
            body {
                "\n"
                h1 { "Data held by Tutela about the account " (s(&data["account"])) } "\n"
                p {
                    "Produced " (s(&data["produced"]))
                    " by the school's safeguarding team. Tutela is the school's safeguarding monitor: it keeps what was on screen or typed when it matched words that may mean someone is at risk, and the concerns a pupil reported. The same data is in "
                    code { "data.json" } "; pictures of the screen are in the " code { "captures" } " folder."
                }
                "\n"
                h2 { "Alerts (" (alerts.len()) ")" }
                table {
                    tr {
                        th { "Time" } th { "Station" } th { "Kind" } th { "Where" } th { "Words" } th { "State" }
                        th { "Capture" }
                    }
                    @for a in alerts {
                        tr {
                            td { (s(&a["time"])) } td { (s(&a["station"])) }
                            td { (s(&a["category"])) " (severity " (a["severity"].to_string()) ")" }
                            td {
                                (s(&a["app"])) " " (s(&a["window_title"])) " " (s(&a["url"])) " "
                                (s(&a["search_query"]))
                            }
                            td { (s(&a["context"])) }
                            td { (state_label(a["state"].as_str().unwrap_or(""))) }
                            td {
                                @if let Some(path) = a["capture"].as_str() {
                                    a href=(path) { (path) }
                                } @else if a["capture_withheld"] == true {
                                    "withheld (see below)"
                                }
                            }
                        }
                    }
                }
                h2 { "Reports of a concern (" (reports.len()) ")" }
                table {
                    tr { th { "Time" } th { "About" } th { "Help now" } th { "Words" } th { "State" } }
                    @for r in reports {
                        tr {
                            td { (s(&r["time"])) } td { (s(&r["category"])) }
                            td { (if r["help_now"] == true { "yes" } else { "no" }) }
                            td { (s(&r["text"])) }
                            td { (state_label(r["state"].as_str().unwrap_or(""))) }
                        }
                    }
                }
                h2 { "Monitoring notice acknowledged (" (acks.len()) ")" }
                table {
                    tr { th { "Time" } th { "Station" } th { "Group" } th { "Version" } }
                    @for k in acks {
                        tr {
                            td { (s(&k["time"])) } td { (s(&k["station"])) } td { (s(&k["group"])) }
                            td { (k["version"].to_string()) }
                        }
                    }
                }
                h2 { "Withheld" }
                ul {
                    @for w in data["withheld"].as_array().into_iter().flatten() {
                        li { b { (s(&w["what"])) } ": " (s(&w["why"])) }
                    }
                }
                p { "Anonymous reports cannot be linked to anyone and so are not in any export." }
            }
        }
    };
    page.into_string()
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
    db: &Console<'_>,
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
                let bytes = alert::capture_bytes(app, db, a)?;
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

pub fn submit(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !may_export(&viewer) {
        return Err(deny(db, &viewer, "subject access"));
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
    let rows = alert::for_account(app, db, &viewer, account)?;
    let acks = super::wait(app.shared.acks_of(&viewer.school, account))?;
    if rows.is_empty() && acks.is_empty() {
        db.audit(
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
    let (bytes, counts) = build(app, db, account, &rows, &acks)?;
    db.audit(
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
