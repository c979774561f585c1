//! The viewer's staff scope and the queue's filters as PostgreSQL
//! conditions (alias `a`), with numbered parameters.

use tokio_postgres::{Client, Error};

use super::console::Sql;
use crate::store::review::{AlertFilter, Scope};

/// Adds the scope's condition (alias `a`) to `sql`; `false` when the scope
/// allows no alert.
pub(super) async fn scope_sql(c: &Client, scope: &Scope, sql: &mut Sql) -> Result<bool, Error> {
    let any_imported: bool = c
        .query_one("SELECT EXISTS (SELECT 1 FROM console_staff)", &[])
        .await?
        .get(0);
    let mut terms = Vec::new();
    if any_imported {
        terms.push("lower(a.\"user\") IN (SELECT username FROM console_staff)".to_owned());
    }
    if !scope.pattern.is_empty() {
        let p = sql.param(like_pattern(&scope.pattern));
        terms.push(format!("lower(a.\"user\") LIKE {p} ESCAPE '\\'"));
    }
    let is_staff = if terms.is_empty() {
        None
    } else {
        let source = sql.param(crate::reports::SOURCE.to_owned());
        Some(format!(
            "(a.source <> {source} AND ({}))",
            terms.join(" OR ")
        ))
    };
    let cond = match (scope.staff, is_staff) {
        (true, Some(cond)) => cond,
        (true, None) => return Ok(false),
        (false, Some(cond)) => format!("NOT {cond}"),
        (false, None) => "TRUE".to_owned(),
    };
    let cond = match scope.school.list() {
        None => cond,
        Some(schools) => {
            let p = sql.param(schools);
            format!("({cond}) AND a.school = ANY({p})")
        }
    };
    sql.text.push_str(&cond);
    Ok(true)
}

/// The staff pattern as a LIKE pattern: `*` is the only wildcard.
fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for ch in pattern.to_lowercase().chars() {
        match ch {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}

/// `text` anywhere, literally, for ILIKE.
fn contains(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// The WHERE clause for `f` without its state filter; `None` when the
/// scope allows nothing.
pub(super) async fn filtered(c: &Client, f: &AlertFilter) -> Result<Option<Sql>, Error> {
    let mut sql = Sql::default();
    sql.text.push_str("a.state <> 'folded' AND ");
    if !scope_sql(c, &f.scope, &mut sql).await? {
        return Ok(None);
    }
    if !f.category.is_empty() {
        let p = sql.param(f.category.clone());
        sql.text.push_str(&format!(" AND a.category = {p}"));
    }
    if f.min_severity > 0 {
        let p = sql.param(f.min_severity);
        sql.text.push_str(&format!(" AND a.severity >= {p}"));
    }
    if !f.pupil.is_empty() {
        let p = sql.param(f.pupil.to_lowercase());
        sql.text.push_str(&format!(" AND lower(a.\"user\") = {p}"));
    }
    if !f.station.is_empty() {
        let p = sql.param(f.station.to_lowercase());
        sql.text.push_str(&format!(" AND lower(a.station) = {p}"));
    }
    if let Some(ms) = f.from_ms {
        let p = sql.param(ms);
        sql.text.push_str(&format!(" AND a.time_ms >= {p}"));
    }
    if let Some(ms) = f.before_ms {
        let p = sql.param(ms);
        sql.text.push_str(&format!(" AND a.time_ms < {p}"));
    }
    if !f.search.is_empty() {
        let p = sql.param(contains(&f.search));
        let ors: Vec<String> = [
            "a.\"user\"",
            "a.station",
            "a.context",
            "a.window_title",
            "a.url",
            "a.search_query",
            "a.term",
            "a.rule_id",
        ]
        .iter()
        .map(|col| format!("{col} ILIKE {p} ESCAPE '\\'"))
        .collect();
        sql.text.push_str(&format!(" AND ({})", ors.join(" OR ")));
    }
    Ok(Some(sql))
}
