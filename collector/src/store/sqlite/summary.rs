//! Weekly summaries' records on SQLite (one school per file).

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::config::CollectorConfig;
use crate::store::summary::{SummaryQueue, SummaryRun};
use crate::store::StoreError;
use crate::summary::content::{
    median, Audience, CategoryRow, Figures, FpRule, RuleChange, Silent, TopAlert, FP_RULES, TOP,
};
use crate::summary::schedule::Week;

/// Runs are unique per (school, week): the trust's under school ''. A
/// store made before schools (runs keyed by week alone) has its table
/// rebuilt by [`upgrade`].
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS summary_runs (
    school TEXT NOT NULL DEFAULT '',
    week_start TEXT NOT NULL,
    queued_ms INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    emails INTEGER NOT NULL,
    PRIMARY KEY (school, week_start)
);
CREATE INDEX IF NOT EXISTS summary_alerts_time ON alerts (time_ms);
";

/// Creates the summary's table, or rebuilds one keyed by week alone.
pub fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'summary_runs')
            AND NOT EXISTS (SELECT 1 FROM pragma_table_info('summary_runs') WHERE name = 'school')",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "SAVEPOINT summary_runs_school;
             ALTER TABLE summary_runs RENAME TO summary_runs_by_week;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(
            "INSERT INTO summary_runs (school, week_start, queued_ms, trigger, emails)
                 SELECT '', week_start, queued_ms, trigger, emails FROM summary_runs_by_week;
             DROP TABLE summary_runs_by_week;
             RELEASE summary_runs_school;",
        )?;
        return Ok(());
    }
    conn.execute_batch(SCHEMA)
}

pub fn done(conn: &Connection, school: &str, week_start: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM summary_runs WHERE school = ?1 AND week_start = ?2)",
        [school, week_start],
        |r| r.get(0),
    )
}

/// The figures, read in one read transaction (without the write lock:
/// ingest must not wait while the week is scanned).
pub fn figures(
    conn: &mut Connection,
    config: &CollectorConfig,
    week: &Week,
    audience: Audience,
    school: &str,
    now_ms: i64,
) -> Result<Figures, StoreError> {
    let read = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let figures = figures_in(&read, config, week, audience, school, now_ms)?;
    read.finish()?;
    Ok(figures)
}

pub fn queue(conn: &mut Connection, queue: &SummaryQueue) -> Result<Option<usize>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if queue.scheduled && done(&tx, &queue.school, &queue.week_start)? {
        // Queued by another process while this one rendered.
        return Ok(None);
    }
    for email in &queue.emails {
        super::mail::enqueue(&tx, email)?;
    }
    let emails = queue.emails.len();
    tx.execute(
        "INSERT INTO summary_runs (week_start, queued_ms, trigger, emails, school) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(school, week_start) DO UPDATE SET emails = emails + ?4",
        params![
            queue.week_start,
            queue.queued_ms,
            if queue.scheduled {
                "schedule"
            } else {
                "manual"
            },
            emails as i64,
            queue.school
        ],
    )?;
    tx.commit()?;
    Ok(Some(emails))
}

pub fn runs(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<SummaryRun>> {
    let mut stmt = conn.prepare(
        "SELECT week_start, queued_ms, trigger, emails FROM summary_runs WHERE school = ''
         ORDER BY week_start DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(SummaryRun {
            week_start: r.get(0)?,
            queued_ms: r.get(1)?,
            trigger: r.get(2)?,
            emails: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The scope clause (alias `a`) for `audience` in `school` ('' for every
/// school).
fn scope(
    conn: &Connection,
    config: &CollectorConfig,
    audience: Audience,
    school: &str,
) -> rusqlite::Result<(String, Vec<Value>)> {
    let (staff, mut params) = crate::urgent::staff_condition(conn, &config.console.staff_pattern)?;
    let staff = match audience {
        Audience::Staff => format!("({staff})"),
        Audience::Pupils => format!("NOT ({staff})"),
    };
    if school.is_empty() {
        return Ok((staff, params));
    }
    params.push(Value::Text(school.to_owned()));
    Ok((format!("{staff} AND a.school = ?"), params))
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

/// Reads the figures for `week` as seen by `audience` at `now_ms`, on
/// `conn` (in the caller's transaction).
pub fn figures_in(
    conn: &Connection,
    config: &CollectorConfig,
    week: &Week,
    audience: Audience,
    school: &str,
    now_ms: i64,
) -> rusqlite::Result<Figures> {
    let zone = week.zone.clone();
    let sc = scope(conn, config, audience, school)?;
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
            let staff = scope(conn, config, Audience::Staff, school)?;
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

    let of_school: Vec<String> = if school.is_empty() {
        Vec::new()
    } else {
        let mut stmt = conn.prepare("SELECT agent_id FROM agents WHERE school = ?1")?;
        let ids = stmt.query_map([school], |r| r.get(0))?;
        ids.collect::<rusqlite::Result<_>>()?
    };
    let silent = crate::coverage::silent_stations(conn, now_ms, &config.fleet, &zone)?
        .into_iter()
        .filter(|s| school.is_empty() || of_school.contains(&s.agent_id))
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

    let exemptions = crate::exemption::changed_between(conn, start, end, school)?;
    let notice = crate::notice::week_counts(conn, start, end, school)?;
    let school_name = name_of(conn, school)?;

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
        school_name,
    })
}

/// The name of `school` ('' for the trust: none), its id if it has none.
fn name_of(conn: &Connection, school: &str) -> rusqlite::Result<Option<String>> {
    if school.is_empty() {
        return Ok(None);
    }
    let name: Option<String> = conn
        .query_row("SELECT name FROM schools WHERE id = ?1", [school], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(Some(name.unwrap_or_else(|| school.to_owned())))
}
