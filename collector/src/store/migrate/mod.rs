//! Moving a school's SQLite store into PostgreSQL (`tutela-collector
//! migrate --to postgres://...`). The data directory's lock keeps every
//! collector away while the store is read in one snapshot; the target's
//! schema is brought up to date, then every table both backends have is
//! copied, in dependency order, in one PostgreSQL transaction, with ids
//! kept. Before it commits, row counts, every agent's event chain and the
//! console's audit chain are checked against the source; any difference
//! rolls everything back.

use std::collections::BTreeSet;
use std::path::Path;

use super::postgres::{schema, PgConfig};
use super::sqlite::lock::{DirLock, LockError};
use super::StoreError;

pub mod chain;
pub mod dump;
mod source;
mod target;

use source::Source;
use target::Catalogue;

/// Every event but pupil reports, each agent's in seq order.
const EVENT_ORDER: &str = "WHERE source <> $1 ORDER BY agent_id, seq";

/// Rows sent in one INSERT (a capture row carries up to a few hundred KiB).
const BATCH_ROWS: usize = 200;

/// SQLite tables left behind when PostgreSQL has no such table: counts the
/// agents send again with every heartbeat, so nothing is lost by not moving them.
pub const CACHES: &[&str] = &["shadow_run_counts"];

/// Why a migration did not happen. Nothing is written to PostgreSQL unless
/// every check passed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(
        "there is no SQLite store in {0}: give the collector's data directory with --data-dir"
    )]
    NoSource(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PostgreSQL at {target} already holds data ({table} has {rows} rows): migrate into a new, empty database (createdb -O <user> <database>); nothing was copied")]
    NotEmpty {
        target: String,
        table: String,
        rows: i64,
    },
    #[error("the SQLite store has tables this collector's PostgreSQL schema lacks ({0}): their data would be lost, so nothing was copied; keep this school on SQLite until a collector that stores them in PostgreSQL")]
    Unmovable(String),
    #[error(
        "{table}.{column} in SQLite has columns PostgreSQL lacks ({missing}); nothing was copied"
    )]
    MissingColumns {
        table: String,
        column: String,
        missing: String,
    },
    #[error("cannot copy {value} from SQLite's {table}.{column} into a PostgreSQL {data_type} column without changing it; nothing was copied (the SQLite store may be damaged: check it with `sqlite3 tutela.db 'PRAGMA integrity_check'`)")]
    Convert {
        table: String,
        column: String,
        value: &'static str,
        data_type: String,
    },
    #[error("{table}: {source_rows} rows in SQLite but {target_rows} in PostgreSQL after copying; everything was rolled back")]
    Count {
        table: String,
        source_rows: i64,
        target_rows: i64,
    },
    #[error("agent {agent}'s event chain in {side}: {what}; nothing was copied")]
    Chain {
        agent: String,
        side: &'static str,
        what: String,
    },
    #[error("the console's audit log in {side} breaks at entry {id}; nothing was copied")]
    Audit { side: &'static str, id: i64 },
    #[error("the backup does not match the database it was made from: {0}; the backup was not kept, make it again")]
    BackupDiffers(String),
    #[error("the console's audit log has {source_entries} entries in SQLite but {target_entries} in PostgreSQL; everything was rolled back")]
    AuditCount {
        source_entries: usize,
        target_entries: usize,
    },
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What was copied.
#[derive(Debug, Default)]
pub struct Report {
    /// (table, rows), in the order copied.
    pub copied: Vec<(String, i64)>,
    /// SQLite tables not moved (caches) and PostgreSQL tables SQLite has no
    /// rows for, left as they were.
    pub left: Vec<String>,
    pub agents_checked: usize,
    pub events_checked: u64,
    pub audit_entries: usize,
}

/// Copies the SQLite store in `dir` into the PostgreSQL at `url`; `progress`
/// hears a line per table as it goes.
pub async fn migrate(
    dir: &Path,
    url: &str,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Report, MigrateError> {
    let pg = PgConfig::parse(url)?;
    if !dir.join(super::DB_FILE).exists() {
        return Err(MigrateError::NoSource(dir.display().to_string()));
    }
    let _lock = DirLock::take(dir)?;
    let source = Source::open(dir)?;
    copy(&source, &pg, "SQLite", progress).await
}

/// Copies a dump made by [`dump::dump`] (a PostgreSQL backup) into the
/// empty PostgreSQL database `pg`, with the same checks as a migration.
pub async fn restore(
    file: &Path,
    pg: &PgConfig,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Report, MigrateError> {
    let source = Source::open_dump(file)?;
    let version: i64 = source
        .meta("schema_version")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if version > schema::VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known: schema::VERSION,
        }
        .into());
    }
    copy(&source, pg, "the backup", progress).await
}

/// Copies every table of `source` (called `side` in messages) into `pg`,
/// in one transaction, checked before it commits.
async fn copy(
    source: &Source,
    pg: &PgConfig,
    side: &'static str,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Report, MigrateError> {
    // The source's own chains first: a store broken before moving is
    // reported as such, not as a copying fault, before PostgreSQL is touched.
    let source_chains = source.chains()?.map_err(|b| MigrateError::Chain {
        agent: b.agent_id,
        side,
        what: b.what,
    })?;
    let source_audit = source
        .audit()?
        .map_err(|id| MigrateError::Audit { side, id })?;

    let mut client = pg.connect().await?;
    schema::migrate(&mut client).await?;
    let tx = client.transaction().await?;
    let catalogue = Catalogue::read(&tx).await?;

    let mut report = Report::default();
    let sqlite_tables: BTreeSet<String> = source.tables()?.into_iter().collect();
    let unmovable: Vec<&String> = sqlite_tables
        .iter()
        .filter(|t| !catalogue.tables.contains_key(*t))
        .collect();
    let (caches, lost): (Vec<&String>, Vec<&String>) = unmovable
        .into_iter()
        .partition(|t| CACHES.contains(&t.as_str()));
    if !lost.is_empty() {
        let lost: Vec<&str> = lost.iter().map(|t| t.as_str()).collect();
        return Err(MigrateError::Unmovable(lost.join(", ")));
    }
    report.left.extend(caches.into_iter().cloned());
    let both: BTreeSet<String> = sqlite_tables
        .iter()
        .filter(|t| catalogue.tables.contains_key(*t))
        .cloned()
        .collect();
    report.left.extend(
        catalogue
            .tables
            .keys()
            .filter(|t| !both.contains(*t) && t.as_str() != "tutela_schema")
            .cloned(),
    );
    // Refused before anything is written: the target must be empty.
    for table in &both {
        let rows = target::rows_in(&tx, table).await?;
        if rows > 0 {
            return Err(MigrateError::NotEmpty {
                target: pg.target().to_owned(),
                table: table.clone(),
                rows,
            });
        }
    }
    for table in catalogue.in_dependency_order(&both) {
        let sqlite_columns = source.columns(&table)?;
        let pg_columns = &catalogue.tables[&table];
        let missing: Vec<&str> = sqlite_columns
            .iter()
            .filter(|c| !pg_columns.iter().any(|p| &p.name == *c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(MigrateError::MissingColumns {
                table: table.clone(),
                column: missing[0].to_owned(),
                missing: missing.join(", "),
            });
        }
        // PostgreSQL columns SQLite lacks keep their defaults.
        let columns: Vec<target::Column> = pg_columns
            .iter()
            .filter(|p| sqlite_columns.contains(&p.name))
            .cloned()
            .collect();
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let total = source.count(&table)?;
        let mut copied = 0i64;
        let tx = &tx;
        let table_name = table.as_str();
        let columns_ref = &columns;
        source
            .rows(&table, &names, BATCH_ROWS, |rows| {
                copied += rows.len() as i64;
                async move { target::insert(tx, table_name, columns_ref, rows).await }
            })
            .await?;
        for column in columns.iter().filter(|c| c.identity) {
            target::continue_identity(tx, &table, &column.name, source.sequence(&table)?).await?;
        }
        progress(format!("{table}: {copied} / {total} rows copied"));
        report.copied.push((table.clone(), total));
    }

    // Checks, inside the transaction: nothing is kept unless all pass.
    for (table, source_rows) in &report.copied {
        let target_rows = target::rows_in(&tx, table).await?;
        if target_rows != *source_rows {
            return Err(MigrateError::Count {
                table: table.clone(),
                source_rows: *source_rows,
                target_rows,
            });
        }
    }
    if both.contains("alerts") {
        let target_chains = target::chains(&tx)
            .await?
            .map_err(|b| MigrateError::Chain {
                agent: b.agent_id,
                side: "PostgreSQL",
                what: b.what,
            })?;
        chain::compare(&source_chains, &target_chains).map_err(|b| MigrateError::Chain {
            agent: b.agent_id,
            side: "PostgreSQL",
            what: b.what,
        })?;
        report.agents_checked = source_chains.len();
        report.events_checked = source_chains.values().map(|s| s.events).sum();
    }
    if both.contains("agents") {
        let (source_heads, target_heads) = (source.heads()?, target::heads(&tx).await?);
        if let Some((agent, _)) = source_heads
            .iter()
            .find(|(a, head)| target_heads.get(*a) != Some(*head))
        {
            return Err(MigrateError::Chain {
                agent: agent.clone(),
                side: "PostgreSQL",
                what: "its chain head (last seq and hash) differs from SQLite's".into(),
            });
        }
    }
    if both.contains("console_audit") {
        let target_audit = target::audit(&tx)
            .await?
            .map_err(|id| MigrateError::Audit {
                side: "PostgreSQL",
                id,
            })?;
        if target_audit != source_audit {
            return Err(MigrateError::AuditCount {
                source_entries: source_audit,
                target_entries: target_audit,
            });
        }
        report.audit_entries = target_audit;
    }
    tx.commit().await?;
    Ok(report)
}
