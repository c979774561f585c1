//! The weekly summary's figures, read from the database.
//!
//! Alerts are counted by the agent's time of the event (as the console shows
//! them), without folded repeats. The DSL's summary covers pupils' alerts;
//! alerts about staff appear there only as one count ("see the head
//! teacher"), and the head teacher's summary covers staff alerts only.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::schedule::Week;
use crate::config::CollectorConfig;
use crate::console::tz::Zone;

/// Who a summary is for: which alerts it may describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// DSL and deputies (and any other role): pupils' alerts.
    Pupils,
    /// The head teacher: alerts about staff.
    Staff,
}

/// Alerts of one category in the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRow {
    pub category: String,
    /// Alerts of severity 1 to 5.
    pub by_severity: [i64; 5],
    pub total: i64,
    /// The week before.
    pub previous: i64,
}

/// An alert listed by link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopAlert {
    pub id: i64,
    pub time_ms: i64,
    pub severity: i64,
    pub category: String,
    pub state: String,
}

/// A rule's false positives among the week's alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpRule {
    pub rule_id: String,
    pub false_positives: i64,
    pub total: i64,
}

/// A published rule bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub pack_id: String,
    pub version: i64,
    pub shadow: bool,
    pub published_ms: i64,
}

/// A station that has gone quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
}

/// Everything one summary shows.
#[derive(Debug, Clone)]
pub struct Figures {
    pub audience: Audience,
    pub week: Week,
    pub zone: Zone,
    pub generated_ms: i64,
    pub console_url: String,
    pub categories: Vec<CategoryRow>,
    pub total: i64,
    pub previous_total: i64,
    /// Per day: date and counts in the order of `categories`.
    pub days: Vec<(String, Vec<i64>)>,
    /// Unreviewed (state `new`) alerts now, of any week, and the oldest one's time.
    pub unreviewed: i64,
    pub oldest_unreviewed_ms: Option<i64>,
    pub top: Vec<TopAlert>,
    /// Median from receipt to the first state change, over the week's
    /// reviewed alerts, and how many those were.
    pub median_first_review_ms: Option<i64>,
    pub reviewed: i64,
    pub fp_rules: Vec<FpRule>,
    /// Staff alerts in the week, shown to the DSL as a count only.
    pub staff_alerts: i64,
    pub silent: Vec<Silent>,
    pub rule_changes: Vec<RuleChange>,
    pub exemptions: Vec<crate::exemption::Exemption>,
    /// Monitoring notice acknowledgements received in the week, and pupils
    /// who have and have not accepted their group's current version.
    pub notice: crate::notice::WeekCounts,
}

/// How many of the most severe alerts are listed.
pub const TOP: usize = 10;
/// How many rules with false positives are listed.
pub const FP_RULES: usize = 5;

/// The scope clause (alias `a`) for `audience`.
fn scope(
    conn: &Connection,
    config: &CollectorConfig,
    audience: Audience,
) -> rusqlite::Result<(String, Vec<Value>)> {
    let (staff, params) = crate::urgent::staff_condition(conn, &config.console.staff_pattern)?;
    Ok(match audience {
        Audience::Staff => (format!("({staff})"), params),
        Audience::Pupils => (format!("NOT ({staff})"), params),
    })
}

/// Runs `sql` (with `{scope}` replaced) with scope parameters first.
fn query<T>(
    conn: &Connection,
    scope: &(String, Vec<Value>),
    sql: &str,
    extra: &[Value],
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let sql = sql.replace("{scope}", &scope.0);
    let mut values = scope.1.clone();
    values.extend_from_slice(extra);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), map)?;
    rows.collect()
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// Reads the figures for `week` as seen by `audience` at `now_ms`.
pub fn figures(
    conn: &Connection,
    config: &CollectorConfig,
    week: &Week,
    audience: Audience,
    now_ms: i64,
) -> rusqlite::Result<Figures> {
    let zone = week.zone.clone();
    let sc = scope(conn, config, audience)?;
    let (start, end) = (week.start_ms(), week.end_ms());
    let prev = week.previous();
    let range = |a: i64, b: i64| [Value::Integer(a), Value::Integer(b)];

    // Categories with counts by severity, this week and the week before.
    let mut categories: Vec<CategoryRow> = Vec::new();
    for (category, severity, n) in query(
        conn,
        &sc,
        "SELECT a.category, a.severity, COUNT(*) FROM alerts a
         WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
         GROUP BY a.category, a.severity",
        &range(start, end),
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )? {
        let row = match categories.iter_mut().position(|c| c.category == category) {
            Some(i) => &mut categories[i],
            None => {
                categories.push(CategoryRow {
                    category: category.clone(),
                    by_severity: [0; 5],
                    total: 0,
                    previous: 0,
                });
                categories.last_mut().expect("just pushed")
            }
        };
        row.by_severity[(severity.clamp(1, 5) - 1) as usize] += n;
        row.total += n;
    }
    for (category, n) in query(
        conn,
        &sc,
        "SELECT a.category, COUNT(*) FROM alerts a
         WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
         GROUP BY a.category",
        &range(prev.start_ms(), prev.end_ms()),
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )? {
        match categories.iter_mut().find(|c| c.category == category) {
            Some(row) => row.previous = n,
            None => categories.push(CategoryRow {
                category,
                by_severity: [0; 5],
                total: 0,
                previous: n,
            }),
        }
    }
    categories.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then(b.previous.cmp(&a.previous))
            .then(a.category.cmp(&b.category))
    });
    let total = categories.iter().map(|c| c.total).sum();
    let previous_total = categories.iter().map(|c| c.previous).sum();

    // Per day and category, in one pass: the day is found from the six
    // local midnights inside the week (days are 23 to 25 hours around a
    // clock change).
    let days_of_week = week.days();
    let mut day_case = String::from("CASE");
    for (i, (_, _, to)) in days_of_week.iter().take(6).enumerate() {
        // Integers computed here, not input: safe to write into the SQL.
        day_case.push_str(&format!(" WHEN a.time_ms < {to} THEN {i}"));
    }
    day_case.push_str(" ELSE 6 END");
    let counts = query(
        conn,
        &sc,
        &format!(
            "SELECT {day_case} AS day, a.category, COUNT(*) FROM alerts a
             WHERE {{scope}} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
             GROUP BY day, a.category"
        ),
        &range(start, end),
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    let days = days_of_week
        .into_iter()
        .enumerate()
        .map(|(i, (date, _, _))| {
            let row = categories
                .iter()
                .map(|c| {
                    counts
                        .iter()
                        .find(|(d, cat, _)| *d == i as i64 && *cat == c.category)
                        .map_or(0, |(_, _, n)| *n)
                })
                .collect();
            (date, row)
        })
        .collect();

    // Unreviewed now, of any week.
    let (unreviewed, oldest_unreviewed_ms) = query(
        conn,
        &sc,
        "SELECT COUNT(*), MIN(a.received_ms) FROM alerts a WHERE {scope} AND a.state = 'new'",
        &[],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
    )?
    .into_iter()
    .next()
    .unwrap_or((0, None));

    let top = query(
        conn,
        &sc,
        "SELECT a.id, a.time_ms, a.severity, a.category, a.state FROM alerts a
         WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
         ORDER BY a.severity DESC, a.time_ms DESC LIMIT ?",
        &[
            Value::Integer(start),
            Value::Integer(end),
            Value::Integer(TOP as i64),
        ],
        |r| {
            Ok(TopAlert {
                id: r.get(0)?,
                time_ms: r.get(1)?,
                severity: r.get(2)?,
                category: r.get(3)?,
                state: r.get(4)?,
            })
        },
    )?;

    // Time to first review: the first state change away from `new`.
    let mut waits = query(
        conn,
        &sc,
        "SELECT MIN(h.time_ms) - a.received_ms FROM alerts a
         JOIN console_history h ON h.alert_id = a.id AND h.from_state = 'new'
         WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
         GROUP BY a.id",
        &range(start, end),
        |r| r.get::<_, i64>(0),
    )?;
    waits.sort_unstable();
    let median_first_review_ms = median(&waits);

    let fp_rules = query(
        conn,
        &sc,
        "SELECT a.rule_id, SUM(a.state = 'false_positive'), COUNT(*) FROM alerts a
         WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?
         GROUP BY a.rule_id HAVING SUM(a.state = 'false_positive') > 0
         ORDER BY 2 DESC, 3 DESC, a.rule_id LIMIT ?",
        &[
            Value::Integer(start),
            Value::Integer(end),
            Value::Integer(FP_RULES as i64),
        ],
        |r| {
            Ok(FpRule {
                rule_id: r.get(0)?,
                false_positives: r.get(1)?,
                total: r.get(2)?,
            })
        },
    )?;

    let staff_alerts = match audience {
        Audience::Staff => 0,
        Audience::Pupils => {
            let staff = scope(conn, config, Audience::Staff)?;
            query(
                conn,
                &staff,
                "SELECT COUNT(*) FROM alerts a
                 WHERE {scope} AND a.state <> 'folded' AND a.time_ms >= ? AND a.time_ms < ?",
                &range(start, end),
                |r| r.get::<_, i64>(0),
            )?
            .into_iter()
            .next()
            .unwrap_or(0)
        }
    };

    let silent = crate::coverage::silent_stations(conn, now_ms, &config.fleet, &zone)?
        .into_iter()
        .map(|s| Silent {
            station: s.station,
            grp: s.grp,
            last_seen_ms: s.last_seen_ms,
        })
        .collect();

    let rule_changes = if table_exists(conn, "rule_bundles")? {
        let mut stmt = conn.prepare(
            "SELECT pack_id, version, shadow, published_ms FROM rule_bundles
             WHERE published_ms >= ?1 AND published_ms < ?2 ORDER BY published_ms",
        )?;
        let rows = stmt.query_map([start, end], |r| {
            Ok(RuleChange {
                pack_id: r.get(0)?,
                version: r.get(1)?,
                shadow: r.get(2)?,
                published_ms: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };

    let exemptions = crate::exemption::changed_between(conn, start, end)?;
    let notice = crate::notice::week_counts(conn, start, end)?;

    Ok(Figures {
        audience,
        week: week.clone(),
        zone,
        generated_ms: now_ms,
        console_url: crate::mail::console_url(config),
        categories,
        total,
        previous_total,
        days,
        unreviewed,
        oldest_unreviewed_ms,
        top,
        median_first_review_ms,
        reviewed: waits.len() as i64,
        fp_rules,
        staff_alerts,
        silent,
        rule_changes,
        exemptions,
        notice,
    })
}

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[1, 3, 10]), Some(3));
        assert_eq!(median(&[1, 3, 10, 20]), Some(6));
    }
}
