//! A PostgreSQL store written into one file (`tutela-collector backup` on
//! PostgreSQL): every table of the collector's schema, read in one
//! REPEATABLE READ, READ ONLY transaction (one consistent snapshot while
//! collectors keep writing), copied into a new SQLite file with the same
//! table and column names. The file is checked against the snapshot before
//! the transaction ends: row counts, every agent's event chain and the
//! console's audit chain. [`restore`](super::restore) copies such a file
//! back into an empty PostgreSQL database with the same checks.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::Connection;
use tokio_postgres::{IsolationLevel, Row, Transaction};

use super::source::{quote, Source};
use super::target::{self, Catalogue, Column};
use super::MigrateError;
use crate::store::postgres::{schema, PgConfig};

/// The dump's own tables (not the collector's): what it holds and from where.
pub const META_TABLE: &str = "tutela_dump_meta";
/// Where each identity column's sequence stood, so a restore continues past it.
pub const SEQUENCES_TABLE: &str = "tutela_dump_sequences";

/// Rows read from PostgreSQL per round trip.
const FETCH_ROWS: i32 = 500;

/// What a dump holds, as checked against the snapshot.
#[derive(Debug, Default, Clone)]
pub struct DumpReport {
    /// (table, rows), in name order.
    pub tables: Vec<(String, i64)>,
    pub schema_version: i64,
    pub agents_checked: usize,
    pub events_checked: u64,
    pub audit_entries: usize,
}

/// How a PostgreSQL column is kept in the dump; `None` for a type the
/// collector's schema does not use.
fn affinity(data_type: &str) -> Option<&'static str> {
    Some(match data_type {
        "bigint" | "integer" | "smallint" | "boolean" => "INTEGER",
        "bytea" => "BLOB",
        "text" | "character varying" => "TEXT",
        "double precision" | "real" => "REAL",
        _ => return None,
    })
}

/// Column `i` of `row` (of PostgreSQL type `data_type`) as an SQLite value.
fn value(row: &Row, i: usize, data_type: &str) -> Result<Value, tokio_postgres::Error> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map_or(Value::Null, f)
    }
    Ok(match data_type {
        "bigint" => or_null(row.try_get::<_, Option<i64>>(i)?, Value::Integer),
        "integer" => or_null(row.try_get::<_, Option<i32>>(i)?, |v| {
            Value::Integer(v.into())
        }),
        "smallint" => or_null(row.try_get::<_, Option<i16>>(i)?, |v| {
            Value::Integer(v.into())
        }),
        "boolean" => or_null(row.try_get::<_, Option<bool>>(i)?, |v| {
            Value::Integer(v.into())
        }),
        "bytea" => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?, Value::Blob),
        "double precision" => or_null(row.try_get::<_, Option<f64>>(i)?, Value::Real),
        "real" => or_null(row.try_get::<_, Option<f32>>(i)?, |v| Value::Real(v.into())),
        _ => or_null(row.try_get::<_, Option<String>>(i)?, Value::Text),
    })
}

/// Writes the PostgreSQL store at `pg` into the new file `out`.
pub async fn dump(pg: &PgConfig, out: &Path) -> Result<DumpReport, MigrateError> {
    let mut client = pg.connect().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let version: i64 = tx
        .query_opt("SELECT version FROM tutela_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    if version == 0 {
        return Err(MigrateError::Store(crate::store::StoreError::BadUrl(
            format!(
            "{} holds no Tutela store (no schema version): check [storage] url in collector.toml",
            pg.target()
        ),
        )));
    }
    if version > schema::VERSION {
        return Err(crate::store::StoreError::SchemaTooNew {
            found: version,
            known: schema::VERSION,
        }
        .into());
    }
    let catalogue = Catalogue::read(&tx).await?;
    let mut sqlite = Connection::open(out)?;
    sqlite.pragma_update(None, "journal_mode", "OFF")?;
    sqlite.pragma_update(None, "synchronous", "OFF")?;
    let file = sqlite.transaction()?;
    file.execute_batch(&format!(
        "CREATE TABLE {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE {SEQUENCES_TABLE} (table_name TEXT PRIMARY KEY, last_value INTEGER NOT NULL);"
    ))?;
    file.execute(
        &format!("INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', ?1), ('source', 'postgres'), ('collector_version', ?2)"),
        rusqlite::params![version.to_string(), env!("CARGO_PKG_VERSION")],
    )?;
    let mut report = DumpReport {
        schema_version: version,
        ..DumpReport::default()
    };
    for (table, columns) in &catalogue.tables {
        if table == "tutela_schema" {
            continue;
        }
        let rows = copy_table(&tx, &file, table, columns).await?;
        report.tables.push((table.clone(), rows));
        if let Some(identity) = columns.iter().find(|c| c.identity) {
            let last: Option<i64> = tx
                .query_one(
                    "SELECT last_value FROM pg_sequences
                     WHERE schemaname = current_schema()
                       AND sequencename = split_part(pg_get_serial_sequence($1, $2), '.', 2)
                       AND last_value IS NOT NULL",
                    &[&quote(table), &identity.name],
                )
                .await
                .ok()
                .and_then(|r| r.get(0));
            if let Some(last) = last {
                file.execute(
                    &format!(
                        "INSERT INTO {SEQUENCES_TABLE} (table_name, last_value) VALUES (?1, ?2)"
                    ),
                    rusqlite::params![table, last],
                )?;
            }
        }
    }
    file.commit()?;
    drop(sqlite);
    check(&tx, out, &mut report).await?;
    tx.commit().await?;
    Ok(report)
}

/// Copies every row of `table` into a new table of the same name in `file`.
async fn copy_table(
    tx: &Transaction<'_>,
    file: &Connection,
    table: &str,
    columns: &[Column],
) -> Result<i64, MigrateError> {
    let mut decls = Vec::with_capacity(columns.len());
    for c in columns {
        let kind = affinity(&c.data_type).ok_or_else(|| MigrateError::Convert {
            table: table.to_owned(),
            column: c.name.clone(),
            value: "a value",
            data_type: c.data_type.clone(),
        })?;
        decls.push(format!("{} {kind}", quote(&c.name)));
    }
    file.execute_batch(&format!(
        "CREATE TABLE {} ({})",
        quote(table),
        decls.join(", ")
    ))?;
    let names = columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut insert = file.prepare(&format!(
        "INSERT INTO {} ({names}) VALUES ({})",
        quote(table),
        vec!["?"; columns.len()].join(", ")
    ))?;
    let stmt = tx
        .prepare(&format!("SELECT {names} FROM {}", quote(table)))
        .await?;
    let portal = tx.bind(&stmt, &[]).await?;
    let mut copied = 0i64;
    loop {
        let rows = tx.query_portal(&portal, FETCH_ROWS).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let values = columns
                .iter()
                .enumerate()
                .map(|(i, c)| value(row, i, &c.data_type))
                .collect::<Result<Vec<_>, _>>()?;
            insert.execute(rusqlite::params_from_iter(values))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Checks the file against the snapshot it was read from: the same rows in
/// every table, the same event chains, an intact audit chain.
async fn check(
    tx: &Transaction<'_>,
    out: &Path,
    report: &mut DumpReport,
) -> Result<(), MigrateError> {
    let file = Source::open_dump(out)?;
    for (table, rows) in &report.tables {
        let source_rows = target::rows_in(tx, table).await?;
        let file_rows = file.count(table)?;
        if source_rows != *rows || file_rows != *rows {
            return Err(MigrateError::BackupDiffers(format!(
                "{table} has {source_rows} rows in PostgreSQL but {file_rows} in the backup"
            )));
        }
    }
    let has = |t: &str| report.tables.iter().any(|(n, _)| n == t);
    if has("alerts") {
        let live = target::chains(tx).await?.map_err(|b| MigrateError::Chain {
            agent: b.agent_id,
            side: "PostgreSQL",
            what: b.what,
        })?;
        let copied = file.chains()?.map_err(|b| MigrateError::Chain {
            agent: b.agent_id,
            side: "the backup",
            what: b.what,
        })?;
        super::chain::compare(&live, &copied).map_err(|b| MigrateError::Chain {
            agent: b.agent_id,
            side: "the backup",
            what: b.what,
        })?;
        report.agents_checked = live.len();
        report.events_checked = live.values().map(|s| s.events).sum();
    }
    if has("console_audit") {
        let live = target::audit(tx).await?.map_err(|id| MigrateError::Audit {
            side: "PostgreSQL",
            id,
        })?;
        let copied = file.audit()?.map_err(|id| MigrateError::Audit {
            side: "the backup",
            id,
        })?;
        if live != copied {
            return Err(MigrateError::BackupDiffers(format!(
                "the audit log has {live} entries in PostgreSQL but {copied} in the backup"
            )));
        }
        report.audit_entries = live;
    }
    Ok(())
}

/// The schema version a dump file was made at (0 when it is not a dump).
pub fn schema_version(path: &Path) -> Result<i64, MigrateError> {
    let file = Source::open_dump(path)?;
    Ok(file
        .meta("schema_version")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}
