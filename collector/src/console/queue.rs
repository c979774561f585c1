//! Sign-in and the review queue: open alerts by severity then time, with
//! filters, search, counts per state and pages of 50. Folded repeats and
//! burst shots are shown within their alert, never as rows of their own.
//!
//! Pages are keyset pages: the next and previous links carry the position
//! (severity, time, id) of the last or first row shown, so a deep page costs
//! an index seek rather than walking past every earlier row.

use std::fmt::Write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use rusqlite::types::Value;
use rusqlite::Connection;

use super::auth::{self, Login, QueueAccess, Viewer};
use super::html::{csrf_field, esc, page as layout, select, url_value};
use super::{
    html_response, is_poll, redirect, session, staff, typed_response, with_status, App, Fail, Req,
};

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

/// Review states in workflow order, with their labels.
pub const STATES: [(&str, &str); 6] = [
    ("new", "New"),
    ("in_review", "In review"),
    ("escalated", "Escalated"),
    ("actioned", "Actioned"),
    ("closed", "Closed"),
    ("false_positive", "False positive"),
];

pub const OPEN_STATES: &str = "('new','in_review','escalated','actioned')";

pub fn state_label(state: &str) -> &str {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, l)| *l)
        .unwrap_or(state)
}

pub(super) fn cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        let _ = write!(c, "; Max-Age={age}");
    }
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static(""))
}

fn login_form(app: &App, message: Option<&str>, status: StatusCode) -> Response {
    // Login CSRF: the form's token must match a cookie set with it.
    let token = auth::fresh_token();
    let error = message
        .map(|m| format!(r#"<p class="error" id="login-error">{}</p>"#, esc(m)))
        .unwrap_or_default();
    let sso = app.sso.buttons();
    let body = format!(
        r#"<form class="login" method="post" action="/login"><h1>Sign in</h1>{error}{sso}
<input type="hidden" name="csrf" value="{token}">
<label>Account<input type="text" name="name" autocomplete="username" required autofocus></label>
<label>Password<input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
<p class="muted">Use of this console is logged.</p>
<p>Pupils: <a href="/concern" id="report-link">report a concern</a> without signing in.</p></form>"#
    );
    let mut r = with_status(status, html_response(layout("Sign in", None, &body)));
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(auth::LOGIN_COOKIE, &token, app.secure_cookies, Some(3600)),
    );
    r
}

pub fn login_page(app: &App, _conn: &Connection, _req: &Req) -> Result<Response, Fail> {
    Ok(login_form(app, None, StatusCode::OK))
}

/// The one answer to every failed sign-in, whatever the reason (unknown
/// account, wrong password, locked or disabled account), so that it does not
/// tell which accounts exist.
pub const LOGIN_REFUSED: &str = "Sign-in failed: the account name or password is wrong, or the account is locked or disabled. Check both and try again. After five failed sign-ins an account is locked for 15 minutes; if it still fails, ask whoever manages console accounts.";

pub fn login_submit(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let expected = req.cookie(auth::LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !auth::same_secret(req.f("csrf"), expected) {
        return Ok(login_form(
            app,
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        ));
    }
    let ip = req.ip();
    if app.throttle.blocked(ip) {
        return Ok(login_form(
            app,
            Some("Too many failed sign-ins from this computer. Wait a few minutes."),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    match auth::login(conn, req.f("name"), req.f("password"), ip)? {
        Login::Ok(token) => {
            let mut r = redirect("/queue");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookie(auth::SESSION_COOKIE, &token, app.secure_cookies, None),
            );
            h.append(
                header::SET_COOKIE,
                cookie(auth::LOGIN_COOKIE, "", app.secure_cookies, Some(0)),
            );
            Ok(r)
        }
        Login::Refused => {
            app.throttle.failed(ip);
            Ok(login_form(
                app,
                Some(LOGIN_REFUSED),
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

pub fn logout(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    auth::logout(conn, &viewer)?;
    let mut r = redirect("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(auth::SESSION_COOKIE, "", app.secure_cookies, Some(0)),
    );
    Ok(r)
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

/// A position in the queue's order: severity, then time, then id, all
/// descending. Written `severity.time_ms.id` in links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub severity: i64,
    pub time_ms: i64,
    pub id: i64,
}

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

/// Which way a keyset query walks from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Rows after the cursor, in queue order.
    Forward,
    /// Rows before the cursor, nearest first (reverse queue order).
    Backward,
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

/// The WHERE clause (alias `a`) for the viewer's scope and `q`, without the
/// state filter, and its parameters; `None` when nothing is in scope.
pub fn where_clause(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    q: &QueueQuery,
) -> rusqlite::Result<Option<(String, Vec<Value>)>> {
    let Some((scope, mut params)) = staff::scope(conn, viewer, &app.staff_pattern)? else {
        return Ok(None);
    };
    let mut sql = format!("a.state <> 'folded' AND {scope}");
    if !q.category.is_empty() {
        sql.push_str(" AND a.category = ?");
        params.push(Value::Text(q.category.clone()));
    }
    if q.severity > 0 {
        sql.push_str(" AND a.severity >= ?");
        params.push(Value::Integer(q.severity));
    }
    // A category-only queue takes no filter on who or where: a technician
    // must not learn whether a named pupil or station has alerts.
    let full = viewer.queue == QueueAccess::Full;
    if full && !q.pupil.is_empty() {
        sql.push_str(" AND a.user = ? COLLATE NOCASE");
        params.push(Value::Text(q.pupil.clone()));
    }
    if full && !q.station.is_empty() {
        sql.push_str(" AND a.station = ? COLLATE NOCASE");
        params.push(Value::Text(q.station.clone()));
    }
    if let Some(ms) = app.zone.midnight_ms(&q.from) {
        sql.push_str(" AND a.time_ms >= ?");
        params.push(Value::Integer(ms));
    }
    if let Some(ms) = app.zone.day_end_ms(&q.to) {
        sql.push_str(" AND a.time_ms < ?");
        params.push(Value::Integer(ms));
    }
    if full && !q.search.is_empty() {
        let like = format!(
            "%{}%",
            q.search
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let columns: &[&str] = &[
            "a.user",
            "a.station",
            "a.context",
            "a.window_title",
            "a.url",
            "a.search_query",
            "a.term",
            "a.rule_id",
        ];
        let ors: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} LIKE ? ESCAPE '\\'"))
            .collect();
        let _ = write!(sql, " AND ({})", ors.join(" OR "));
        for _ in columns {
            params.push(Value::Text(like.clone()));
        }
    }
    Ok(Some((sql, params)))
}

fn state_clause(state: &str) -> Option<String> {
    match state {
        // Unary plus: walk the risk index in queue order and stop after a page, rather than
        // collect every open alert from the per-state index and sort them.
        "open" => Some(format!(" AND +a.state IN {OPEN_STATES}")),
        "all" => Some(String::new()),
        s if STATES.iter().any(|(k, _)| *k == s) => Some(format!(" AND a.state = '{s}'")),
        _ => None,
    }
}

/// One row of the queue.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub time_ms: i64,
    pub user: String,
    pub station: String,
    pub source: String,
    pub category: String,
    pub severity: i64,
    pub rule_id: String,
    pub term: String,
    pub state: String,
    pub repeats: i64,
    pub has_capture: bool,
    pub context: String,
    pub assignee: String,
}

/// Rows matching `q` in the viewer's scope, by severity then time: `limit`
/// rows from `offset`, after `q.after` when it is set.
pub fn rows(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    q: &QueueQuery,
    offset: i64,
    limit: i64,
) -> Result<Vec<Row>, Fail> {
    let keyset = q.after.map(|c| (c, Walk::Forward));
    select_rows(app, conn, viewer, q, keyset, offset, limit)
}

fn select_rows(
    app: &App,
    conn: &Connection,
    viewer: &Viewer,
    q: &QueueQuery,
    keyset: Option<(Cursor, Walk)>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Row>, Fail> {
    let Some((mut sql, mut params)) = where_clause(app, conn, viewer, q)? else {
        return Ok(Vec::new());
    };
    let states = state_clause(&q.state).ok_or_else(|| Fail::BadRequest("unknown state".into()))?;
    sql.push_str(&states);
    // Row-value comparisons on the order's own columns: SQLite seeks the
    // risk index (severity, time_ms, then rowid) straight to the cursor.
    let order = match keyset {
        Some((cursor, walk)) => {
            sql.push_str(match walk {
                Walk::Forward => " AND (a.severity, a.time_ms, a.id) < (?, ?, ?)",
                Walk::Backward => " AND (a.severity, a.time_ms, a.id) > (?, ?, ?)",
            });
            params.push(Value::Integer(cursor.severity));
            params.push(Value::Integer(cursor.time_ms));
            params.push(Value::Integer(cursor.id));
            match walk {
                Walk::Forward => "DESC",
                Walk::Backward => "ASC",
            }
        }
        None => "DESC",
    };
    let full = format!(
        "SELECT a.id, a.time_ms, a.user, a.station, a.source, a.category, a.severity, a.rule_id, a.term,
            a.state, a.repeat_count, a.has_capture, substr(a.context, 1, 160), COALESCE(r.assignee, '')
         FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
         WHERE {sql} ORDER BY a.severity {order}, a.time_ms {order}, a.id {order} LIMIT ? OFFSET ?"
    );
    params.push(Value::Integer(limit));
    params.push(Value::Integer(offset));
    let mut stmt = conn.prepare_cached(&full)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok(Row {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            user: r.get(2)?,
            station: r.get(3)?,
            source: r.get(4)?,
            category: r.get(5)?,
            severity: r.get(6)?,
            rule_id: r.get(7)?,
            term: r.get(8)?,
            state: r.get(9)?,
            repeats: r.get(10)?,
            has_capture: r.get(11)?,
            context: r.get(12)?,
            assignee: r.get(13)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
    conn: &Connection,
    viewer: &Viewer,
    q: &QueueQuery,
) -> Result<QueuePage, Fail> {
    let size = PAGE_SIZE as usize;
    if let Some(cursor) = q.before {
        let mut rows = select_rows(
            app,
            conn,
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
        conn,
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
    conn: &Connection,
    viewer: &Viewer,
    q: &QueueQuery,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let Some((sql, params)) = where_clause(app, conn, viewer, q)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.state, COUNT(*) FROM alerts a WHERE {sql} GROUP BY a.state"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.collect()
}

fn counts_html(counts: &[(String, i64)], q: &QueueQuery) -> String {
    let mut base = q.clone();
    let mut out = String::new();
    let open: i64 = counts
        .iter()
        .filter(|(s, _)| OPEN_STATES.contains(&format!("'{s}'")))
        .map(|(_, n)| n)
        .sum();
    let all: i64 = counts.iter().map(|(_, n)| n).sum();
    for (state, label, n) in std::iter::once(("open", "Open", open))
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
    {
        base.state = state.to_owned();
        let current = if q.state == state {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<a href="/queue?{}" data-state="{state}"{current}>{label} <b>{n}</b></a>"#,
            esc(&base.query_string())
        );
    }
    out
}

/// A technician's category-only rows: no pupil, station, source, words,
/// assignee or link to the alert; the rule as a neutral id.
fn category_rows_html(app: &App, rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let _ = write!(
            out,
            r#"<tr data-id="{id}"><td><span class="sev sev{sev}">{sev}</span></td><td>{category}</td><td>{time}</td><td>{rule}</td><td><span class="state">{state}</span></td></tr>"#,
            id = r.id,
            sev = r.severity.clamp(0, 5),
            category = esc(&r.category),
            time = esc(&app.zone.format(r.time_ms)),
            rule = esc(&super::settings::neutral_rule_id(&app.rule_key, &r.rule_id)),
            state = esc(state_label(&r.state)),
        );
    }
    if rows.is_empty() {
        out.push_str(r#"<tr><td colspan="5" class="muted">No alerts match.</td></tr>"#);
    }
    out
}

fn rows_html(app: &App, viewer: &Viewer, rows: &[Row]) -> String {
    if viewer.queue != QueueAccess::Full {
        return category_rows_html(app, rows);
    }
    let mut out = String::new();
    for r in rows {
        let check = if viewer.role.reviews() {
            format!(
                r#"<td><input type="checkbox" name="id" value="{}" form="bulk" aria-label="select alert {}"></td>"#,
                r.id, r.id
            )
        } else {
            String::new()
        };
        let context = if viewer.role.reviews() {
            esc(&r.context)
        } else {
            r#"<span class="muted">withheld</span>"#.to_owned()
        };
        let extras = format!(
            "{}{}",
            if r.has_capture {
                r#" <span class="tag">capture</span>"#
            } else {
                ""
            },
            if r.repeats > 1 {
                format!(" &times;{}", r.repeats)
            } else {
                String::new()
            }
        );
        let _ = write!(
            out,
            r#"<tr data-id="{id}">{check}<td><span class="sev sev{sev}">{sev}</span></td><td><a class="open" href="/alerts/{id}">{category}</a>{extras}</td><td>{time}</td><td>{user}</td><td>{station}</td><td>{source}</td><td>{rule}<br><span class="muted">{term}</span></td><td class="ctx">{context}</td><td><span class="state">{state}</span></td><td>{assignee}</td></tr>"#,
            id = r.id,
            sev = r.severity.clamp(0, 5),
            category = esc(&r.category),
            time = esc(&app.zone.format(r.time_ms)),
            user = if r.user.is_empty() {
                r#"<span class="muted">anonymous</span>"#.to_owned()
            } else {
                esc(&r.user)
            },
            station = esc(&r.station),
            source = if r.source == crate::reports::SOURCE {
                r#"<span class="tag report">pupil report</span>"#.to_owned()
            } else {
                esc(&r.source)
            },
            rule = esc(&r.rule_id),
            term = if viewer.role.reviews() {
                esc(&r.term)
            } else {
                String::new()
            },
            state = esc(state_label(&r.state)),
            assignee = esc(&r.assignee),
        );
    }
    if rows.is_empty() {
        out.push_str(r#"<tr><td colspan="11" class="muted">No alerts match.</td></tr>"#);
    }
    out
}

fn max_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |r| r.get(0))
}

/// Renders the queue page for `viewer` (or, for `fragment`, the JSON the
/// page polls for new alerts).
pub fn render(
    app: &App,
    conn: &Connection,
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
    } = page_rows(app, conn, viewer, q)?;
    let rows = &rows[..];
    let counts = counts_html(&counts(app, conn, viewer, q)?, q);
    let max = max_id(conn)?;
    let rows_html = rows_html(app, viewer, rows);
    let pager = pager_html(q, previous, next);
    if fragment {
        let json = serde_json::json!({ "rows": rows_html, "counts": counts, "max_id": max, "pager": pager });
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
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>Review queue</h1>
<form class="filters" method="get" action="/queue">
<label>Category{cat}</label><label>Severity at least{sev}</label><label>State{state}</label>
{who}<label>From<input type="date" name="from" value="{from}"></label><label>To<input type="date" name="to" value="{to}"></label>
{search}<button type="submit">Filter</button> <a href="/queue">Clear</a>{csv}</form>
<p class="counts" id="queue-counts">{counts}</p>"#,
        cat = select("category", &categories, &q.category),
        sev = select(
            "severity",
            &[
                ("0", "any"),
                ("1", "1"),
                ("2", "2"),
                ("3", "3"),
                ("4", "4"),
                ("5", "5")
            ],
            &severity
        ),
        state = select("state", &states, &q.state),
        who = if full {
            format!(
                r#"<label>Pupil<input type="text" name="pupil" value="{}" size="12"></label>
<label>Station<input type="text" name="station" value="{}" size="12"></label>
"#,
                esc(&q.pupil),
                esc(&q.station)
            )
        } else {
            String::new()
        },
        from = esc(&q.from),
        to = esc(&q.to),
        search = if full {
            format!(
                r#"<label>Search<input type="search" name="q" value="{}" size="16"></label>
"#,
                esc(&q.search)
            )
        } else {
            String::new()
        },
        csv = if viewer.role.reviews() {
            format!(
                r#" <a href="/queue.csv?{}" id="export-csv">Export CSV</a>"#,
                esc(&q.query_string())
            )
        } else {
            String::new()
        },
    );
    let (check_head, bulk) = if viewer.role.reviews() {
        (
            r#"<th><input type="checkbox" id="select-all" aria-label="select all"></th>"#,
            format!(
                r#"<form id="bulk" class="filters" method="post" action="/queue/bulk">{}<label>False-positive reason for the selected alerts<input type="text" name="reason" size="40" required></label><button type="submit">Close selected as false positives</button></form>"#,
                csrf_field(viewer)
            ),
        )
    } else {
        ("", String::new())
    };
    let head = if full {
        format!("{check_head}<th>Sev</th><th>Category</th><th>Time</th><th>Pupil</th><th>Station</th><th>Source</th><th>Rule</th><th>Context</th><th>State</th><th>Assigned</th>")
    } else {
        "<th>Sev</th><th>Category</th><th>Time</th><th>Rule</th><th>State</th>".to_owned()
    };
    if !full {
        body.push_str(r#"<p class="muted" id="category-only">A category-only queue: who, where and what was written are for the safeguarding leads.</p>"#);
    }
    let _ = write!(
        body,
        r#"<table id="queue"><thead><tr>{head}</tr></thead>
<tbody id="queue-rows" data-max-id="{max}">{rows_html}</tbody></table><p class="pager" id="queue-pager">{pager}</p>"#
    );
    body.push_str(&bulk);
    Ok(html_response(layout("Queue", Some(viewer), &body)))
}

/// The Previous and Next links, keeping the filters.
fn pager_html(q: &QueueQuery, previous: Option<Cursor>, next: Option<Cursor>) -> String {
    let qs = q.query_string();
    let sep = if qs.is_empty() { "" } else { "&amp;" };
    let mut out = String::new();
    if let Some(cursor) = previous {
        let _ = write!(
            out,
            r#"<a href="/queue?{}{sep}before={}" id="page-previous">&larr; Previous</a>"#,
            esc(&qs),
            cursor.encode()
        );
    }
    if let Some(cursor) = next {
        let _ = write!(
            out,
            r#"<a href="/queue?{}{sep}after={}" id="page-next">Next &rarr;</a>"#,
            esc(&qs),
            cursor.encode()
        );
    }
    out
}

pub fn page(app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
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
    render(app, conn, &viewer, &q, req.q("fragment") == "1")
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
    fn keyset_pages_cover_the_queue_once_in_order_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        crate::secrets::create_missing(dir.path(), &[]).unwrap();
        let app = App::open(dir.path(), &crate::config::Console::default()).unwrap();
        let conn = app.db.lock().unwrap();
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
        add_user(&conn, "dsl", Role::Dsl, "a long test password").unwrap();
        let Login::Ok(token) =
            login(&conn, "dsl", "a long test password", [127, 0, 0, 1].into()).unwrap()
        else {
            panic!("login")
        };
        let viewer = viewer(&conn, Some(&token)).unwrap();
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
            let page = page_rows(&app, &conn, &viewer, &q).unwrap();
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
        let last = page_rows(&app, &conn, &viewer, &q).unwrap();
        let mut previous = last.previous;
        let mut back = vec![last.rows.iter().map(|r| r.id).collect::<Vec<_>>()];
        while let Some(cursor) = previous {
            let page = page_rows(
                &app,
                &conn,
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
