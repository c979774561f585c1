//! One alert: its evidence with the matched words highlighted, a re-check
//! of the agent's signature, the capture (blurred for the gravest alerts
//! until a reviewer gives a reason to reveal it), the review workflow, notes
//! and the pupil's other alerts.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use maud::{html, Markup};
use prost::Message;
use tutela_proto::v1::EventBody;

use super::auth::{self, Viewer};
use super::html::{csrf, page as layout, select};
use super::queue::state_label;
use super::{deny, html_response, redirect, session, staff, typed_response, App, Fail, Req};
use crate::store::console::Console;
use crate::store::now_ms;
use crate::store::StoreError;

pub use super::review::{
    add_note, assign, bulk_false_positive, change_state, check_reason, rules_page, transition,
    MAX_REASON_BYTES,
};
pub use crate::store::review::{Alert, HistoryEntry};

/// Loads alert `id` if it is in the viewer's scope (else `NotFound`, which
/// does not confirm that an out-of-scope alert exists). Only the reviewing
/// roles open an alert: a technician's category-only queue has no alert pages.
pub fn load(app: &App, db: &Console<'_>, viewer: &Viewer, id: i64) -> Result<Alert, Fail> {
    if viewer.queue != super::auth::QueueAccess::Full {
        return Err(deny(db, viewer, &format!("alert:{id}")));
    }
    db.alert(&staff::of(viewer, &app.staff_pattern), id)?
        .ok_or(Fail::NotFound)
}

/// Every alert and report stored for `account` (any case) in the viewer's
/// scope, folded repeats and burst shots included, oldest first: what a
/// subject-access export holds.
pub fn for_account(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    account: &str,
) -> Result<Vec<Alert>, Fail> {
    if viewer.queue != super::auth::QueueAccess::Full {
        return Err(deny(db, viewer, &format!("user:{account}")));
    }
    Ok(db.alerts_of(&staff::of(viewer, &app.staff_pattern), account)?)
}

/// The decrypted capture stored with `alert`, if any.
pub fn capture_bytes(app: &App, db: &Console<'_>, alert: &Alert) -> Result<Vec<u8>, Fail> {
    decrypt(app, db, alert)
}

/// The alert a folded repeat or burst shot belongs to (itself otherwise).
fn parent(app: &App, db: &Console<'_>, viewer: &Viewer, alert: Alert) -> Result<Alert, Fail> {
    if alert.state != "folded" || alert.repeat_of.is_empty() {
        return Ok(alert);
    }
    match db.original_alert_id(&alert.agent_id, &alert.repeat_of)? {
        Some(id) => load(app, db, viewer, id),
        None => Ok(alert),
    }
}

/// Captures of the gravest alerts are blurred until revealed with a reason.
pub fn sensitive(alert: &Alert) -> bool {
    alert.severity >= 5
        || alert.category == "illegal"
        || alert.matches.contains("\"category\":\"illegal\"")
}

/// The result of re-checking an alert's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Verified,
    Failed(String),
    /// A pupil's report from the report page: no agent signed it.
    PupilReport,
}

/// The bytes the agent signed for `alert`: the event domain and the body
/// (protocol 2), or the bare body for events stored under protocol 1.
pub fn signed_bytes(alert: &Alert) -> Vec<u8> {
    if alert.signed_as >= 2 {
        tutela_proto::event_message(&alert.body)
    } else {
        alert.body.clone()
    }
}

/// Re-verifies the stored body and signature with the agent's enrolled key,
/// and that the shown fields are the signed ones.
pub fn verify(db: &Console<'_>, alert: &Alert) -> Result<(Signature, Vec<u8>), StoreError> {
    if alert.source == crate::reports::SOURCE {
        return Ok((Signature::PupilReport, Vec::new()));
    }
    let key = db.agent_public_key(&alert.agent_id)?;
    let Some(key) = key else {
        return Ok((
            Signature::Failed("the agent is not enrolled".into()),
            Vec::new(),
        ));
    };
    // The same rules as ingest (crate::signature), so what was accepted
    // there verifies here.
    let message = signed_bytes(alert);
    let checked = crate::signature::PublicKey::parse(&key)
        .map(|k| crate::signature::verify(&k, &message, &alert.signature));
    let outcome = if let Err(e) = checked {
        Signature::Failed(format!("the agent's enrolled key cannot be used: {e}"))
    } else if checked == Ok(false) {
        Signature::Failed("the signature does not verify with the agent's key".into())
    } else if ring::digest::digest(&ring::digest::SHA256, &alert.body).as_ref()
        != alert.body_hash.as_slice()
    {
        Signature::Failed("the stored body hash does not match the body".into())
    } else {
        match EventBody::decode(alert.body.as_slice()) {
            Err(_) => Signature::Failed("the signed body does not decode".into()),
            Ok(body) => {
                let obs = body.observation.unwrap_or_default();
                if body.event_id != alert.event_id
                    || body.agent_id != alert.agent_id
                    || body.seq as i64 != alert.seq
                    || body.time_ms != alert.time_ms
                    || body.user != alert.user
                    || body.station != alert.station
                    || obs.context != alert.context
                    || obs.window_title != alert.window_title
                    || obs.url != alert.url
                    || obs.search_query != alert.search_query
                {
                    Signature::Failed("the stored fields differ from the signed ones".into())
                } else {
                    Signature::Verified
                }
            }
        }
    };
    Ok((outcome, key))
}

/// The context with the matched byte spans wrapped in `<mark>`, escaped.
pub fn highlight(context: &str, matches_json: &str) -> Markup {
    let mut spans: Vec<(usize, usize)> =
        serde_json::from_str::<Vec<serde_json::Value>>(matches_json)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| {
                let start = m.get("start")?.as_u64()? as usize;
                let end = m.get("end")?.as_u64()? as usize;
                (start < end
                    && end <= context.len()
                    && context.is_char_boundary(start)
                    && context.is_char_boundary(end))
                .then_some((start, end))
            })
            .collect();
    spans.sort_unstable();
    let mut pieces = Vec::with_capacity(spans.len() * 2 + 1);
    let mut pos = 0;
    for (start, end) in spans {
        let start = start.max(pos);
        if start >= end {
            continue;
        }
        pieces.push((&context[pos..start], false));
        pieces.push((&context[start..end], true));
        pos = end;
    }
    pieces.push((&context[pos..], false));
    html! {
        @for (text, matched) in pieces {
            @if matched { mark { (text) } } @else { (text) }
        }
    }
}

fn revealed(db: &Console<'_>, viewer: &Viewer, alert_id: i64) -> Result<bool, StoreError> {
    db.revealed(&viewer.session_hash, alert_id)
}

/// (alerts, false positives) for a rule, counting only the alerts in the
/// viewer's scope (as the queue does).
pub fn rule_rate(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    rule_id: &str,
) -> Result<(i64, i64), Fail> {
    Ok(db.rule_rate(&staff::of(viewer, &app.staff_pattern), rule_id)?)
}

pub(super) fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Transitions the workflow allows from each state.
pub fn next_states(state: &str) -> &'static [&'static str] {
    match state {
        "new" => &["in_review", "false_positive"],
        "in_review" => &["escalated", "actioned", "closed", "false_positive"],
        "escalated" => &["actioned", "closed"],
        "actioned" => &["closed"],
        "closed" | "false_positive" => &["in_review"],
        _ => &[],
    }
}

fn capture_html(db: &Console<'_>, viewer: &Viewer, alert: &Alert) -> Result<Markup, Fail> {
    if !viewer.role.reviews() {
        return Ok(html! { p.muted { "Captures are not shown to technicians." } });
    }
    let mut shots: Vec<i64> = Vec::new();
    if alert.has_capture {
        shots.push(alert.id);
    }
    shots.extend(db.burst_shots(&alert.agent_id, &alert.event_id)?);
    if shots.is_empty() {
        return Ok(html! { p.muted { "No capture with this alert." } });
    }
    let id = alert.id;
    if sensitive(alert) && !revealed(db, viewer, id)? {
        return Ok(html! {
            div.veil {
                img.blurred #capture-blurred src={ "/alerts/" (id) "/preview.jpg" } alt="capture, blurred";
            }
            "\n"
            form method="post" action={ "/alerts/" (id) "/reveal" } id="reveal-form" {
                (csrf(viewer))
                p {
                    "This capture may show harmful or illegal material and is blurred. Reveal it only if you need to see it; your reason is logged."
                }
                "\n"
                label {
                    "Reason for revealing" br;
                    textarea name="reason" rows="2" cols="60" required {}
                }
                br;
                button type="submit" { "Reveal capture" }
            }
        });
    }
    Ok(html! {
        @for (n, id) in shots.iter().enumerate() {
            p {
                img id=[(n == 0).then_some("capture")] src={ "/alerts/" (id) "/capture.jpg" }
                    alt={ "capture " (n + 1) };
            }
        }
    })
}

pub fn page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    let alert = parent(app, db, &viewer, alert)?;
    db.audit(
        &viewer.name,
        "view_alert",
        &format!("alert:{}", alert.id),
        "",
    )?;
    let (signature, _) = verify(db, &alert)?;
    let reviews = viewer.role.reviews();
    // Its school's zone: an account over several schools sees each
    // school's alerts in that school's time.
    let z = app.zone_of(&alert.school);
    let (total, fps) = rule_rate(app, db, &viewer, &alert.rule_id)?;
    let workflow = if reviews {
        Some(workflow_html(db, &viewer, &alert)?)
    } else {
        None
    };
    let capture = capture_html(db, &viewer, &alert)?;
    let notes = notes_html(db, &viewer, &alert, z)?;
    let timeline = timeline_html(app, db, &viewer, &alert)?;
    let hidden = html! { span.muted { "withheld" } };
    let shown = |text: &str| {
        if reviews {
            html! { (text) }
        } else {
            hidden.clone()
        }
    };
    let sev = alert.severity.clamp(0, 5);
    let body = html! {
        h1 {
            span class={ "sev sev" (sev) } { (sev) } " " (alert.category) " \u{b7} "
            span.state #alert-state { (state_label(&alert.state)) }
        }
        p {
            @match &signature {
                Signature::Verified => span.verified #signature { "\u{2713} Signature verified" },
                Signature::Failed(why) => span.unverified #signature {
                    "\u{2717} Signature NOT verified: " (why)
                },
                Signature::PupilReport => span.report #signature {
                    "Pupil report from the 'Report a concern' page: written by a pupil, not an agent's event, so not signed"
                },
            }
            @if !alert.chain_ok { " " span.unverified { "hash chain broken before this event" } }
            @if alert.clock_skew { " " span.muted { "agent clock skewed" } }
        }
        div.grid {
            div {
                dl.facts {
                    "\n" dt { "Pupil" }
                    dd #alert-user {
                        @if alert.user.is_empty() {
                            span.muted { "anonymous" }
                        } @else {
                            a href={ "/queue?state=all&pupil=" (super::html::url_value(&alert.user)) } { (alert.user) }
                        }
                    }
                    "\n" dt { "Station" } dd { (alert.station) }
                    "\n" dt { "Time" } dd #alert-time { (z.format(alert.time_ms)) }
                    "\n" dt { "Received" } dd { (z.format(alert.received_ms)) }
                    "\n" dt { "Source" } dd { (alert.source) }
                    "\n" dt { "App" } dd { (alert.app) }
                    "\n" dt { "Window title" } dd { (shown(&alert.window_title)) }
                    "\n" dt { "URL" } dd { (shown(&alert.url)) }
                    "\n" dt { "Search query" } dd { (shown(&alert.search_query)) }
                    "\n" dt { "Rule" }
                    dd {
                        (alert.rule_id) " (term " (shown(&alert.term)) "); " (fps) " of " (total)
                        " alerts from this rule were false positives (" (percent(fps, total)) ")"
                    }
                    "\n" dt { "Rules version" } dd { (alert.rules_version) }
                    "\n" dt { "Repeats" } dd { (alert.repeats) }
                    "\n" dt { "Assigned to" }
                    dd #alert-assignee {
                        @if alert.assignee.is_empty() { "nobody" } @else { (alert.assignee) }
                    }
                    "\n" dt { "Event" }
                    dd.muted { (alert.event_id) " \u{b7} agent " (alert.agent_id) " \u{b7} #" (alert.seq) }
                    "\n"
                }
                h2 { "Context" }
                div.context #context {
                    @if reviews { (highlight(&alert.context, &alert.matches)) } @else { (hidden) }
                }
                // The reason is the reviewers' words, like notes and history: not for technicians.
                @if reviews && !alert.fp_reason.is_empty() {
                    p { "False-positive reason: " (alert.fp_reason) }
                }
                @if let Some(workflow) = workflow { (workflow) }
            }
            div {
                h2 { "Capture" }
                div.capture { (capture) }
                (notes)
                (timeline)
            }
        }
    };
    Ok(html_response(layout(
        &format!("Alert {}", alert.id),
        Some(&viewer),
        body,
    )))
}

fn workflow_html(db: &Console<'_>, viewer: &Viewer, alert: &Alert) -> Result<Markup, Fail> {
    let id = alert.id;
    let staff_scope = viewer.role.sees_staff_alerts();
    let people = auth::reviewers(db, staff_scope, &alert.school)?;
    let options: Vec<(&str, &str)> = std::iter::once(("", "nobody"))
        .chain(people.iter().map(|p| (p.as_str(), p.as_str())))
        .collect();
    let state_action = format!("/alerts/{id}/state");
    Ok(html! {
        h2 { "Review" }
        div.panel {
            @for to in next_states(&alert.state) {
                @if *to != "false_positive" {
                    form.inline method="post" action=(state_action) {
                        (csrf(viewer))
                        input type="hidden" name="to" value=(to);
                        button type="submit" data-to=(to) {
                            @if *to == "in_review" && alert.state != "new" { "Reopen" } @else { (state_label(to)) }
                        }
                    }
                    " "
                }
            }
            @if next_states(&alert.state).contains(&"false_positive") {
                form method="post" action=(state_action) id="fp-form" {
                    (csrf(viewer))
                    input type="hidden" name="to" value="false_positive";
                    label { "Reason" input type="text" name="reason" size="36" required; }
                    " " button type="submit" class="secondary" { "Close as false positive" }
                }
            }
            form method="post" action={ "/alerts/" (id) "/assign" } {
                (csrf(viewer))
                label { "Assign to " (select("assignee", &options, &alert.assignee)) }
                " " button type="submit" class="secondary" { "Assign" }
            }
            "\n"
            p.noprint {
                a href={ "/alerts/" (id) "/record" } id="export-record" { "Incident record (print)" }
                " \u{b7} "
                a href={ "/alerts/" (id) "/record.json" } { "Incident record (JSON)" }
            }
        }
    })
}

fn notes_html(
    db: &Console<'_>,
    viewer: &Viewer,
    alert: &Alert,
    z: &super::tz::Zone,
) -> Result<Markup, Fail> {
    if !viewer.role.reviews() {
        return Ok(html! {});
    }
    let notes = db.notes(alert.id)?;
    Ok(html! {
        h2 { "Notes" }
        ul.notes #notes {
            @for (time, author, text) in &notes {
                li { b { (author) } " " span.muted { (z.format(*time)) } br; (text) }
            }
        }
        form method="post" action={ "/alerts/" (alert.id) "/note" } id="note-form" {
            (csrf(viewer))
            label for="note-text" { "Note" } br;
            textarea id="note-text" name="text" rows="3" cols="60" required {}
            br;
            button type="submit" { "Add note" }
        }
    })
}

fn timeline_html(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    alert: &Alert,
) -> Result<Markup, Fail> {
    // Anonymous reports have no one to group them by.
    if alert.user.is_empty() {
        return Ok(html! {});
    }
    let rows = db.timeline(&staff::of(viewer, &app.staff_pattern), &alert.user)?;
    Ok(html! {
        h2 { (alert.user) "'s alerts" }
        table #timeline {
            tbody {
                @for row in &rows {
                    @let sev = row.severity.clamp(0, 5);
                    tr {
                        td { (app.zone_of(&row.school).format(row.time_ms)) }
                        td { span class={ "sev sev" (sev) } { (sev) } }
                        td {
                            a href={ "/alerts/" (row.id) } { (row.category) }
                            @if row.id == alert.id { " (this alert)" }
                        }
                        td { (state_label(&row.state)) }
                    }
                }
            }
        }
    })
}

pub(super) fn reviewer(db: &Console<'_>, req: &Req) -> Result<Viewer, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.reviews() {
        return Err(deny(db, &viewer, &format!("alert:{}", req.id())));
    }
    Ok(viewer)
}

fn jpeg(bytes: Vec<u8>) -> Response {
    let mut r = typed_response("image/jpeg", bytes);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    r
}

/// The decrypted capture of an alert (or of one of its burst shots).
fn decrypt(app: &App, db: &Console<'_>, alert: &Alert) -> Result<Vec<u8>, Fail> {
    fetch(app, db, alert)?.ok_or(Fail::NotFound)
}

/// The decrypted capture of an alert; `None` when its object is missing
/// from the bucket (logged; the page says "capture missing").
fn fetch(app: &App, db: &Console<'_>, alert: &Alert) -> Result<Option<Vec<u8>>, Fail> {
    use crate::store::blob::BlobError;
    let stored = db.stored_capture(alert.id)?.ok_or(Fail::NotFound)?;
    let sealed = match app.blobs.get_blocking(stored) {
        Ok(sealed) => sealed,
        Err(BlobError::Missing(key)) => {
            tracing::error!(alert = alert.id, object = %key, "a capture's object is missing from the bucket");
            return Ok(None);
        }
        Err(e) => {
            tracing::error!(alert = alert.id, error = %e, "cannot read a capture from the bucket");
            return Err(Fail::Store(StoreError::Blob(e)));
        }
    };
    app.vault
        .open(&alert.event_id, &sealed)
        .map(Some)
        .map_err(|_| {
            tracing::error!(alert = alert.id, "a stored capture failed to decrypt");
            Fail::NotFound
        })
}

/// What the page's image shows when a capture's object is gone.
fn capture_missing() -> Response {
    super::with_status(
        axum::http::StatusCode::NOT_FOUND,
        typed_response(
            "text/plain; charset=utf-8",
            "Capture missing: its object is no longer in the capture bucket. The alert itself is intact; ask the administrator to check the bucket.",
        ),
    )
}

pub fn capture(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let shot = load(app, db, &viewer, req.id())?;
    let alert = parent(app, db, &viewer, shot.clone())?;
    if (sensitive(&alert) || sensitive(&shot)) && !revealed(db, &viewer, alert.id)? {
        return Err(deny(db, &viewer, &format!("capture:{}", shot.id)));
    }
    let Some(bytes) = fetch(app, db, &shot)? else {
        return Ok(capture_missing());
    };
    db.audit(
        &viewer.name,
        "view_capture",
        &format!("alert:{}", shot.id),
        "",
    )?;
    Ok(jpeg(bytes))
}

/// A 16-pixel-wide version of a capture, shown blurred: enough to see that
/// there is a screen, never enough to see what is on it.
pub fn preview(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    let Some(bytes) = fetch(app, db, &alert)? else {
        return Ok(capture_missing());
    };
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .map_err(|_| Fail::NotFound)?
        .to_rgb8();
    let w = 16u32;
    let h = (image.height() * w / image.width().max(1)).max(1);
    let small = image::imageops::thumbnail(&image, w, h);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60)
        .encode_image(&small)
        .map_err(|_| Fail::NotFound)?;
    // Decrypting a capture is a view of it, even when only its blurred
    // preview leaves the server.
    db.audit(
        &viewer.name,
        "view_capture_preview",
        &format!("alert:{}", alert.id),
        "",
    )?;
    Ok(jpeg(out))
}

pub fn reveal(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(db, req)?;
    let alert = load(app, db, &viewer, req.id())?;
    let reason = req.f("reason").trim();
    if reason.len() < 3 {
        return Err(Fail::BadRequest(
            "Give a reason for revealing the capture.".into(),
        ));
    }
    check_reason(reason)?;
    db.record_reveal(
        &viewer.session_hash,
        alert.id,
        &viewer.name,
        reason,
        now_ms(),
    )?;
    Ok(redirect(&format!("/alerts/{}#capture", alert.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlight_escapes_and_marks_byte_spans() {
        let ctx = "<b>I will kill him</b> café";
        let out = highlight(
            ctx,
            r#"[{"start":10,"end":14},{"start":0,"end":999},{"start":27,"end":28}]"#,
        );
        assert_eq!(
            out.into_string(),
            "&lt;b&gt;I will <mark>kill</mark> him&lt;/b&gt; café"
        );
    }

    #[test]
    fn workflow_moves_forward_and_reopens() {
        assert!(next_states("new").contains(&"in_review"));
        assert!(!next_states("new").contains(&"closed"));
        assert_eq!(next_states("false_positive"), &["in_review"]);
        assert!(next_states("folded").is_empty());
    }
}
