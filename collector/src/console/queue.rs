//! The review queue: open alerts by severity then time, with
//! filters, search, counts per state and pages of 50. Folded repeats and
//! burst shots are shown within their alert, never as rows of their own.
//!
//! Pages are keyset pages: the next and previous links carry the position
//! (severity, time, id) of the last or first row shown, so a deep page costs
//! an index seek rather than walking past every earlier row.

use axum::response::Response;
use maud::{html, Markup};

use super::auth::{QueueAccess, Viewer};
use super::html::{csrf, page as layout, select, url_value};
use super::{html_response, is_poll, redirect, session, staff, typed_response, App, Fail, Req};
use crate::store::console::Console;
use crate::store::review::{AlertFilter, StateFilter, Walk};
use crate::store::StoreError;

pub use crate::store::review::{Cursor, QueueRow as Row, STATES};

pub const PAGE_SIZE: i64 = 50;

pub const CATEGORIES: [&str; 12] = [
    "suicide",
    "self-harm",
    "bullying",
    "child-exploitation",
    "discrimination",
    "drugs",
    "extremism",
    "gambling",
    "pornography",
    "violence",
    "weapons",
    "illegal",
];

pub fn state_label(state: &str) -> &str {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, l)| *l)
        .unwrap_or(state)
}

/// The queue's filters, from the query string.
#[derive(Debug, Clone, Default)]
pub struct QueueQuery {
    pub category: String,
    /// Minimum severity, 0 for any.
    pub severity: i64,
    /// `open` (default), `all`, or one state.
    pub state: String,
    pub pupil: String,
    pub station: String,
    pub from: String,
    pub to: String,
    pub search: String,
    /// Show the page after this position (the "Next" link).
    pub after: Option<Cursor>,
    /// Show the page before this position (the "Previous" link).
    pub before: Option<Cursor>,
}

/// A cursor is written `severity.time_ms.id` in links.
impl Cursor {
    /// Reads `severity.time_ms.id`; `None` for anything else (the first page
    /// is shown instead).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let cursor = Self {
            severity: parts.next()?.parse().ok()?,
            time_ms: parts.next()?.parse().ok()?,
            id: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }

    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.severity, self.time_ms, self.id)
    }

    fn of(row: &Row) -> Self {
        Self {
            severity: row.severity,
            time_ms: row.time_ms,
            id: row.id,
        }
    }
}

impl QueueQuery {
    pub fn from_req(req: &Req) -> Self {
        Self {
            category: req.q("category").to_owned(),
            severity: req.q("severity").parse().unwrap_or(0),
            state: match req.q("state") {
                "" => "open".to_owned(),
                s => s.to_owned(),
            },
            pupil: req.q("pupil").trim().to_owned(),
            station: req.q("station").trim().to_owned(),
            from: req.q("from").to_owned(),
            to: req.q("to").to_owned(),
            search: req.q("q").trim().to_owned(),
            after: Cursor::parse(req.q("after")),
            before: Cursor::parse(req.q("before")),
        }
    }

    /// The query string for these filters, without the page position.
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("category", self.category.as_str()),
            ("state", self.state.as_str()),
            ("pupil", self.pupil.as_str()),
            ("station", self.station.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("q", self.search.as_str()),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", url_value(v)));
            }
        }
        if self.severity > 0 {
            parts.push(format!("severity={}", self.severity));
        }
        parts.join("&")
    }
}

/// What the store is asked for: the viewer's scope and `q`'s filters;
/// `None` for a state that does not exist.
pub fn filter(app: &App, viewer: &Viewer, q: &QueueQuery) -> Option<AlertFilter> {
    // A category-only queue takes no filter on who or where: a technician
    // must not learn whether a named pupil or station has alerts.
    let full = viewer.queue == QueueAccess::Full;
    let only_full = |text: &str| if full { text.to_owned() } else { String::new() };
    Some(AlertFilter {
        scope: staff::of(viewer, &app.staff_pattern),
        category: q.category.clone(),
        min_severity: q.severity,
        pupil: only_full(&q.pupil),
        station: only_full(&q.station),
        from_ms: app.zone.midnight_ms(&q.from),
        before_ms: app.zone.day_end_ms(&q.to),
        search: only_full(&q.search),
        state: StateFilter::parse(&q.state)?,
    })
}

/// Rows matching `q` in the viewer's scope, by severity then time: `limit`
/// rows from `offset`, after `q.after` when it is set.
pub fn rows(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    q: &QueueQuery,
    offset: i64,
    limit: i64,
) -> Result<Vec<Row>, Fail> {
    let keyset = q.after.map(|c| (c, Walk::Forward));
    select_rows(app, db, viewer, q, keyset, offset, limit)
}

fn select_rows(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    q: &QueueQuery,
    keyset: Option<(Cursor, Walk)>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Row>, Fail> {
    let f = filter(app, viewer, q).ok_or_else(|| Fail::BadRequest("unknown state".into()))?;
    Ok(db.queue_rows(&f, keyset, offset, limit)?)
}

/// One page of the queue for `q`, and whether pages exist before and after it.
#[derive(Debug, Clone)]
pub struct QueuePage {
    pub rows: Vec<Row>,
    pub previous: Option<Cursor>,
    pub next: Option<Cursor>,
}

/// The page `q` asks for: the first page, the page after `q.after` or the
/// page before `q.before`.
pub fn page_rows(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    q: &QueueQuery,
) -> Result<QueuePage, Fail> {
    let size = PAGE_SIZE as usize;
    if let Some(cursor) = q.before {
        let mut rows = select_rows(
            app,
            db,
            viewer,
            q,
            Some((cursor, Walk::Backward)),
            0,
            PAGE_SIZE + 1,
        )?;
        if rows.len() > size {
            rows.truncate(size);
            rows.reverse();
            return Ok(QueuePage {
                previous: rows.first().map(Cursor::of),
                next: rows.last().map(Cursor::of),
                rows,
            });
        }
        // Back at the start: show a full first page.
    }
    let after = q.before.is_none().then_some(q.after).flatten();
    let mut rows = select_rows(
        app,
        db,
        viewer,
        q,
        after.map(|c| (c, Walk::Forward)),
        0,
        PAGE_SIZE + 1,
    )?;
    let more = rows.len() > size;
    rows.truncate(size);
    Ok(QueuePage {
        // An empty page after a cursor (its rows closed meanwhile) still
        // leads back to the rows above it.
        previous: after.map(|c| rows.first().map(Cursor::of).unwrap_or(c)),
        next: if more {
            rows.last().map(Cursor::of)
        } else {
            None
        },
        rows,
    })
}

/// Alerts per state for the filters other than state.
pub fn counts(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    q: &QueueQuery,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut q = q.clone();
    q.state = "all".to_owned();
    match filter(app, viewer, &q) {
        Some(f) => db.state_counts(&f),
        None => Ok(Vec::new()),
    }
}

fn counts_html(counts: &[(String, i64)], q: &QueueQuery) -> Markup {
    let mut base = q.clone();
    let open: i64 = counts
        .iter()
        .filter(|(s, _)| crate::store::review::OPEN_STATES.contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    let all: i64 = counts.iter().map(|(_, n)| n).sum();
    let links: Vec<(&str, &str, i64, String)> = std::iter::once(("open", "Open", open))
        .chain(STATES.iter().map(|(s, l)| {
            (
                *s,
                *l,
                counts
                    .iter()
                    .find(|(k, _)| k == s)
                    .map(|(_, n)| *n)
                    .unwrap_or(0),
            )
        }))
        .chain(std::iter::once(("all", "All", all)))
        .map(|(state, label, n)| {
            base.state = state.to_owned();
            (state, label, n, base.query_string())
        })
        .collect();
    html! {
        @for (state, label, n, query) in &links {
            a href={ "/queue?" (query) } data-state=(state)
                aria-current=[(q.state == *state).then_some("true")] {
                (label) " " b { (n) }
            }
        }
    }
}

/// A technician's category-only rows: no pupil, station, source, words,
/// assignee or link to the alert; the rule as a neutral id.
fn category_rows_html(app: &App, rows: &[Row]) -> Markup {
    html! {
        @for r in rows {
            @let sev = r.severity.clamp(0, 5);
            tr data-id=(r.id) {
                td { span class={ "sev sev" (sev) } { (sev) } }
                td { (r.category) }
                td { (app.zone_of(&r.school).format(r.time_ms)) }
                td { (super::settings::neutral_rule_id(&app.rule_key, &r.rule_id)) }
                td { span.state { (state_label(&r.state)) } }
            }
        }
        @if rows.is_empty() {
            tr { td colspan="5" class="muted" { "No alerts match." } }
        }
    }
}

fn rows_html(app: &App, viewer: &Viewer, rows: &[Row]) -> Markup {
    if viewer.queue != QueueAccess::Full {
        return category_rows_html(app, rows);
    }
    let reviews = viewer.role.reviews();
    html! {
        @for r in rows {
            @let sev = r.severity.clamp(0, 5);
            tr data-id=(r.id) {
                @if reviews {
                    td {
                        input type="checkbox" name="id" value=(r.id) form="bulk"
                            aria-label={ "select alert " (r.id) };
                    }
                }
                td { span class={ "sev sev" (sev) } { (sev) } }
                td {
                    a.open href={ "/alerts/" (r.id) } { (r.category) }
                    @if r.has_capture { " " span.tag { "capture" } }
                    @if r.repeats > 1 { " \u{d7}" (r.repeats) }
                }
                td { (app.zone_of(&r.school).format(r.time_ms)) }
                td { @if r.user.is_empty() { span.muted { "anonymous" } } @else { (r.user) } }
                td { (r.station) }
                td {
                    @if r.source == crate::reports::SOURCE {
                        span.tag.report { "pupil report" }
                    } @else {
                        (r.source)
                    }
                }
                td { (r.rule_id) br; span.muted { @if reviews { (r.term) } } }
                td.ctx { @if reviews { (r.context) } @else { span.muted { "withheld" } } }
                td { span.state { (state_label(&r.state)) } }
                td { (r.assignee) }
            }
        }
        @if rows.is_empty() {
            tr { td colspan="11" class="muted" { "No alerts match." } }
        }
    }
}

/// Renders the queue page for `viewer` (or, for `fragment`, the JSON the
/// page polls for new alerts).
pub fn render(
    app: &App,
    db: &Console<'_>,
    viewer: &Viewer,
    q: &QueueQuery,
    fragment: bool,
) -> Result<Response, Fail> {
    if !viewer.queue.any() {
        return Err(Fail::Forbidden);
    }
    let full = viewer.queue == QueueAccess::Full;
    let QueuePage {
        rows,
        previous,
        next,
    } = page_rows(app, db, viewer, q)?;
    let rows = &rows[..];
    let counts = counts_html(&counts(app, db, viewer, q)?, q);
    let max = db.max_alert_id(&viewer.school)?;
    let rows_html = rows_html(app, viewer, rows);
    let pager = pager_html(q, previous, next);
    if fragment {
        let json = serde_json::json!({
            "rows": rows_html.into_string(),
            "counts": counts.into_string(),
            "max_id": max,
            "pager": pager.into_string(),
        });
        return Ok(typed_response("application/json", json.to_string()));
    }
    let categories: Vec<(&str, &str)> = std::iter::once(("", "any"))
        .chain(CATEGORIES.iter().map(|c| (*c, *c)))
        .collect();
    let states: Vec<(&str, &str)> = [("open", "open"), ("all", "all")]
        .into_iter()
        .chain(STATES.iter().copied())
        .collect();
    let severity = q.severity.to_string();
    let severities = [
        ("0", "any"),
        ("1", "1"),
        ("2", "2"),
        ("3", "3"),
        ("4", "4"),
        ("5", "5"),
    ];
    let reviews = viewer.role.reviews();
    let body = html! {
        h1 { "Review queue" } "\n"
        form.filters method="get" action="/queue" {
            "\n"
            label { "Category" (select("category", &categories, &q.category)) }
            label { "Severity at least" (select("severity", &severities, &severity)) }
            label { "State" (select("state", &states, &q.state)) }
            "\n"
            @if full {
                label { "Pupil" input type="text" name="pupil" value=(q.pupil) size="12"; } "\n"
                label { "Station" input type="text" name="station" value=(q.station) size="12"; } "\n"
            }
            label { "From" input type="date" name="from" value=(q.from); }
            label { "To" input type="date" name="to" value=(q.to); }
            "\n"
            @if full {
                label { "Search" input type="search" name="q" value=(q.search) size="16"; } "\n"
            }
            button type="submit" { "Filter" } " " a href="/queue" { "Clear" }
            @if reviews {
                " " a href={ "/queue.csv?" (q.query_string()) } id="export-csv" { "Export CSV" }
            }
        }
        "\n"
        p.counts #queue-counts { (counts) }
        @if !full {
            p.muted #category-only {
                "A category-only queue: who, where and what was written are for the safeguarding leads."
            }
        }
        table #queue {
            thead {
                tr {
                    @if full {
                        @if reviews {
                            th { input type="checkbox" id="select-all" aria-label="select all"; }
                        }
                        th { "Sev" } th { "Category" } th { "Time" } th { "Pupil" } th { "Station" }
                        th { "Source" } th { "Rule" } th { "Context" } th { "State" } th { "Assigned" }
                    } @else {
                        th { "Sev" } th { "Category" } th { "Time" } th { "Rule" } th { "State" }
                    }
                }
            }
            "\n"
            tbody #queue-rows data-max-id=(max) { (rows_html) }
        }
        p.pager #queue-pager { (pager) }
        @if reviews {
            form id="bulk" class="filters" method="post" action="/queue/bulk" {
                (csrf(viewer))
                label {
                    "False-positive reason for the selected alerts"
                    input type="text" name="reason" size="40" required;
                }
                button type="submit" { "Close selected as false positives" }
            }
        }
    };
    Ok(html_response(layout("Queue", Some(viewer), body)))
}

/// The Previous and Next links, keeping the filters.
fn pager_html(q: &QueueQuery, previous: Option<Cursor>, next: Option<Cursor>) -> Markup {
    let qs = q.query_string();
    let sep = if qs.is_empty() { "" } else { "&" };
    html! {
        @if let Some(cursor) = previous {
            a href={ "/queue?" (qs) (sep) "before=" (cursor.encode()) } id="page-previous" { "\u{2190} Previous" }
        }
        @if let Some(cursor) = next {
            a href={ "/queue?" (qs) (sep) "after=" (cursor.encode()) } id="page-next" { "Next \u{2192}" }
        }
    }
}

pub fn page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !viewer.queue.any() {
        if viewer.role.audits() {
            return Ok(redirect("/audit"));
        }
        if viewer.role.sees_fleet() && !is_poll(req) {
            return Ok(redirect("/fleet"));
        }
    }
    let mut q = QueueQuery::from_req(req);
    if viewer.queue != QueueAccess::Full {
        // Not answered, and not echoed back in the page's links either.
        q.pupil.clear();
        q.station.clear();
        q.search.clear();
    }
    render(app, db, &viewer, &q, req.q("fragment") == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::auth::{add_user, login, viewer, Login, Role};
    use rusqlite::params;

    #[test]
    fn cursors_read_back_and_refuse_other_text() {
        let c = Cursor {
            severity: 4,
            time_ms: -12,
            id: 99,
        };
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        for bad in ["", "4.5", "4.5.6.7", "a.b.c", "4.5.x", "4..6"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }

    /// Walks every page by the Next links and back by the Previous links, with
    /// ties in severity and time so that only the id orders some rows.
    #[test]
    // Without the `postgres` feature the store has one backend.
    #[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
    fn keyset_pages_cover_the_queue_once_in_order_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        crate::secrets::create_missing(dir.path(), &[]).unwrap();
        let app = App::open(dir.path(), &crate::config::Console::default()).unwrap();
        let crate::store::console::ConsoleStore::Sqlite(shared) = &app.store else {
            panic!("the test opens SQLite")
        };
        let conn = shared.lock().unwrap();
        let db = Console::Sqlite(&conn);
        for i in 0..173_i64 {
            conn.execute(
                "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                    context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                    term, matches, rules_version, state, repeat_of, body, signature, body_hash)
                 VALUES (?1, 'ag-1', ?2, ?3, ?3, 'pupil.one', 'LAB1-PC01', 'typed', 'context', 'app', '',
                    'title', '', '', 'bullying', ?4, 'bullying/r', 'term', '[]', 1, ?5, '', x'00', x'00', x'00')",
                params![
                    format!("{i:032x}"),
                    i + 1,
                    1_700_000_000_000_i64 + (i / 4) * 1000,
                    1 + i % 3,
                    if i % 7 == 0 { "closed" } else { "new" },
                ],
            )
            .unwrap();
        }
        add_user(&db, "dsl", Role::Dsl, "a long test password").unwrap();
        let Login::Ok(token) =
            login(&db, "dsl", "a long test password", [127, 0, 0, 1].into()).unwrap()
        else {
            panic!("login")
        };
        let viewer = viewer(&db, Some(&token)).unwrap();
        let expected: Vec<i64> = conn
            .prepare(
                "SELECT id FROM alerts WHERE state IN ('new','in_review','escalated','actioned')
                 ORDER BY severity DESC, time_ms DESC, id DESC",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(expected.len(), 148);

        let mut q = QueueQuery {
            state: "open".into(),
            ..Default::default()
        };
        let mut forward = Vec::new();
        let mut pages = Vec::new();
        loop {
            let page = page_rows(&app, &db, &viewer, &q).unwrap();
            assert_eq!(page.previous.is_some(), !pages.is_empty());
            forward.extend(page.rows.iter().map(|r| r.id));
            pages.push(page.rows.iter().map(|r| r.id).collect::<Vec<_>>());
            match page.next {
                Some(next) => {
                    q.after = Some(next);
                    q.before = None;
                }
                None => break,
            }
        }
        assert_eq!(forward, expected);
        assert_eq!(pages.len(), 3);

        // Back from the last page: the same pages, in reverse.
        let last = page_rows(&app, &db, &viewer, &q).unwrap();
        let mut previous = last.previous;
        let mut back = vec![last.rows.iter().map(|r| r.id).collect::<Vec<_>>()];
        while let Some(cursor) = previous {
            let page = page_rows(
                &app,
                &db,
                &viewer,
                &QueueQuery {
                    after: None,
                    before: Some(cursor),
                    ..q.clone()
                },
            )
            .unwrap();
            previous = page.previous;
            back.push(page.rows.iter().map(|r| r.id).collect());
        }
        back.reverse();
        assert_eq!(back, pages);
    }
}
