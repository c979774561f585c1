//! The webhook outbox and cursors on SQLite.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::store::webhook::{
    AlertFacts, Claimed, PostOutcome, Row, TargetAlerts, TargetScope, WebhookQueued, WebhookScan,
};
use crate::store::{now_ms, StoreError};
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    body BLOB NOT NULL,
    alerts INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    failed_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (sent_ms, next_attempt_ms);
-- Per target: every alert at or below this id has been considered.
CREATE TABLE IF NOT EXISTS webhook_cursor (
    target TEXT PRIMARY KEY,
    alert_id INTEGER NOT NULL
);
";

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The newest alert's id (0 with none).
pub fn newest_alert(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |r| r.get(0))
}

/// Sets a new target's cursor to the newest alert: alerts from before a
/// target was added are not posted to it.
pub fn init_cursor(conn: &Connection, target: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO webhook_cursor (target, alert_id)
         VALUES (?1, (SELECT COALESCE(MAX(id), 0) FROM alerts))",
        [target],
    )?;
    Ok(())
}

pub fn cursor(conn: &Connection, target: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT alert_id FROM webhook_cursor WHERE target = ?1",
            [target],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub fn set_cursor(conn: &Connection, target: &str, alert_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO webhook_cursor (target, alert_id) VALUES (?1, ?2)
         ON CONFLICT(target) DO UPDATE SET alert_id = ?2",
        params![target, alert_id],
    )?;
    Ok(())
}

/// Alerts above `after` up to `newest` at `min_severity` or more, not folded
/// into another, in scope (`scope` on alias `a`, with its values), most
/// severe first.
pub fn pending_alerts(
    conn: &Connection,
    scope: &str,
    scope_values: Vec<rusqlite::types::Value>,
    after: i64,
    newest: i64,
    min_severity: i64,
) -> rusqlite::Result<Vec<AlertFacts>> {
    use rusqlite::types::Value;
    let mut values = scope_values;
    values.extend([
        Value::Integer(after),
        Value::Integer(newest),
        Value::Integer(min_severity),
    ]);
    let sql = format!(
        "SELECT a.id, a.time_ms, a.severity, a.category, a.term, a.user, a.station FROM alerts a
         WHERE ({scope}) AND a.id > ? AND a.id <= ? AND a.severity >= ? AND a.state <> 'folded'
         ORDER BY a.severity DESC, a.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        Ok(AlertFacts {
            id: r.get(0)?,
            time_ms: r.get(1)?,
            severity: r.get(2)?,
            category: r.get(3)?,
            term: r.get(4)?,
            user: r.get(5)?,
            station: r.get(6)?,
        })
    })?;
    rows.collect()
}

pub fn enqueue(
    conn: &Connection,
    target: &str,
    body: &[u8],
    alerts: usize,
) -> rusqlite::Result<()> {
    let now = now_ms();
    conn.execute(
        "INSERT INTO webhook_outbox (target, body, alerts, created_ms, next_attempt_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![target, body, alerts as i64, now],
    )?;
    Ok(())
}

/// Claims the next row due at `cutoff` for `claim_ms`.
pub fn claim_due(
    conn: &Connection,
    cutoff: i64,
    claim_ms: i64,
) -> rusqlite::Result<Option<Claimed>> {
    loop {
        let row: Option<Claimed> = conn
            .query_row(
                "SELECT id, target, body, attempts FROM webhook_outbox
                 WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?1
                 ORDER BY next_attempt_ms, id LIMIT 1",
                [cutoff],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let claimed = conn.execute(
            "UPDATE webhook_outbox SET next_attempt_ms = ?2
             WHERE id = ?1 AND sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?3",
            params![row.0, now_ms() + claim_ms, cutoff],
        )?;
        if claimed == 1 {
            return Ok(Some(row));
        }
    }
}

pub fn posted(
    conn: &Connection,
    id: i64,
    attempts: i64,
    outcome: &PostOutcome,
) -> rusqlite::Result<()> {
    match outcome {
        PostOutcome::Sent => conn.execute(
            "UPDATE webhook_outbox SET sent_ms = ?2, attempts = ?3, last_error = '' WHERE id = ?1",
            params![id, now_ms(), attempts],
        ),
        PostOutcome::Refused(error) => conn.execute(
            "UPDATE webhook_outbox SET failed_ms = ?2, attempts = ?3, last_error = ?4 WHERE id = ?1",
            params![id, now_ms(), attempts, error],
        ),
        PostOutcome::Retry { next_ms, error } => conn.execute(
            "UPDATE webhook_outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_ms, error],
        ),
    }?;
    Ok(())
}

pub fn prune_sent(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM webhook_outbox WHERE sent_ms < ?1 OR failed_ms < ?1",
        [before_ms],
    )
}

/// The newest `limit` rows, unsent first.
pub fn rows(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<Row>> {
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT id, target, alerts, created_ms, attempts, next_attempt_ms, sent_ms, failed_ms, last_error
         FROM webhook_outbox ORDER BY sent_ms IS NOT NULL, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(Row {
            id: r.get(0)?,
            target: r.get(1)?,
            alerts: r.get(2)?,
            created_ms: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_ms: r.get(5)?,
            sent_ms: r.get(6)?,
            failed_ms: r.get(7)?,
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Queues again the messages a receiver refused for good; returns how many.
pub fn retry_failed(conn: &Connection) -> rusqlite::Result<usize> {
    ensure_schema(conn)?;
    conn.execute(
        "UPDATE webhook_outbox SET failed_ms = NULL, attempts = 0, next_attempt_ms = ?1,
            last_error = 'queued again after: ' || last_error
         WHERE failed_ms IS NOT NULL AND sent_ms IS NULL",
        [now_ms()],
    )
}

/// Each target's new alerts, read in one transaction.
pub fn scan(
    conn: &mut Connection,
    targets: &[TargetScope],
    staff_pattern: &str,
) -> Result<WebhookScan, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let newest = newest_alert(&tx)?;
    let (staff, staff_values) = super::urgent::staff_condition(&tx, staff_pattern)?;
    let mut out = WebhookScan {
        newest,
        targets: Vec::new(),
    };
    for target in targets {
        let after = cursor(&tx, &target.name)?;
        let alerts = if newest <= after {
            Vec::new()
        } else {
            let scope = if target.staff {
                format!("({staff})")
            } else {
                format!("NOT ({staff})")
            };
            // The school's parameters follow the staff condition's.
            let scope = format!("{scope} AND (? = '' OR a.school = ?)");
            let mut values = staff_values.clone();
            values.extend([
                rusqlite::types::Value::Text(target.school.clone()),
                rusqlite::types::Value::Text(target.school.clone()),
            ]);
            pending_alerts(&tx, &scope, values, after, newest, target.min_severity)?
        };
        out.targets.push(TargetAlerts {
            name: target.name.clone(),
            after,
            alerts,
        });
    }
    tx.finish()?;
    Ok(out)
}

/// Writes the messages and moves the cursors, unless one moved meanwhile.
pub fn record(
    conn: &mut Connection,
    newest: i64,
    queued: &[WebhookQueued],
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for q in queued {
        if cursor(&tx, &q.name)? != q.after {
            return Ok(false);
        }
        if let Some((body, alerts)) = &q.message {
            enqueue(&tx, &q.name, body, *alerts)?;
        }
        if newest > q.after {
            set_cursor(&tx, &q.name, newest)?;
        }
    }
    tx.commit()?;
    Ok(true)
}
