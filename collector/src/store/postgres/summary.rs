//! Weekly summaries on PostgreSQL: the runs, unique per (school, week), and
//! the week's figures (the same counts as on SQLite): alerts, time to first
//! review, rule publications, exemption changes and notice acknowledgements.

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::exemption::{row as exemption_row, COLUMNS as EXEMPTION_COLUMNS};
use super::jobs::Jobs;
use super::urgent::{like_pattern, staff_condition};
use crate::config::CollectorConfig;
use crate::notice::WeekCounts;
use crate::store::exemption::Exemption;
use crate::store::summary::{SummaryQueue, SummaryRun};
use crate::store::StoreError;
use crate::summary::content::{
    median, Audience, CategoryRow, Figures, FpRule, RuleChange, Silent, TopAlert, FP_RULES, TOP,
};
use crate::summary::schedule::Week;

impl Jobs {
    pub async fn summary_done(&self, school: &str, week_start: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .client()
            .query_opt(
                "SELECT 1 FROM summary_runs WHERE school = $1 AND week_start = $2",
                &[&school, &week_start],
            )
            .await?
            .is_some())
    }

    pub async fn queue_summary(&self, queue: &SummaryQueue) -> Result<Option<usize>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.client().transaction().await?;
        let emails = queue.emails.len() as i64;
        let recorded = if queue.scheduled {
            // The unique key decides: a week another collector has queued
            // (even one committing right now) is not queued again.
            tx.execute(
                "INSERT INTO summary_runs (school, week_start, queued_ms, trigger, emails)
                 VALUES ($1, $2, $3, 'schedule', $4) ON CONFLICT (school, week_start) DO NOTHING",
                &[&queue.school, &queue.week_start, &queue.queued_ms, &emails],
            )
            .await?
        } else {
            tx.execute(
                "INSERT INTO summary_runs (school, week_start, queued_ms, trigger, emails)
                 VALUES ($1, $2, $3, 'manual', $4)
                 ON CONFLICT (school, week_start) DO UPDATE SET emails = summary_runs.emails + EXCLUDED.emails",
                &[&queue.school, &queue.week_start, &queue.queued_ms, &emails],
            )
            .await?
        };
        if recorded == 0 {
            return Ok(None);
        }
        for email in &queue.emails {
            super::mail::enqueue(&tx, email).await?;
        }
        tx.commit().await?;
        Ok(Some(queue.emails.len()))
    }

    pub async fn summary_runs(&self, limit: i64) -> Result<Vec<SummaryRun>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .client()
            .query(
                "SELECT week_start, queued_ms, trigger, emails FROM summary_runs
                 WHERE school = '' ORDER BY week_start DESC LIMIT $1",
                &[&limit],
            )
            .await?
            .iter()
            .map(|r| SummaryRun {
                week_start: r.get(0),
                queued_ms: r.get(1),
                trigger: r.get(2),
                emails: r.get(3),
            })
            .collect())
    }

    pub async fn summary_figures(
        &self,
        config: &CollectorConfig,
        week: &Week,
        audience: Audience,
        school: &str,
        now_ms: i64,
    ) -> Result<Figures, StoreError> {
        let mut conn = self.conn().await?;
        // One snapshot for every figure.
        let tx = conn
            .client()
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let figures = figures(&tx, config, week, audience, school, now_ms).await?;
        tx.commit().await?;
        Ok(figures)
    }
}

/// The scope clause (alias `a`) for `audience`: parameter $1 is the staff
/// pattern and $2 the school ('' for every school), bound like every other
/// value; each query's own parameters are numbered from $3.
fn scope(audience: Audience) -> String {
    let staff = match audience {
        Audience::Staff => staff_condition(1),
        Audience::Pupils => format!("NOT {}", staff_condition(1)),
    };
    format!("{staff} AND ($2 = '' OR a.school = $2)")
}

async fn figures(
    tx: &Transaction<'_>,
    config: &CollectorConfig,
    week: &Week,
    audience: Audience,
    school: &str,
    now_ms: i64,
) -> Result<Figures, StoreError> {
    let zone = week.zone.clone();
    let pattern = like_pattern(&config.console.staff_pattern.trim().to_lowercase());
    if !school.is_empty() && !crate::store::schools::valid_id(school) {
        return Err(StoreError::NotASchool(school.to_owned()));
    }
    let sc = scope(audience);
    let (start, end) = (week.start_ms(), week.end_ms());
    let prev = week.previous();
    let in_week = "a.state <> 'folded' AND a.time_ms >= $3 AND a.time_ms < $4";
    let week_params: [&(dyn ToSql + Sync); 4] = [&pattern, &school, &start, &end];

    let mut categories: Vec<CategoryRow> = Vec::new();
    for r in tx
        .query(
            &format!(
                "SELECT a.category, a.severity, COUNT(*) FROM alerts a
                 WHERE {sc} AND {in_week} GROUP BY a.category, a.severity"
            ),
            &week_params,
        )
        .await?
    {
        let (category, severity, n): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let row = match categories.iter().position(|c| c.category == category) {
            Some(i) => &mut categories[i],
            None => {
                categories.push(CategoryRow {
                    category,
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
    let (prev_start, prev_end) = (prev.start_ms(), prev.end_ms());
    for r in tx
        .query(
            &format!("SELECT a.category, COUNT(*) FROM alerts a WHERE {sc} AND {in_week} GROUP BY a.category"),
            &[&pattern, &school, &prev_start, &prev_end],
        )
        .await?
    {
        let (category, n): (String, i64) = (r.get(0), r.get(1));
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

    // Per day and category in one pass, the day found from the local
    // midnights inside the week (days are 23 to 25 hours around a change).
    let days_of_week = week.days();
    let mut day_case = String::from("CASE");
    for (i, (_, _, to)) in days_of_week.iter().take(6).enumerate() {
        // Integers computed here, not input: safe to write into the SQL.
        day_case.push_str(&format!(" WHEN a.time_ms < {to} THEN {i}"));
    }
    day_case.push_str(" ELSE 6 END");
    let counts: Vec<(i32, String, i64)> = tx
        .query(
            &format!(
                "SELECT {day_case} AS day, a.category, COUNT(*) FROM alerts a
                 WHERE {sc} AND {in_week} GROUP BY day, a.category"
            ),
            &week_params,
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let days = days_of_week
        .into_iter()
        .enumerate()
        .map(|(i, (date, _, _))| {
            let row = categories
                .iter()
                .map(|c| {
                    counts
                        .iter()
                        .find(|(d, cat, _)| *d as usize == i && *cat == c.category)
                        .map_or(0, |(_, _, n)| *n)
                })
                .collect();
            (date, row)
        })
        .collect();

    let r = tx
        .query_one(
            &format!(
                "SELECT COUNT(*), MIN(a.received_ms) FROM alerts a WHERE {sc} AND a.state = 'new'"
            ),
            &[&pattern, &school],
        )
        .await?;
    let (unreviewed, oldest_unreviewed_ms): (i64, Option<i64>) = (r.get(0), r.get(1));

    let top = tx
        .query(
            &format!(
                "SELECT a.id, a.time_ms, a.severity, a.category, a.state FROM alerts a
                 WHERE {sc} AND {in_week} ORDER BY a.severity DESC, a.time_ms DESC LIMIT $5"
            ),
            &[&pattern, &school, &start, &end, &(TOP as i64)],
        )
        .await?
        .iter()
        .map(|r| TopAlert {
            id: r.get(0),
            time_ms: r.get(1),
            severity: r.get(2),
            category: r.get(3),
            state: r.get(4),
        })
        .collect();

    // Time to first review: the first state change away from `new`.
    let mut waits: Vec<i64> = tx
        .query(
            &format!(
                "SELECT (MIN(h.time_ms) - a.received_ms)::bigint FROM alerts a
                 JOIN console_history h ON h.alert_id = a.id AND h.from_state = 'new'
                 WHERE {sc} AND {in_week} GROUP BY a.id"
            ),
            &week_params,
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    waits.sort_unstable();
    let median_first_review_ms = median(&waits);

    let fp_rules = tx
        .query(
            &format!(
                "SELECT a.rule_id, SUM((a.state = 'false_positive')::int)::bigint, COUNT(*) FROM alerts a
                 WHERE {sc} AND {in_week}
                 GROUP BY a.rule_id HAVING SUM((a.state = 'false_positive')::int) > 0
                 ORDER BY 2 DESC, 3 DESC, a.rule_id LIMIT $5"
            ),
            &[&pattern, &school, &start, &end, &(FP_RULES as i64)],
        )
        .await?
        .iter()
        .map(|r| FpRule {
            rule_id: r.get(0),
            false_positives: r.get(1),
            total: r.get(2),
        })
        .collect();

    let staff_alerts = match audience {
        Audience::Staff => 0,
        Audience::Pupils => tx
            .query_one(
                &format!(
                    "SELECT COUNT(*) FROM alerts a WHERE {} AND {in_week}",
                    scope(Audience::Staff)
                ),
                &week_params,
            )
            .await?
            .get(0),
    };

    let school_time = crate::coverage::SchoolTime::new(&config.fleet, zone.clone());
    let limit_ms = i64::try_from(config.fleet.silent_after_mins)
        .unwrap_or(i64::MAX / 60_000)
        .saturating_mul(60_000);
    let silent = tx
        .query(
            "SELECT station, grp, last_seen_ms, enrolled_ms FROM agents
             WHERE NOT revoked AND ($1 = '' OR school = $1)
             ORDER BY COALESCE(last_seen_ms, enrolled_ms), station",
            &[&school],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let (last_seen_ms, enrolled): (Option<i64>, i64) = (r.get(2), r.get(3));
            (school_time.school_ms_between(last_seen_ms.unwrap_or(enrolled), now_ms) > limit_ms)
                .then(|| Silent {
                    station: r.get(0),
                    grp: r.get(1),
                    last_seen_ms,
                })
        })
        .collect();

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
        rule_changes: rule_changes(tx, start, end).await?,
        exemptions: exemptions_changed(tx, start, end, school).await?,
        notice: notice_counts(tx, start, end, school).await?,
        school_name: name_of(tx, school).await?,
    })
}

/// The name of `school` ('' for the trust: none), its id if it has none.
async fn name_of(tx: &Transaction<'_>, school: &str) -> Result<Option<String>, StoreError> {
    if school.is_empty() {
        return Ok(None);
    }
    let name = tx
        .query_opt("SELECT name FROM schools WHERE id = $1", &[&school])
        .await?
        .map(|r| r.get::<_, String>(0));
    Ok(Some(name.unwrap_or_else(|| school.to_owned())))
}

/// Rule bundles published in `[start, end)`.
async fn rule_changes(
    tx: &Transaction<'_>,
    start: i64,
    end: i64,
) -> Result<Vec<RuleChange>, StoreError> {
    Ok(tx
        .query(
            "SELECT pack_id, version, shadow, published_ms FROM rule_bundles
             WHERE published_ms >= $1 AND published_ms < $2 ORDER BY published_ms, id",
            &[&start, &end],
        )
        .await?
        .iter()
        .map(|r| RuleChange {
            pack_id: r.get(0),
            version: r.get(1),
            shadow: r.get(2),
            published_ms: r.get(3),
        })
        .collect())
}

/// Exemptions made or revoked in `[start, end)` that `school`'s stations
/// hold: its own and the trust-wide ones (every one for '', the trust).
async fn exemptions_changed(
    tx: &Transaction<'_>,
    start: i64,
    end: i64,
    school: &str,
) -> Result<Vec<Exemption>, StoreError> {
    Ok(tx
        .query(
            &format!(
                "SELECT {EXEMPTION_COLUMNS} FROM exemptions
                 WHERE ((created_ms >= $1 AND created_ms < $2) OR (revoked_ms >= $1 AND revoked_ms < $2))
                 AND ($3 = '' OR school = '' OR school = $3)
                 ORDER BY created_ms, id"
            ),
            &[&start, &end, &school],
        )
        .await?
        .iter()
        .map(exemption_row)
        .collect())
}

/// Acknowledgements received in `[start, end)`, and who has and has not
/// accepted each group's current notice, on the stations of `school` (''
/// for every school).
async fn notice_counts(
    tx: &Transaction<'_>,
    start: i64,
    end: i64,
    school: &str,
) -> Result<WeekCounts, StoreError> {
    let received: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM notice_acks WHERE received_ms >= $1 AND received_ms < $2
             AND ($3 = '' OR agent_id IN (SELECT agent_id FROM agents WHERE school = $3))",
            &[&start, &end, &school],
        )
        .await?
        .get(0);
    let mut counts = WeekCounts {
        received,
        ..WeekCounts::default()
    };
    for notice in crate::store::notice::shown_at(super::notice::current_all(tx).await?, school) {
        let standings =
            super::notice::standings_in(tx, &notice.grp, school, &notice.school).await?;
        let a = crate::notice::split(&notice.grp, notice.version, standings);
        counts.accepted += a.accepted.len();
        counts.pending += a.pending.len();
    }
    Ok(counts)
}
