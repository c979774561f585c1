//! The console's school settings and imported staff list in SQLite, and
//! the staff scope every alert read goes through.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::audit::insert as audit;
use super::write_tx;
use crate::store::review::Scope;
use crate::store::users::Audited;

pub fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM console_settings WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
}

/// Sets `key` to `value` unless it already is; the change and its audit
/// entry (`detail(previous)`) commit together. Returns whether it changed.
pub fn change(
    conn: &Connection,
    key: &str,
    value: &str,
    actor: &str,
    now_ms: i64,
    detail: impl FnOnce(Option<&str>) -> String,
) -> rusqlite::Result<bool> {
    let tx = write_tx(conn)?;
    let previous = get(&tx, key)?;
    if previous.as_deref() == Some(value) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO console_settings (key, value, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET value = ?2, updated_ms = ?3, updated_by = ?4",
        params![key, value, now_ms, actor],
    )?;
    audit(
        &tx,
        &Audited {
            actor,
            action: "setting_changed",
            target: &format!("setting:{key}"),
            detail: &detail(previous.as_deref()),
        },
    )?;
    tx.commit()?;
    Ok(true)
}

/// Sets `key` unless it is set; returns the value kept.
pub fn get_or_insert(
    conn: &Connection,
    key: &str,
    value: &str,
    now_ms: i64,
) -> rusqlite::Result<String> {
    conn.execute(
        "INSERT OR IGNORE INTO console_settings (key, value, updated_ms, updated_by) VALUES (?1, ?2, ?3, 'collector')",
        params![key, value, now_ms],
    )?;
    Ok(get(conn, key)?.unwrap_or_default())
}

/// Replaces the staff list with `staff` ((username, groups); names lower
/// case), auditing the import.
pub fn replace_staff(
    conn: &Connection,
    staff: &[(String, String)],
    now_ms: i64,
    entry: &Audited<'_>,
) -> rusqlite::Result<()> {
    let tx = write_tx(conn)?;
    tx.execute("DELETE FROM console_staff", [])?;
    for (user, groups) in staff {
        tx.execute(
            "INSERT INTO console_staff (username, groups, imported_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(username) DO UPDATE SET groups = ?2",
            params![user, groups, now_ms],
        )?;
    }
    audit(&tx, entry)?;
    tx.commit()
}

/// The SQL condition (alias `a`) for the alerts `scope` allows and its
/// parameters; `None` when it allows none.
pub fn scope_sql(
    conn: &Connection,
    scope: &Scope,
) -> rusqlite::Result<Option<(String, Vec<Value>)>> {
    let any_imported: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM console_staff)", [], |r| {
            r.get(0)
        })?;
    let mut terms = Vec::new();
    let mut params = Vec::new();
    if any_imported {
        terms.push("lower(a.user) IN (SELECT username FROM console_staff)".to_owned());
    }
    if !scope.pattern.is_empty() {
        terms.push("lower(a.user) GLOB ?".to_owned());
        params.push(Value::Text(glob_pattern(&scope.pattern)));
    }
    let is_staff = if terms.is_empty() {
        None
    } else {
        Some(format!(
            "(a.source <> '{}' AND ({}))",
            crate::reports::SOURCE,
            terms.join(" OR ")
        ))
    };
    let staff = match (scope.staff, is_staff) {
        (true, Some(cond)) => cond,
        (true, None) => return Ok(None),
        (false, Some(cond)) => format!("NOT {cond}"),
        (false, None) => "1".to_owned(),
    };
    // The school comes first: the staff condition's parameters are
    // positional (`?`), so the school's is added after theirs.
    Ok(Some(match scope.school.json() {
        None => (staff, params),
        Some(schools) => {
            params.push(Value::Text(schools));
            (
                format!("({staff}) AND a.school IN (SELECT value FROM json_each(?))"),
                params,
            )
        }
    }))
}

/// The staff pattern as a GLOB: `*` stays a wildcard, `?` and `[` are literal.
pub fn glob_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.to_lowercase().chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            _ => out.push(c),
        }
    }
    out
}
