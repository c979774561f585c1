//! Alerts as the review console reads them, and their review, on
//! PostgreSQL. Every read goes through the viewer's staff scope; every
//! change commits with its audit entry. A state change applies only if the
//! alert is still in the state the reviewer saw, so two reviewers on two
//! collectors cannot both move it.

use tokio_postgres::{Client, Error, Row};

use super::console::{Pg, Sql};
use super::filter::{filtered, scope_sql};
use super::users::audit;
use crate::store::review::{
    transition_detail, Alert, AlertFilter, Cursor, HistoryEntry, Listing, Note, QueueRow, RuleRate,
    Scope, StateFilter, TimelineRow, Transition, Walk, OPEN_STATES,
};
use crate::store::schools::Scope as Schools;
use crate::store::users::Audited;
use crate::store::StoreError;

const COLUMNS: &str = "a.id, a.event_id, a.agent_id, a.seq, a.time_ms, a.received_ms, a.clock_skew, a.chain_ok,
    a.\"user\", a.station, a.source, a.context, a.app, a.window_title, a.url, a.search_query, a.category,
    a.severity, a.rule_id, a.term, a.matches, a.rules_version, a.repeat_count, a.has_capture, a.state,
    a.repeat_of, a.body, a.signature, a.body_hash, COALESCE(r.assignee, ''), COALESCE(r.fp_reason, ''), a.signed_as, a.school";

fn alert_row(r: &Row) -> Alert {
    Alert {
        id: r.get(0),
        event_id: r.get(1),
        agent_id: r.get(2),
        seq: r.get(3),
        time_ms: r.get(4),
        received_ms: r.get(5),
        clock_skew: r.get(6),
        chain_ok: r.get(7),
        user: r.get(8),
        station: r.get(9),
        source: r.get(10),
        context: r.get(11),
        app: r.get(12),
        window_title: r.get(13),
        url: r.get(14),
        search_query: r.get(15),
        category: r.get(16),
        severity: r.get(17),
        rule_id: r.get(18),
        term: r.get(19),
        matches: r.get(20),
        rules_version: r.get(21),
        repeats: r.get(22),
        has_capture: r.get(23),
        state: r.get(24),
        repeat_of: r.get(25),
        body: r.get(26),
        signature: r.get(27),
        body_hash: r.get(28),
        assignee: r.get(29),
        fp_reason: r.get(30),
        signed_as: r.get(31),
        school: r.get(32),
    }
}

/// Applies one transition inside the caller's transaction; `false` when
/// the alert is no longer in `t.from`.
async fn apply(c: &Client, actor: &str, t: &Transition<'_>, now_ms: i64) -> Result<bool, Error> {
    let moved = c
        .execute(
            "UPDATE alerts SET state = $2 WHERE id = $1 AND state = $3",
            &[&t.alert_id, &t.to, &t.from],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let fp_reason = if t.to == "false_positive" {
        t.reason
    } else {
        ""
    };
    c.execute(
        "INSERT INTO console_review (alert_id, fp_reason, updated_ms) VALUES ($1, $2, $3)
         ON CONFLICT (alert_id) DO UPDATE SET fp_reason = EXCLUDED.fp_reason, updated_ms = EXCLUDED.updated_ms",
        &[&t.alert_id, &fp_reason, &now_ms],
    )
    .await?;
    c.execute(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&t.alert_id, &now_ms, &actor, &t.from, &t.to, &t.reason],
    )
    .await?;
    audit(
        c,
        &Audited {
            actor,
            action: "state_change",
            target: &format!("alert:{}", t.alert_id),
            detail: &transition_detail(t),
        },
    )
    .await?;
    Ok(true)
}

impl Pg<'_> {
    pub fn queue_rows(
        &self,
        f: &AlertFilter,
        keyset: Option<(Cursor, Walk)>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<QueueRow>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let Some(mut sql) = filtered(c, f).await? else {
                return Ok(Vec::new());
            };
            match &f.state {
                StateFilter::Open => sql
                    .text
                    .push_str(&format!(" AND a.state IN ('{}')", OPEN_STATES.join("','"))),
                StateFilter::All => {}
                StateFilter::One(s) => sql.text.push_str(&format!(" AND a.state = '{s}'")),
            }
            let order = match keyset {
                Some((cursor, walk)) => {
                    let (s, t, i) = (
                        sql.param(cursor.severity),
                        sql.param(cursor.time_ms),
                        sql.param(cursor.id),
                    );
                    let (op, order) = match walk {
                        Walk::Forward => ("<", "DESC"),
                        Walk::Backward => (">", "ASC"),
                    };
                    sql.text.push_str(&format!(
                        " AND (a.severity, a.time_ms, a.id) {op} ({s}, {t}, {i})"
                    ));
                    order
                }
                None => "DESC",
            };
            let (l, o) = (sql.param(limit), sql.param(offset));
            let text = format!(
                "SELECT a.id, a.time_ms, a.\"user\", a.station, a.source, a.category, a.severity, a.rule_id, a.term,
                    a.state, a.repeat_count, a.has_capture, substr(a.context, 1, 160), COALESCE(r.assignee, ''), a.school
                 FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
                 WHERE {} ORDER BY a.severity {order}, a.time_ms {order}, a.id {order} LIMIT {l} OFFSET {o}",
                sql.text
            );
            Ok(c.query(&text, &sql.params())
                .await?
                .iter()
                .map(|r| QueueRow {
                    id: r.get(0),
                    time_ms: r.get(1),
                    user: r.get(2),
                    station: r.get(3),
                    source: r.get(4),
                    category: r.get(5),
                    severity: r.get(6),
                    rule_id: r.get(7),
                    term: r.get(8),
                    state: r.get(9),
                    repeats: r.get(10),
                    has_capture: r.get(11),
                    context: r.get(12),
                    assignee: r.get(13),
                    school: r.get(14),
                })
                .collect())
        })
    }

    pub fn state_counts(&self, f: &AlertFilter) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let Some(sql) = filtered(c, f).await? else {
                return Ok(Vec::new());
            };
            let text = format!(
                "SELECT a.state, COUNT(*) FROM alerts a WHERE {} GROUP BY a.state",
                sql.text
            );
            Ok(c.query(&text, &sql.params())
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    pub fn max_alert_id(&self, scope: &Schools) -> Result<i64, StoreError> {
        let c = self.client()?;
        let school = scope.list();
        self.run(async move {
            Ok(c.query_one(
                "SELECT COALESCE(MAX(id), 0)::BIGINT FROM alerts
                 WHERE $1::TEXT[] IS NULL OR school = ANY($1)",
                &[&school],
            )
            .await?
            .get(0))
        })
    }

    pub fn alert(&self, scope: &Scope, id: i64) -> Result<Option<Alert>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut sql = Sql::default();
            if !scope_sql(c, scope, &mut sql).await? {
                return Ok(None);
            }
            let p = sql.param(id);
            let text = format!(
                "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
                 WHERE {} AND a.id = {p}",
                sql.text
            );
            Ok(c.query_opt(&text, &sql.params())
                .await?
                .as_ref()
                .map(alert_row))
        })
    }

    /// The alerts `listing` asks for, whatever their viewer scope, oldest first.
    pub fn listing(&self, listing: &Listing) -> Result<Vec<Alert>, StoreError> {
        let c = self.client()?;
        let limit = listing.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        self.run(async move {
            Ok(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
                     WHERE ($1::TEXT IS NULL OR a.agent_id = $1) AND ($2 OR a.state <> 'folded')
                     ORDER BY a.id LIMIT $3"
                ),
                &[&listing.agent_id, &listing.include_folded, &limit],
            )
            .await?
            .iter()
            .map(alert_row)
            .collect())
        })
    }

    pub fn alerts_of(&self, scope: &Scope, account: &str) -> Result<Vec<Alert>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut sql = Sql::default();
            if !scope_sql(c, scope, &mut sql).await? {
                return Ok(Vec::new());
            }
            let p = sql.param(account.to_lowercase());
            let text = format!(
                "SELECT {COLUMNS} FROM alerts a LEFT JOIN console_review r ON r.alert_id = a.id
                 WHERE {} AND lower(a.\"user\") = {p} ORDER BY a.time_ms, a.id",
                sql.text
            );
            Ok(c.query(&text, &sql.params())
                .await?
                .iter()
                .map(alert_row)
                .collect())
        })
    }

    pub fn original_alert_id(
        &self,
        agent_id: &str,
        event_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT id FROM alerts WHERE agent_id = $1 AND event_id = $2 AND repeat_of = '' LIMIT 1",
                &[&agent_id, &event_id],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    pub fn agent_public_key(&self, agent_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT public_key FROM agents WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    pub fn revealed(&self, session_hash: &[u8], alert_id: i64) -> Result<bool, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM console_reveals WHERE session_hash = $1 AND alert_id = $2)",
                &[&session_hash, &alert_id],
            )
            .await?
            .get(0))
        })
    }

    pub fn rule_rate(&self, scope: &Scope, rule_id: &str) -> Result<(i64, i64), StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut sql = Sql::default();
            if !scope_sql(c, scope, &mut sql).await? {
                return Ok((0, 0));
            }
            let p = sql.param(rule_id.to_owned());
            let text = format!(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE a.state = 'false_positive') FROM alerts a
                 WHERE {} AND a.rule_id = {p} AND a.state <> 'folded'",
                sql.text
            );
            let r = c.query_one(&text, &sql.params()).await?;
            Ok((r.get(0), r.get(1)))
        })
    }

    pub fn rule_rates(&self, scope: &Scope) -> Result<Vec<RuleRate>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut sql = Sql::default();
            if !scope_sql(c, scope, &mut sql).await? {
                return Ok(Vec::new());
            }
            let text = format!(
                "SELECT a.rule_id, MIN(a.category), COUNT(*), COUNT(*) FILTER (WHERE a.state = 'false_positive')
                 FROM alerts a WHERE {} AND a.state <> 'folded' GROUP BY a.rule_id
                 ORDER BY COUNT(*) FILTER (WHERE a.state = 'false_positive') * 1.0 / COUNT(*) DESC, COUNT(*) DESC",
                sql.text
            );
            Ok(c.query(&text, &sql.params())
                .await?
                .iter()
                .map(|r| RuleRate {
                    rule_id: r.get(0),
                    category: r.get(1),
                    total: r.get(2),
                    false_positives: r.get(3),
                })
                .collect())
        })
    }

    pub fn burst_shots(&self, agent_id: &str, event_id: &str) -> Result<Vec<i64>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(
                "SELECT id FROM alerts WHERE agent_id = $1 AND repeat_of = $2 AND has_capture ORDER BY seq",
                &[&agent_id, &event_id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    pub fn notes(&self, alert_id: i64) -> Result<Vec<Note>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(
                "SELECT time_ms, author, text FROM console_notes WHERE alert_id = $1 ORDER BY id",
                &[&alert_id],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
        })
    }

    pub fn history(&self, alert_id: i64) -> Result<Vec<HistoryEntry>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(
                "SELECT time_ms, actor, from_state, to_state, reason FROM console_history WHERE alert_id = $1 ORDER BY id",
                &[&alert_id],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
        })
    }

    pub fn timeline(&self, scope: &Scope, user: &str) -> Result<Vec<TimelineRow>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut sql = Sql::default();
            if !scope_sql(c, scope, &mut sql).await? {
                return Ok(Vec::new());
            }
            let p = sql.param(user.to_owned());
            let text = format!(
                "SELECT a.id, a.time_ms, a.category, a.severity, a.state, a.school FROM alerts a
                 WHERE {} AND a.\"user\" = {p} AND a.state <> 'folded' ORDER BY a.time_ms DESC LIMIT 50",
                sql.text
            );
            Ok(c.query(&text, &sql.params())
                .await?
                .iter()
                .map(|r| TimelineRow {
                    id: r.get(0),
                    time_ms: r.get(1),
                    category: r.get(2),
                    severity: r.get(3),
                    state: r.get(4),
                    school: r.get(5),
                })
                .collect())
        })
    }

    pub fn capture_sha256(&self, alert_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT sha256 FROM captures WHERE alert_id = $1",
                &[&alert_id],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    pub fn capture_facts(
        &self,
        alert_id: i64,
    ) -> Result<Option<crate::store::console::CaptureFacts>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT sha256, width, height FROM captures WHERE alert_id = $1",
                &[&alert_id],
            )
            .await?
            .map(|r| crate::store::console::CaptureFacts {
                sha256: r.get(0),
                width: r.get::<_, i64>(1) as u32,
                height: r.get::<_, i64>(2) as u32,
            }))
        })
    }

    pub fn record_reveal(
        &self,
        session_hash: &[u8],
        alert_id: i64,
        user: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "INSERT INTO console_reveals (session_hash, alert_id, \"user\", reason, time_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&session_hash, &alert_id, &user, &reason, &now_ms],
            )
            .await?;
            audit(
                c,
                &Audited {
                    actor: user,
                    action: "reveal_capture",
                    target: &format!("alert:{alert_id}"),
                    detail: &format!("reason: {reason}"),
                },
            )
            .await
        })
    }

    pub fn transitions(
        &self,
        actor: &str,
        transitions: &[Transition<'_>],
        now_ms: i64,
        closing: Option<&dyn Fn(usize) -> (String, String, String)>,
    ) -> Result<usize, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            let mut moved = 0;
            for t in transitions {
                if apply(c, actor, t, now_ms).await? {
                    moved += 1;
                }
            }
            if let Some(closing) = closing {
                let (action, target, detail) = closing(moved);
                audit(
                    c,
                    &Audited {
                        actor,
                        action: &action,
                        target: &target,
                        detail: &detail,
                    },
                )
                .await?;
            }
            Ok(moved)
        })
    }

    pub fn assign(
        &self,
        actor: &str,
        alert_id: i64,
        assignee: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "INSERT INTO console_review (alert_id, assignee, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (alert_id) DO UPDATE SET assignee = EXCLUDED.assignee, updated_ms = EXCLUDED.updated_ms",
                &[&alert_id, &assignee, &now_ms],
            )
            .await?;
            let to = if assignee.is_empty() { "nobody" } else { assignee };
            audit(
                c,
                &Audited {
                    actor,
                    action: "assign",
                    target: &format!("alert:{alert_id}"),
                    detail: &format!("to {to}"),
                },
            )
            .await
        })
    }

    pub fn add_note(
        &self,
        author: &str,
        alert_id: i64,
        text: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES ($1, $2, $3, $4)",
                &[&alert_id, &now_ms, &author, &text],
            )
            .await?;
            // The note's text stays out of the audit log; its existence does not.
            audit(
                c,
                &Audited {
                    actor: author,
                    action: "add_note",
                    target: &format!("alert:{alert_id}"),
                    detail: &format!("{} characters", text.chars().count()),
                },
            )
            .await
        })
    }
}
