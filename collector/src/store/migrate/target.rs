//! The PostgreSQL side: its catalogue says which tables and columns there
//! are and of what type; rows are written in one transaction, then read
//! back for the checks before it commits.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::chain::{Broken, EventRow, Summary, Walk};
use super::source::{quote, Heads};
use super::{MigrateError, EVENT_ORDER};
use crate::store::audit::{ChainCheck, Entry};

/// A column of the target: its name, its type as the catalogue spells it,
/// and whether it is an identity column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    pub identity: bool,
}

/// The target's tables and their columns, and which tables each refers to.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub tables: BTreeMap<String, Vec<Column>>,
    pub refers_to: BTreeMap<String, BTreeSet<String>>,
}

impl Catalogue {
    pub async fn read(tx: &Transaction<'_>) -> Result<Self, tokio_postgres::Error> {
        let mut catalogue = Self::default();
        for r in tx
            .query(
                "SELECT table_name::text, column_name::text, data_type::text, is_identity::text
                 FROM information_schema.columns
                 WHERE table_schema = current_schema()
                 ORDER BY table_name, ordinal_position",
                &[],
            )
            .await?
        {
            let table: String = r.get(0);
            let identity: String = r.get(3);
            catalogue.tables.entry(table).or_default().push(Column {
                name: r.get(1),
                data_type: r.get(2),
                identity: identity == "YES",
            });
        }
        for r in tx
            .query(
                "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
                 FROM pg_constraint c
                 WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
                &[],
            )
            .await?
        {
            let (from, to): (String, String) = (r.get(0), r.get(1));
            let unquote = |s: String| s.trim_matches('"').to_owned();
            catalogue
                .refers_to
                .entry(unquote(from))
                .or_default()
                .insert(unquote(to));
        }
        Ok(catalogue)
    }

    /// `tables` ordered so that a table comes after those it refers to.
    pub fn in_dependency_order(&self, tables: &BTreeSet<String>) -> Vec<String> {
        let mut ordered = Vec::new();
        let mut placed = BTreeSet::new();
        while placed.len() < tables.len() {
            let before = placed.len();
            for t in tables {
                if placed.contains(t) {
                    continue;
                }
                let ready = self.refers_to.get(t).is_none_or(|deps| {
                    deps.iter()
                        .all(|d| d == t || placed.contains(d) || !tables.contains(d))
                });
                if ready {
                    placed.insert(t.clone());
                    ordered.push(t.clone());
                }
            }
            if placed.len() == before {
                // A cycle: the rest in name order (the constraints say if it matters).
                ordered.extend(tables.iter().filter(|t| !placed.contains(*t)).cloned());
                break;
            }
        }
        ordered
    }
}

pub async fn rows_in(tx: &Transaction<'_>, table: &str) -> Result<i64, tokio_postgres::Error> {
    let row = tx
        .query_one(&format!("SELECT count(*) FROM {}", quote(table)), &[])
        .await?;
    Ok(row.get(0))
}

/// One SQLite value as the target column's type wants it; `None` when it
/// cannot be converted without changing its meaning.
fn convert(value: Value, data_type: &str) -> Option<Box<dyn ToSql + Sync + Send>> {
    Some(match (data_type, value) {
        ("bigint", Value::Integer(i)) => Box::new(i),
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("integer", Value::Integer(i)) => Box::new(i32::try_from(i).ok()?),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("smallint", Value::Integer(i)) => Box::new(i16::try_from(i).ok()?),
        ("smallint", Value::Null) => Box::new(None::<i16>),
        ("boolean", Value::Integer(0)) => Box::new(false),
        ("boolean", Value::Integer(1)) => Box::new(true),
        ("boolean", Value::Null) => Box::new(None::<bool>),
        ("bytea", Value::Blob(b)) => Box::new(b),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        ("text" | "character varying", Value::Text(s)) => Box::new(s),
        ("text" | "character varying", Value::Null) => Box::new(None::<String>),
        ("double precision" | "real", Value::Real(f)) => Box::new(f),
        ("double precision" | "real", Value::Integer(i)) => Box::new(i as f64),
        ("double precision" | "real", Value::Null) => Box::new(None::<f64>),
        _ => return None,
    })
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real number",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

/// Inserts `rows` (values in `columns`' order) into `table`, ids kept.
pub async fn insert(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[Column],
    rows: Vec<Vec<Value>>,
) -> Result<(), MigrateError> {
    let width = columns.len();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(rows.len() * width);
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let first = params.len();
        tuples.push(format!(
            "({})",
            (first + 1..=first + width)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (value, column) in row.into_iter().zip(columns) {
            let kind = describe(&value);
            params.push(convert(value, &column.data_type).ok_or_else(|| {
                MigrateError::Convert {
                    table: table.to_owned(),
                    column: column.name.clone(),
                    value: kind,
                    data_type: column.data_type.clone(),
                }
            })?);
        }
    }
    let names = columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let overriding = if columns.iter().any(|c| c.identity) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO {} ({names}){overriding} VALUES {}",
        quote(table),
        tuples.join(", ")
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    tx.execute(sql.as_str(), &refs).await?;
    Ok(())
}

/// Sets `table`'s identity column past the highest id SQLite handed out.
pub async fn continue_identity(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
    sqlite_sequence: Option<i64>,
) -> Result<(), tokio_postgres::Error> {
    let max: Option<i64> = tx
        .query_one(
            &format!("SELECT max({}) FROM {}", quote(column), quote(table)),
            &[],
        )
        .await?
        .get(0);
    let last = max.unwrap_or(0).max(sqlite_sequence.unwrap_or(0));
    if last > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3)",
            &[&quote(table), &column, &last],
        )
        .await?;
    }
    Ok(())
}

/// Every agent's event chain, read back from PostgreSQL.
pub async fn chains(
    tx: &Transaction<'_>,
) -> Result<Result<BTreeMap<String, Summary>, Broken>, tokio_postgres::Error> {
    let stmt = tx
        .prepare(&format!(
            "SELECT agent_id, seq, body, body_hash, signature, chain_ok FROM alerts {EVENT_ORDER}"
        ))
        .await?;
    let portal = tx.bind(&stmt, &[&crate::reports::SOURCE]).await?;
    let mut walk = Walk::default();
    loop {
        let rows = tx.query_portal(&portal, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let row = EventRow {
                agent_id: r.get(0),
                seq: r.get(1),
                body: r.get(2),
                body_hash: r.get(3),
                signature: r.get(4),
                chain_ok: r.get(5),
            };
            if let Err(broken) = walk.next(row) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(Ok(walk.finish()))
}

pub async fn heads(tx: &Transaction<'_>) -> Result<Heads, tokio_postgres::Error> {
    Ok(tx
        .query("SELECT agent_id, last_seq, last_hash FROM agents", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// The console's audit chain, as the SQLite store checks it.
pub async fn audit(tx: &Transaction<'_>) -> Result<Result<usize, i64>, tokio_postgres::Error> {
    let mut check = ChainCheck::default();
    for r in tx
        .query(
            "SELECT id, time_ms, actor, action, target, detail, prev_hash, hash, school FROM console_audit ORDER BY id",
            &[],
        )
        .await?
    {
        let entry = Entry {
            id: r.get(0),
            time_ms: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            detail: r.get(5),
            school: r.get(8),
        };
        let (prev, hash): (String, String) = (r.get(6), r.get(7));
        if !check.next(&entry, &prev, &hash) {
            break;
        }
    }
    Ok(check.result())
}
