//! Which accounts are staff. Alerts about staff go to the head teacher only
//! (allegations against staff follow a different route from pupils'
//! safeguarding), so every alert query carries a scope clause from here.

use rusqlite::types::Value;
use rusqlite::Connection;

use super::auth::Viewer;
use crate::store::console::Console;
use crate::store::now_ms;
use crate::store::review::Scope;
use crate::store::users::Audited;

/// The alerts `viewer` may see: staff alerts for the head teacher, pupils'
/// for everyone else. `pattern` is the console's staff pattern.
pub fn of(viewer: &Viewer, pattern: &str) -> Scope {
    Scope {
        staff: viewer.role.sees_staff_alerts(),
        pattern: pattern.to_owned(),
        school: viewer.school.clone(),
    }
}

/// The SQL condition (on alias `a`) selecting the alerts `viewer` may see,
/// with its parameters, or `None` when no alert is in scope; for the
/// modules that still query SQLite themselves (urgent mail).
pub fn scope(
    conn: &Connection,
    viewer: &Viewer,
    pattern: &str,
) -> rusqlite::Result<Option<(String, Vec<Value>)>> {
    crate::store::sqlite::settings::scope_sql(conn, &of(viewer, pattern))
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
pub fn import(db: &Console<'_>, csv: &str) -> anyhow::Result<Imported> {
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
    let mut result = Imported {
        staff: 0,
        others: 0,
    };
    let mut staff_rows = Vec::new();
    for (user, groups, kind) in rows {
        let staff = (groups_col.is_none() && type_col.is_none())
            || kind.eq_ignore_ascii_case("staff")
            || groups
                .split(';')
                .any(|g| g.trim().eq_ignore_ascii_case("staff"));
        if staff {
            staff_rows.push((user, groups));
            result.staff += 1;
        } else {
            result.others += 1;
        }
    }
    db.replace_staff(
        &staff_rows,
        now_ms(),
        &Audited {
            actor: "cli",
            action: "staff_imported",
            target: "staff list",
            detail: &format!("{} staff, {} other accounts", result.staff, result.others),
        },
    )?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_staff_detection() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE alerts (id INTEGER PRIMARY KEY, user TEXT, time_ms INTEGER, severity INTEGER, rule_id TEXT, state TEXT)").unwrap();
        crate::console::schema::create(&conn).unwrap();
        let db = Console::Sqlite(&conn);
        let n = import(
            &db,
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
        assert_eq!(
            crate::store::sqlite::settings::glob_pattern("Staff.*?"),
            "staff.*[?]"
        );
        // RFC 4180 quoting: commas, doubled quotes and line breaks inside
        // quotes, a byte-order mark, blank lines and ragged rows.
        let n = import(
            &db,
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
        let err = import(&db, "username,type\nmr.a,staff\n,staff\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = import(&db, "username\n\"mr.a\nx\"\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(import(&db, "name,type\nmr.a,staff\n")
            .unwrap_err()
            .to_string()
            .contains("`username` column"));
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM console_staff", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 2);
    }
}
