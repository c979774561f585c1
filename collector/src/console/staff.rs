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
    use anyhow::Context;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader
        .headers()
        .context("the CSV's header row cannot be read; save the file as UTF-8 CSV")?
        .iter()
        .map(str::to_lowercase)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let user_col = col("username")
        .or_else(|| col("user"))
        .ok_or_else(|| anyhow::anyhow!("the CSV needs a header row with a `username` column"))?;
    let groups_col = col("groups").or_else(|| col("group"));
    let type_col = col("type").or_else(|| col("role"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.context("the CSV cannot be read; save the file as UTF-8 CSV")?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or_default();
        let user = field(Some(user_col)).to_lowercase();
        anyhow::ensure!(!user.is_empty(), "line {line} has no username");
        anyhow::ensure!(
            !user.chars().any(char::is_control),
            "line {line}: the username holds a line break or control character"
        );
        rows.push((
            user,
            field(groups_col).to_owned(),
            field(type_col).to_owned(),
        ));
    }
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM console_staff", [])?;
    let mut result = Imported {
        staff: 0,
        others: 0,
    };
    for (user, groups, kind) in rows {
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
        // RFC 4180 quoting: commas, doubled quotes and line breaks inside
        // quotes, a byte-order mark, blank lines and ragged rows.
        let n = import(
            &mut conn,
            "\u{feff}Username,\"Groups\"\r\n\"mr.o'brien\",\"Staff; \"\"Head\"\", Office\"\r\n\nms.new,\"Science;\nStaff\"\r\npupil.two\r\n",
        )
        .unwrap();
        assert_eq!(
            n,
            Imported {
                staff: 2,
                others: 1
            }
        );
        let staff: Vec<(String, String)> = conn
            .prepare("SELECT username, groups FROM console_staff ORDER BY username")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            staff,
            [
                (
                    "mr.o'brien".to_owned(),
                    "Staff; \"Head\", Office".to_owned()
                ),
                ("ms.new".to_owned(), "Science;\nStaff".to_owned())
            ]
        );
        // A row without a username names its line; the old list stays.
        let err = import(&mut conn, "username,type\nmr.a,staff\n,staff\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = import(&mut conn, "username\n\"mr.a\nx\"\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(import(&mut conn, "name,type\nmr.a,staff\n")
            .unwrap_err()
            .to_string()
            .contains("`username` column"));
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM console_staff", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 2);
    }
}
