//! Which accounts are staff. Alerts about staff go to the head teacher only
//! (allegations against staff follow a different route from pupils'
//! safeguarding), so every alert query carries a scope clause from here.

use rusqlite::types::Value;
use rusqlite::Connection;

use super::auth::Viewer;
use crate::store::now_ms;

/// The SQL condition (on alias `a`) selecting the alerts `viewer` may see,
/// with its parameters, or `None` when no alert is in scope.
pub fn scope(
    conn: &Connection,
    viewer: &Viewer,
    pattern: &str,
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
    if !pattern.is_empty() {
        terms.push("lower(a.user) GLOB ?".to_owned());
        params.push(Value::Text(glob_pattern(pattern)));
    }
    // A pupil's report is the DSL's whatever name it was signed with: a
    // pupil typing a teacher's name must not send it to the head alone.
    let is_staff = if terms.is_empty() {
        None
    } else {
        Some(format!(
            "(a.source <> '{}' AND ({}))",
            crate::reports::SOURCE,
            terms.join(" OR ")
        ))
    };
    Ok(match (viewer.role.sees_staff_alerts(), is_staff) {
        (true, Some(cond)) => Some((cond, params)),
        (true, None) => None,
        (false, Some(cond)) => Some((format!("NOT {cond}"), params)),
        (false, None) => Some(("1".to_owned(), params)),
    })
}

/// `*` is the only wildcard; GLOB's other specials are taken literally.
fn glob_pattern(pattern: &str) -> String {
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

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields.into_iter().map(|f| f.trim().to_owned()).collect()
}

/// The outcome of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub staff: usize,
    pub others: usize,
}

/// Replaces the staff list from a CSV of users and groups: a header with a
/// `username` column and optional `groups` (separated by `;`) and `type`
/// columns. A row is staff when its type is `staff` or one of its groups is
/// `staff`; a file with neither column lists staff only.
pub fn import(conn: &mut Connection, csv: &str) -> anyhow::Result<Imported> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = csv_fields(
        lines
            .next()
            .unwrap_or_default()
            .trim_start_matches('\u{feff}'),
    )
    .into_iter()
    .map(|h| h.to_lowercase())
    .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let user_col = col("username")
        .or_else(|| col("user"))
        .ok_or_else(|| anyhow::anyhow!("the CSV needs a header row with a `username` column"))?;
    let groups_col = col("groups").or_else(|| col("group"));
    let type_col = col("type").or_else(|| col("role"));
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM console_staff", [])?;
    let mut result = Imported {
        staff: 0,
        others: 0,
    };
    for (n, line) in lines.enumerate() {
        let fields = csv_fields(line);
        let user = fields
            .get(user_col)
            .map(|s| s.to_lowercase())
            .unwrap_or_default();
        anyhow::ensure!(!user.is_empty(), "row {} has no username", n + 2);
        let groups = groups_col
            .and_then(|c| fields.get(c))
            .cloned()
            .unwrap_or_default();
        let kind = type_col
            .and_then(|c| fields.get(c))
            .cloned()
            .unwrap_or_default();
        let staff = (groups_col.is_none() && type_col.is_none())
            || kind.eq_ignore_ascii_case("staff")
            || groups
                .split(';')
                .any(|g| g.trim().eq_ignore_ascii_case("staff"));
        if staff {
            tx.execute(
                "INSERT INTO console_staff (username, groups, imported_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(username) DO UPDATE SET groups = ?2",
                rusqlite::params![user, groups, now_ms()],
            )?;
            result.staff += 1;
        } else {
            result.others += 1;
        }
    }
    super::audit::append(
        &tx,
        "cli",
        "staff_imported",
        "staff list",
        &format!("{} staff, {} other accounts", result.staff, result.others),
    )?;
    tx.commit()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_staff_detection() {
        assert_eq!(
            csv_fields(r#"a,"b, c","say ""hi""""#),
            vec!["a", "b, c", r#"say "hi""#]
        );
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE alerts (id INTEGER PRIMARY KEY, user TEXT, time_ms INTEGER, severity INTEGER, rule_id TEXT, state TEXT)").unwrap();
        crate::console::schema::create(&conn).unwrap();
        let n = import(
            &mut conn,
            "username,groups,type\nMr.Smith,Staff;Science,\npupil.one,Year 10,pupil\nms.jones,,staff\n",
        )
        .unwrap();
        assert_eq!(
            n,
            Imported {
                staff: 2,
                others: 1
            }
        );
        assert_eq!(glob_pattern("Staff.*?"), "staff.*[?]");
    }
}
