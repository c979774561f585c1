//! One alert: its evidence with the matched words highlighted, a re-check
//! of the agent's signature, the capture (blurred for the gravest alerts
//! until a reviewer gives a reason to reveal it), the review workflow, notes
//! and the pupil's other alerts.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use maud::{html, Markup};
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use tutela_proto::v1::EventBody;

use super::auth::{self, Viewer};
use super::html::{csrf, page as layout, select};
use super::queue::{state_label, STATES};
use super::{
    audit, deny, html_response, redirect, session, staff, typed_response, write_tx, App, Fail, Req,
};
use crate::store::now_ms;

/// A stored alert with everything the console shows.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: i64,
    pub event_id: String,
    pub agent_id: String,
    pub seq: i64,
    pub time_ms: i64,
    pub received_ms: i64,
    pub clock_skew: bool,
    pub chain_ok: bool,
    pub user: String,
    pub station: String,
    pub source: String,
    pub context: String,
    pub app: String,
    pub window_title: String,
    pub url: String,
    pub search_query: String,
    pub category: String,
    pub severity: i64,
    pub rule_id: String,
    pub term: String,
    pub matches: String,
    pub rules_version: i64,
    pub repeats: i64,
    pub has_capture: bool,
    pub state: String,
    pub repeat_of: String,
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub body_hash: Vec<u8>,
    pub assignee: String,
    pub fp_reason: String,
    /// Protocol version the signature was made under (1: over the bare
    /// body; 2: over the event domain and the body).
    pub signed_as: i64,
}

const COLUMNS: &str = "a.id, a.event_id, a.agent_id, a.seq, a.time_ms, a.received_ms, a.clock_skew, a.chain_ok,
    a.user, a.station, a.source, a.context, a.app, a.window_title, a.url, a.search_query, a.category,
    a.severity, a.rule_id, a.term, a.matches, a.rules_version, a.repeat_count, a.has_capture, a.state,
    a.repeat_of, a.body, a.signature, a.body_hash, COALESCE(r.assignee, ''), COALESCE(r.fp_reason, ''), a.signed_as";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        event_id: r.get(1)?,
        agent_id: r.get(2)?,
        seq: r.get(3)?,
        time_ms: r.get(4)?,
        received_ms: r.get(5)?,
        clock_skew: r.get(6)?,
        chain_ok: r.get(7)?,
        user: r.get(8)?,
        station: r.get(9)?,
        source: r.get(10)?,
        context: r.get(11)?,
        app: r.get(12)?,
        window_title: r.get(13)?,
        url: r.get(14)?,
        search_query: r.get(15)?,
        category: r.get(16)?,
        severity: r.get(17)?,
        rule_id: r.get(18)?,
        term: r.get(19)?,
        matches: r.get(20)?,
        rules_version: r.get(21)?,
        repeats: r.get(22)?,
        has_capture: r.get(23)?,
        state: r.get(24)?,
        repeat_of: r.get(25)?,
        body: r.get(26)?,
        signature: r.get(27)?,
        body_hash: r.get(28)?,
        assignee: r.get(29)?,
        fp_reason: r.get(30)?,
        signed_as: r.get(31)?,
    })
}

/// Loads alert `id` if it is in the viewer's scope (else `NotFound`, which
/// does not confirm that an out-of-scope alert exists). Only the reviewing
/// roles open an alert: a technician's category-only queue has no alert pages.
pub fn load(app: &App, conn: &Connection, viewer: &Viewer, id: i64) -> Result<Alert, Fail> {
    if viewer.queue != super::auth::QueueAccess::Full {
        return Err(deny(conn, viewer, &format!("alert:{id}")));
    }
    let Some((scope, mut params)) = staff::scope(conn, viewer, &app.staff_pattern)? else {
        return Err(Fail::NotFound);
    };
    params.push(Value::Integer(id));
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id WHERE {scope} AND a.id = ?"
    );
    conn.query_row(&sql, rusqlite::params_from_iter(params), from_row)
        .optional()?
        .ok_or(Fail::NotFound)
}

/// Every alert and report stored for `account` (any case) in the viewer's
/// scope, folded repeats and burst shots included, oldest first: what a
/// subject-access export holds.
pub fn for_account(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    account: &str,
) -> Result<Vec<Alert>, Fail> {
    if viewer.queue != super::auth::QueueAccess::Full {
        return Err(deny(conn, viewer, &format!("user:{account}")));
    }
    let Some((scope, mut params)) = staff::scope(conn, viewer, &app.staff_pattern)? else {
        return Ok(Vec::new());
    };
    params.push(Value::Text(account.to_owned()));
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
         WHERE {scope} AND a.user = ? COLLATE NOCASE ORDER BY a.time_ms, a.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The decrypted capture stored with `alert`, if any.
pub fn capture_bytes(app: &App, conn: &Connection, alert: &Alert) -> Result<Vec<u8>, Fail> {
    decrypt(app, conn, alert)
}

/// The alert a folded repeat or burst shot belongs to (itself otherwise).
fn parent(app: &App, conn: &Connection, viewer: &Viewer, alert: Alert) -> Result<Alert, Fail> {
    if alert.state != "folded" || alert.repeat_of.is_empty() {
        return Ok(alert);
    }
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM alerts WHERE agent_id = ?1 AND event_id = ?2 AND repeat_of = '' LIMIT 1",
            params![alert.agent_id, alert.repeat_of],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => load(app, conn, viewer, id),
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
pub fn verify(conn: &Connection, alert: &Alert) -> rusqlite::Result<(Signature, Vec<u8>)> {
    if alert.source == crate::reports::SOURCE {
        return Ok((Signature::PupilReport, Vec::new()));
    }
    let key: Option<Vec<u8>> = conn
        .query_row(
            "SELECT public_key FROM agents WHERE agent_id = ?1",
            [&alert.agent_id],
            |r| r.get(0),
        )
        .optional()?;
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

fn revealed(conn: &Connection, viewer: &Viewer, alert_id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM console_reveals WHERE session_hash = ?1 AND alert_id = ?2)",
        params![viewer.session_hash, alert_id],
        |r| r.get(0),
    )
}

/// (alerts, false positives) for a rule, counting only the alerts in the
/// viewer's scope (as the queue does).
pub fn rule_rate(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    rule_id: &str,
) -> Result<(i64, i64), Fail> {
    let Some((scope, mut params)) = staff::scope(conn, viewer, &app.staff_pattern)? else {
        return Ok((0, 0));
    };
    params.push(Value::Text(rule_id.to_owned()));
    Ok(conn.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(a.state = 'false_positive'), 0) FROM alerts a
             WHERE {scope} AND a.rule_id = ? AND a.state <> 'folded'"
        ),
        rusqlite::params_from_iter(params),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

fn percent(part: i64, whole: i64) -> String {
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

fn capture_html(conn: &Connection, viewer: &Viewer, alert: &Alert) -> Result<Markup, Fail> {
    if !viewer.role.reviews() {
        return Ok(html! { p.muted { "Captures are not shown to technicians." } });
    }
    let mut shots: Vec<i64> = Vec::new();
    if alert.has_capture {
        shots.push(alert.id);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM alerts WHERE agent_id = ?1 AND repeat_of = ?2 AND has_capture = 1 ORDER BY seq",
    )?;
    for id in stmt.query_map(params![alert.agent_id, alert.event_id], |r| r.get(0))? {
        shots.push(id?);
    }
    if shots.is_empty() {
        return Ok(html! { p.muted { "No capture with this alert." } });
    }
    let id = alert.id;
    if sensitive(alert) && !revealed(conn, viewer, id)? {
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

pub fn page(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    let alert = parent(app, conn, &viewer, alert)?;
    audit::append(
        conn,
        &viewer.name,
        "view_alert",
        &format!("alert:{}", alert.id),
        "",
    )?;
    let (signature, _) = verify(conn, &alert)?;
    let reviews = viewer.role.reviews();
    let z = &app.zone;
    let (total, fps) = rule_rate(app, conn, &viewer, &alert.rule_id)?;
    let workflow = if reviews {
        Some(workflow_html(conn, &viewer, &alert)?)
    } else {
        None
    };
    let capture = capture_html(conn, &viewer, &alert)?;
    let notes = notes_html(conn, &viewer, &alert, z)?;
    let timeline = timeline_html(app, conn, &viewer, &alert)?;
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

fn workflow_html(conn: &Connection, viewer: &Viewer, alert: &Alert) -> Result<Markup, Fail> {
    let id = alert.id;
    let staff_scope = viewer.role.sees_staff_alerts();
    let people = auth::reviewers(conn, staff_scope)?;
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
    conn: &Connection,
    viewer: &Viewer,
    alert: &Alert,
    z: &super::tz::Zone,
) -> Result<Markup, Fail> {
    if !viewer.role.reviews() {
        return Ok(html! {});
    }
    let notes = notes(conn, alert.id)?;
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

pub fn notes(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time_ms, author, text FROM console_notes WHERE alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([alert_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// (time, actor, from state, to state, reason)
pub type HistoryEntry = (i64, String, String, String, String);

pub fn history(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time_ms, actor, from_state, to_state, reason FROM console_history WHERE alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([alert_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    rows.collect()
}

fn timeline_html(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    alert: &Alert,
) -> Result<Markup, Fail> {
    // Anonymous reports have no one to group them by.
    if alert.user.is_empty() {
        return Ok(html! {});
    }
    let Some((scope, mut params)) = staff::scope(conn, viewer, &app.staff_pattern)? else {
        return Ok(html! {});
    };
    params.push(Value::Text(alert.user.clone()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.id, a.time_ms, a.category, a.severity, a.state FROM alerts a
         WHERE {scope} AND a.user = ? AND a.state <> 'folded' ORDER BY a.time_ms DESC LIMIT 50"
    ))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(html! {
        h2 { (alert.user) "'s alerts" }
        table #timeline {
            tbody {
                @for (id, time, category, severity, state) in &rows {
                    @let sev = (*severity).clamp(0, 5);
                    tr {
                        td { (app.zone.format(*time)) }
                        td { span class={ "sev sev" (sev) } { (sev) } }
                        td {
                            a href={ "/alerts/" (id) } { (category) }
                            @if *id == alert.id { " (this alert)" }
                        }
                        td { (state_label(state)) }
                    }
                }
            }
        }
    })
}

fn reviewer(conn: &Connection, req: &Req) -> Result<Viewer, Fail> {
    let viewer = session(conn, req)?;
    if !viewer.role.reviews() {
        return Err(deny(conn, &viewer, &format!("alert:{}", req.id())));
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
fn decrypt(app: &App, conn: &Connection, alert: &Alert) -> Result<Vec<u8>, Fail> {
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT sealed FROM captures WHERE alert_id = ?1",
            [alert.id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or(Fail::NotFound)?;
    app.vault.open(&alert.event_id, &sealed).map_err(|_| {
        tracing::error!(alert = alert.id, "a stored capture failed to decrypt");
        Fail::NotFound
    })
}

pub fn capture(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let shot = load(app, conn, &viewer, req.id())?;
    let alert = parent(app, conn, &viewer, shot.clone())?;
    if (sensitive(&alert) || sensitive(&shot)) && !revealed(conn, &viewer, alert.id)? {
        return Err(deny(conn, &viewer, &format!("capture:{}", shot.id)));
    }
    let bytes = decrypt(app, conn, &shot)?;
    audit::append(
        conn,
        &viewer.name,
        "view_capture",
        &format!("alert:{}", shot.id),
        "",
    )?;
    Ok(jpeg(bytes))
}

/// A 16-pixel-wide version of a capture, shown blurred: enough to see that
/// there is a screen, never enough to see what is on it.
pub fn preview(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    let bytes = decrypt(app, conn, &alert)?;
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
    audit::append(
        conn,
        &viewer.name,
        "view_capture_preview",
        &format!("alert:{}", alert.id),
        "",
    )?;
    Ok(jpeg(out))
}

pub fn reveal(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    let reason = req.f("reason").trim();
    if reason.len() < 3 {
        return Err(Fail::BadRequest(
            "Give a reason for revealing the capture.".into(),
        ));
    }
    check_reason(reason)?;
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_reveals (session_hash, alert_id, user, reason, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![viewer.session_hash, alert.id, viewer.name, reason, now_ms()],
    )?;
    audit::append(
        &tx,
        &viewer.name,
        "reveal_capture",
        &format!("alert:{}", alert.id),
        &format!("reason: {reason}"),
    )?;
    tx.commit()?;
    Ok(redirect(&format!("/alerts/{}#capture", alert.id)))
}

/// The longest reason (for a reveal or a false positive) the console takes:
/// it goes into the audit log and the state history. Details belong in a note.
pub const MAX_REASON_BYTES: usize = 1024;

/// Refuses a reason longer than [`MAX_REASON_BYTES`].
pub fn check_reason(reason: &str) -> Result<(), Fail> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(Fail::BadRequest(format!(
            "The reason is too long ({} bytes): keep it to at most {MAX_REASON_BYTES} bytes (about 1,000 letters) and put any detail in a note on the alert.",
            reason.len()
        )));
    }
    Ok(())
}

/// Moves an alert to `to`, recording history and audit; false positives
/// need a reason. Run it inside the caller's write transaction ([`write_tx`]),
/// which commits the move and its audit entry together.
pub fn transition(
    conn: &Connection,
    viewer: &Viewer,
    alert: &Alert,
    to: &str,
    reason: &str,
) -> Result<(), Fail> {
    if !next_states(&alert.state).contains(&to) {
        return Err(Fail::BadRequest(format!(
            "An alert that is {} cannot become {}.",
            state_label(&alert.state),
            state_label(to)
        )));
    }
    if to == "false_positive" && reason.trim().is_empty() {
        return Err(Fail::BadRequest("Say why this is a false positive.".into()));
    }
    check_reason(reason.trim())?;
    let now = now_ms();
    conn.execute(
        "UPDATE alerts SET state = ?2 WHERE id = ?1",
        params![alert.id, to],
    )?;
    conn.execute(
        "INSERT INTO console_review (alert_id, fp_reason, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(alert_id) DO UPDATE SET fp_reason = ?2, updated_ms = ?3",
        params![
            alert.id,
            if to == "false_positive" {
                reason.trim()
            } else {
                ""
            },
            now
        ],
    )?;
    conn.execute(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![alert.id, now, viewer.name, alert.state, to, reason.trim()],
    )?;
    audit::append(
        conn,
        &viewer.name,
        "state_change",
        &format!("alert:{}", alert.id),
        &format!(
            "{} -> {}{}",
            alert.state,
            to,
            if reason.trim().is_empty() {
                String::new()
            } else {
                format!("; reason: {}", reason.trim())
            }
        ),
    )?;
    Ok(())
}

pub fn change_state(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    if !STATES.iter().any(|(s, _)| *s == req.f("to")) {
        return Err(Fail::BadRequest("Unknown state.".into()));
    }
    let tx = write_tx(conn)?;
    transition(&tx, &viewer, &alert, req.f("to"), req.f("reason"))?;
    tx.commit()?;
    Ok(redirect(&format!("/alerts/{}", alert.id)))
}

pub fn assign(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    let who = req.f("assignee");
    if !who.is_empty()
        && !auth::reviewers(conn, viewer.role.sees_staff_alerts())?
            .iter()
            .any(|p| p == who)
    {
        return Err(Fail::BadRequest(
            "That account cannot be assigned this alert.".into(),
        ));
    }
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_review (alert_id, assignee, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(alert_id) DO UPDATE SET assignee = ?2, updated_ms = ?3",
        params![alert.id, who, now_ms()],
    )?;
    audit::append(
        &tx,
        &viewer.name,
        "assign",
        &format!("alert:{}", alert.id),
        &format!("to {}", if who.is_empty() { "nobody" } else { who }),
    )?;
    tx.commit()?;
    Ok(redirect(&format!("/alerts/{}", alert.id)))
}

pub fn add_note(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let alert = load(app, conn, &viewer, req.id())?;
    let text = req.f("text").trim();
    if text.is_empty() || text.len() > 20_000 {
        return Err(Fail::BadRequest(
            "A note needs text (at most 20,000 characters).".into(),
        ));
    }
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (?1, ?2, ?3, ?4)",
        params![alert.id, now_ms(), viewer.name, text],
    )?;
    // The note's text stays out of the audit log; its existence does not.
    audit::append(
        &tx,
        &viewer.name,
        "add_note",
        &format!("alert:{}", alert.id),
        &format!("{} characters", text.chars().count()),
    )?;
    tx.commit()?;
    Ok(redirect(&format!("/alerts/{}#notes", alert.id)))
}

pub fn bulk_false_positive(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    let reason = req.f("reason").trim();
    if reason.is_empty() {
        return Err(Fail::BadRequest(
            "Say why these are false positives.".into(),
        ));
    }
    check_reason(reason)?;
    let ids: Vec<i64> = req
        .f_all("id")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let tx = write_tx(conn)?;
    let mut closed = 0;
    for id in &ids {
        let Ok(alert) = load(app, &tx, &viewer, *id) else {
            continue;
        };
        if next_states(&alert.state).contains(&"false_positive") {
            transition(&tx, &viewer, &alert, "false_positive", reason)?;
            closed += 1;
        }
    }
    audit::append(
        &tx,
        &viewer.name,
        "bulk_false_positive",
        "queue",
        &format!(
            "{closed} of {} selected alerts; reason: {reason}",
            ids.len()
        ),
    )?;
    tx.commit()?;
    Ok(redirect("/queue"))
}

/// Each rule's alerts and false-positive rate.
pub fn rules_page(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = reviewer(conn, req)?;
    // Only the alerts in the viewer's scope, as in the queue: the head's
    // staff alerts do not show in the DSL's figures, nor pupils' in the head's.
    let (scope, params) = staff::scope(conn, &viewer, &app.staff_pattern)?
        .unwrap_or_else(|| ("0".to_owned(), Vec::new()));
    let mut stmt = conn.prepare(&format!(
        "SELECT a.rule_id, a.category, COUNT(*), COALESCE(SUM(a.state = 'false_positive'), 0) FROM alerts a
         WHERE {scope} AND a.state <> 'folded' GROUP BY a.rule_id ORDER BY 4 * 1.0 / COUNT(*) DESC, COUNT(*) DESC"
    ))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let body = html! {
        h1 { "Rules: false-positive rates" }
        p.muted { "The neutral id is what a technician's category-only queue shows for the rule." }
        table #rules {
            thead { tr {
                th { "Rule" } th { "Category" } th { "Alerts" } th { "False positives" } th { "Rate" }
                th { "Neutral id" }
            } }
            tbody {
                @for (rule, category, total, fps) in &rows {
                    tr {
                        td { (rule) } td { (category) } td { (total) } td { (fps) }
                        td { (percent(*fps, *total)) }
                        td { (super::settings::neutral_rule_id(&app.rule_key, rule)) }
                    }
                }
            }
        }
    };
    Ok(html_response(layout("Rules", Some(&viewer), body)))
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
