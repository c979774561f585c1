//! Alerts as the review console reads them, and their review, in SQLite.
//! Every read goes through the viewer's staff scope; every change commits
//! with its audit entry.

use std::fmt::Write;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::audit::insert as audit;
use super::settings::scope_sql;
use super::write_tx;
use crate::store::review::{
    transition_detail, Alert, AlertFilter, Cursor, HistoryEntry, Listing, Note, QueueRow, RuleRate,
    Scope, StateFilter, TimelineRow, Transition, Walk, OPEN_STATES,
};
use crate::store::schools::Scope as Schools;
use crate::store::users::Audited;

/// The WHERE clause (alias `a`) for the filter's scope and filters, without
/// the state filter; `None` when nothing is in scope.
fn where_clause(
    conn: &Connection,
    f: &AlertFilter,
) -> rusqlite::Result<Option<(String, Vec<Value>)>> {
    let Some((scope, mut params)) = scope_sql(conn, &f.scope)? else {
        return Ok(None);
    };
    let mut sql = format!("a.state <> 'folded' AND {scope}");
    if !f.category.is_empty() {
        sql.push_str(" AND a.category = ?");
        params.push(Value::Text(f.category.clone()));
    }
    if f.min_severity > 0 {
        sql.push_str(" AND a.severity >= ?");
        params.push(Value::Integer(f.min_severity));
    }
    if !f.pupil.is_empty() {
        sql.push_str(" AND a.user = ? COLLATE NOCASE");
        params.push(Value::Text(f.pupil.clone()));
    }
    if !f.station.is_empty() {
        sql.push_str(" AND a.station = ? COLLATE NOCASE");
        params.push(Value::Text(f.station.clone()));
    }
    if let Some(ms) = f.from_ms {
        sql.push_str(" AND a.time_ms >= ?");
        params.push(Value::Integer(ms));
    }
    if let Some(ms) = f.before_ms {
        sql.push_str(" AND a.time_ms < ?");
        params.push(Value::Integer(ms));
    }
    if !f.search.is_empty() {
        let like = format!(
            "%{}%",
            f.search
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

fn state_clause(state: &StateFilter) -> String {
    match state {
        // Unary plus: walk the risk index in queue order and stop after a page, rather than
        // collect every open alert from the per-state index and sort them.
        StateFilter::Open => format!(" AND +a.state IN ('{}')", OPEN_STATES.join("','")),
        StateFilter::All => String::new(),
        StateFilter::One(s) => format!(" AND a.state = '{s}'"),
    }
}

/// Rows matching `f`, in queue order (or, walking backward from a cursor,
/// nearest first): `limit` rows from `offset`.
pub fn queue_rows(
    conn: &Connection,
    f: &AlertFilter,
    keyset: Option<(Cursor, Walk)>,
    offset: i64,
    limit: i64,
) -> rusqlite::Result<Vec<QueueRow>> {
    let Some((mut sql, mut params)) = where_clause(conn, f)? else {
        return Ok(Vec::new());
    };
    sql.push_str(&state_clause(&f.state));
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
            a.state, a.repeat_count, a.has_capture, substr(a.context, 1, 160), COALESCE(r.assignee, ''), a.school
         FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
         WHERE {sql} ORDER BY a.severity {order}, a.time_ms {order}, a.id {order} LIMIT ? OFFSET ?"
    );
    params.push(Value::Integer(limit));
    params.push(Value::Integer(offset));
    let mut stmt = conn.prepare_cached(&full)?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        Ok(QueueRow {
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
            school: r.get(14)?,
        })
    })?;
    rows.collect()
}

/// Alerts per state for `f`'s filters other than the state.
pub fn state_counts(conn: &Connection, f: &AlertFilter) -> rusqlite::Result<Vec<(String, i64)>> {
    let Some((sql, params)) = where_clause(conn, f)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.state, COUNT(*) FROM alerts a WHERE {sql} GROUP BY a.state"
    ))?;
    let rows = stmt.query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The newest alert's id among the schools `scope` allows.
pub fn max_alert_id(conn: &Connection, scope: &Schools) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM alerts WHERE ?1 IS NULL OR school IN (SELECT value FROM json_each(?1))",
        [scope.json()],
        |r| r.get(0),
    )
}

const COLUMNS: &str = "a.id, a.event_id, a.agent_id, a.seq, a.time_ms, a.received_ms, a.clock_skew, a.chain_ok,
    a.user, a.station, a.source, a.context, a.app, a.window_title, a.url, a.search_query, a.category,
    a.severity, a.rule_id, a.term, a.matches, a.rules_version, a.repeat_count, a.has_capture, a.state,
    a.repeat_of, a.body, a.signature, a.body_hash, COALESCE(r.assignee, ''), COALESCE(r.fp_reason, ''), a.signed_as, a.school";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
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
        school: r.get(32)?,
    })
}

/// Alert `id` if `scope` allows it.
pub fn alert(conn: &Connection, scope: &Scope, id: i64) -> rusqlite::Result<Option<Alert>> {
    let Some((cond, mut params)) = scope_sql(conn, scope)? else {
        return Ok(None);
    };
    params.push(Value::Integer(id));
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id WHERE {cond} AND a.id = ?"
    );
    conn.query_row(&sql, params_from_iter(params), alert_row)
        .optional()
}

/// The alerts `listing` asks for, whatever their viewer scope, oldest first.
pub fn listing(conn: &Connection, listing: &Listing) -> rusqlite::Result<Vec<Alert>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
         WHERE (?1 IS NULL OR a.agent_id = ?1) AND (?2 OR a.state <> 'folded')
         ORDER BY a.id LIMIT ?3"
    );
    let limit = listing
        .limit
        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![listing.agent_id, listing.include_folded, limit],
        alert_row,
    )?;
    rows.collect()
}

/// Every alert stored for `account` (any case) that `scope` allows, folded
/// repeats and burst shots included, oldest first.
pub fn alerts_of(conn: &Connection, scope: &Scope, account: &str) -> rusqlite::Result<Vec<Alert>> {
    let Some((cond, mut params)) = scope_sql(conn, scope)? else {
        return Ok(Vec::new());
    };
    params.push(Value::Text(account.to_owned()));
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
         WHERE {cond} AND a.user = ? COLLATE NOCASE ORDER BY a.time_ms, a.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(params), alert_row)?;
    rows.collect()
}

/// The id of the alert that event `event_id` of `agent_id` raised (not a
/// repeat or burst shot of another).
pub fn original_id(
    conn: &Connection,
    agent_id: &str,
    event_id: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM alerts WHERE agent_id = ?1 AND event_id = ?2 AND repeat_of = '' LIMIT 1",
        params![agent_id, event_id],
        |r| r.get(0),
    )
    .optional()
}

pub fn agent_public_key(conn: &Connection, agent_id: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT public_key FROM agents WHERE agent_id = ?1",
        [agent_id],
        |r| r.get(0),
    )
    .optional()
}

pub fn revealed(conn: &Connection, session_hash: &[u8], alert_id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM console_reveals WHERE session_hash = ?1 AND alert_id = ?2)",
        params![session_hash, alert_id],
        |r| r.get(0),
    )
}

/// (alerts, false positives) of a rule that `scope` allows.
pub fn rule_rate(conn: &Connection, scope: &Scope, rule_id: &str) -> rusqlite::Result<(i64, i64)> {
    let Some((cond, mut params)) = scope_sql(conn, scope)? else {
        return Ok((0, 0));
    };
    params.push(Value::Text(rule_id.to_owned()));
    conn.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(a.state = 'false_positive'), 0) FROM alerts a
             WHERE {cond} AND a.rule_id = ? AND a.state <> 'folded'"
        ),
        params_from_iter(params),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Every rule's alerts and false positives that `scope` allows, highest
/// false-positive rate first.
pub fn rule_rates(conn: &Connection, scope: &Scope) -> rusqlite::Result<Vec<RuleRate>> {
    let Some((cond, params)) = scope_sql(conn, scope)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT a.rule_id, a.category, COUNT(*), COALESCE(SUM(a.state = 'false_positive'), 0) FROM alerts a
         WHERE {cond} AND a.state <> 'folded' GROUP BY a.rule_id ORDER BY 4 * 1.0 / COUNT(*) DESC, COUNT(*) DESC"
    ))?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        Ok(RuleRate {
            rule_id: r.get(0)?,
            category: r.get(1)?,
            total: r.get(2)?,
            false_positives: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Ids of the burst shots (with a capture) that follow event `event_id`.
pub fn burst_shots(
    conn: &Connection,
    agent_id: &str,
    event_id: &str,
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM alerts WHERE agent_id = ?1 AND repeat_of = ?2 AND has_capture = 1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![agent_id, event_id], |r| r.get(0))?;
    rows.collect()
}

pub fn notes(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<Note>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time_ms, author, text FROM console_notes WHERE alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([alert_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

pub fn history(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time_ms, actor, from_state, to_state, reason FROM console_history WHERE alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([alert_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    rows.collect()
}

/// The newest 50 alerts (no folded repeats) about `user` that `scope` allows.
pub fn timeline(
    conn: &Connection,
    scope: &Scope,
    user: &str,
) -> rusqlite::Result<Vec<TimelineRow>> {
    let Some((cond, mut params)) = scope_sql(conn, scope)? else {
        return Ok(Vec::new());
    };
    params.push(Value::Text(user.to_owned()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.id, a.time_ms, a.category, a.severity, a.state, a.school FROM alerts a
         WHERE {cond} AND a.user = ? AND a.state <> 'folded' ORDER BY a.time_ms DESC LIMIT 50"
    ))?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        Ok(TimelineRow {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            category: r.get(2)?,
            severity: r.get(3)?,
            state: r.get(4)?,
            school: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The SHA-256 of an alert's capture as the agent sent it.
pub fn capture_sha256(conn: &Connection, alert_id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT sha256 FROM captures WHERE alert_id = ?1",
        [alert_id],
        |r| r.get(0),
    )
    .optional()
}

pub fn capture_facts(
    conn: &Connection,
    alert_id: i64,
) -> rusqlite::Result<Option<crate::store::console::CaptureFacts>> {
    conn.query_row(
        "SELECT sha256, width, height FROM captures WHERE alert_id = ?1",
        [alert_id],
        |r| {
            Ok(crate::store::console::CaptureFacts {
                sha256: r.get(0)?,
                width: r.get(1)?,
                height: r.get(2)?,
            })
        },
    )
    .optional()
}

pub fn record_reveal(
    conn: &Connection,
    session_hash: &[u8],
    alert_id: i64,
    user: &str,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_reveals (session_hash, alert_id, user, reason, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![session_hash, alert_id, user, reason, now_ms],
    )?;
    audit(
        &tx,
        &Audited {
            actor: user,
            action: "reveal_capture",
            target: &format!("alert:{alert_id}"),
            detail: &format!("reason: {reason}"),
        },
    )?;
    tx.commit()
}

/// Applies one transition inside the caller's transaction; `false` when
/// the alert is no longer in `t.from` (someone else moved it first).
fn apply(
    conn: &Connection,
    actor: &str,
    t: &Transition<'_>,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let moved = conn.execute(
        "UPDATE alerts SET state = ?2 WHERE id = ?1 AND state = ?3",
        params![t.alert_id, t.to, t.from],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    let fp_reason = if t.to == "false_positive" {
        t.reason
    } else {
        ""
    };
    conn.execute(
        "INSERT INTO console_review (alert_id, fp_reason, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(alert_id) DO UPDATE SET fp_reason = ?2, updated_ms = ?3",
        params![t.alert_id, fp_reason, now_ms],
    )?;
    conn.execute(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![t.alert_id, now_ms, actor, t.from, t.to, t.reason],
    )?;
    audit(
        conn,
        &Audited {
            actor,
            action: "state_change",
            target: &format!("alert:{}", t.alert_id),
            detail: &transition_detail(t),
        },
    )?;
    Ok(true)
}

/// Moves alerts as `transitions` say, each with its history and audit
/// entry, and `closing` (when given) audited after them, in one
/// transaction. Returns how many moved: an alert no longer in its `from`
/// state is left as it is.
pub fn transitions(
    conn: &Connection,
    actor: &str,
    transitions: &[Transition<'_>],
    now_ms: i64,
    closing: Option<&dyn Fn(usize) -> (String, String, String)>,
) -> rusqlite::Result<usize> {
    let tx = write_tx(conn)?;
    let mut moved = 0;
    for t in transitions {
        if apply(&tx, actor, t, now_ms)? {
            moved += 1;
        }
    }
    if let Some(closing) = closing {
        let (action, target, detail) = closing(moved);
        audit(
            &tx,
            &Audited {
                actor,
                action: &action,
                target: &target,
                detail: &detail,
            },
        )?;
    }
    tx.commit()?;
    Ok(moved)
}

pub fn assign(
    conn: &Connection,
    actor: &str,
    alert_id: i64,
    assignee: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_review (alert_id, assignee, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(alert_id) DO UPDATE SET assignee = ?2, updated_ms = ?3",
        params![alert_id, assignee, now_ms],
    )?;
    audit(
        &tx,
        &Audited {
            actor,
            action: "assign",
            target: &format!("alert:{alert_id}"),
            detail: &format!(
                "to {}",
                if assignee.is_empty() {
                    "nobody"
                } else {
                    assignee
                }
            ),
        },
    )?;
    tx.commit()
}

pub fn add_note(
    conn: &Connection,
    author: &str,
    alert_id: i64,
    text: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute(
        "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (?1, ?2, ?3, ?4)",
        params![alert_id, now_ms, author, text],
    )?;
    // The note's text stays out of the audit log; its existence does not.
    audit(
        &tx,
        &Audited {
            actor: author,
            action: "add_note",
            target: &format!("alert:{alert_id}"),
            detail: &format!("{} characters", text.chars().count()),
        },
    )?;
    tx.commit()
}
