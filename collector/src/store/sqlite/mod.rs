//! The embedded backend: SQLite (WAL) in the data directory. One writer
//! thread owns the write path for events, heartbeats and enrolments; other
//! writes (tokens, CLI) are short transactions.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::agents::{AgentKeyRow, NewToken, TokenInfo};

pub mod agents;
pub mod audit;
pub mod blob;
pub mod console_schema;
pub mod exemption;
pub mod fleet;
pub mod grants;
pub mod ingest;
pub mod jobs;
pub mod lock;
pub mod mail;
pub mod notice;
pub mod publication;
pub mod reports;
pub mod retention;
pub mod review;
pub mod schools;
pub mod settings;
pub mod summary;
pub mod urgent;
pub mod users;
pub mod webhook;

pub const DB_FILE: &str = "tutela.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL UNIQUE,
    station TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    enrolled_ms INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_hash BLOB,
    rules_version INTEGER NOT NULL DEFAULT 0,
    spool_backlog INTEGER NOT NULL DEFAULT 0,
    spool_dropped INTEGER NOT NULL DEFAULT 0,
    flag TEXT,
    -- The identity this one replaced by re-keying (a cloned image), or ''.
    rekeyed_from TEXT NOT NULL DEFAULT '',
    -- Agent time of the last heartbeat accepted: a later one must be newer.
    last_heartbeat_ms INTEGER NOT NULL DEFAULT 0
);
-- The revoked few, read together by the publications reader.
CREATE INDEX IF NOT EXISTS agents_revoked ON agents (agent_id) WHERE revoked = 1;
CREATE TABLE IF NOT EXISTS tokens (
    secret_hash BLOB PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    grp TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
-- AUTOINCREMENT: an id is never reused, even after the retention purge
-- deletes the newest alerts, so links and cursors (urgent notifications)
-- never point at a different alert.
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    clock_skew INTEGER NOT NULL DEFAULT 0,
    chain_ok INTEGER NOT NULL DEFAULT 1,
    user TEXT NOT NULL,
    station TEXT NOT NULL,
    source TEXT NOT NULL,
    context TEXT NOT NULL,
    app TEXT NOT NULL,
    app_path TEXT NOT NULL,
    window_title TEXT NOT NULL,
    url TEXT NOT NULL,
    search_query TEXT NOT NULL,
    category TEXT NOT NULL,
    severity INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    term TEXT NOT NULL,
    matches TEXT NOT NULL,
    rules_version INTEGER NOT NULL,
    repeat_count INTEGER NOT NULL DEFAULT 1,
    has_capture INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'new',
    repeat_of TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    body_hash BLOB NOT NULL,
    -- Protocol version the signature was made under: 1 signed the bare body,
    -- 2 signs the event domain and the body (docs/PROTOCOL.md).
    signed_as INTEGER NOT NULL DEFAULT 1,
    UNIQUE (agent_id, seq)
);
CREATE INDEX IF NOT EXISTS alerts_queue ON alerts (state, severity DESC, time_ms DESC);
CREATE INDEX IF NOT EXISTS alerts_event_id ON alerts (event_id);
CREATE TABLE IF NOT EXISTS captures (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
    sha256 BLOB NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS exemptions (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, category TEXT NOT NULL DEFAULT '', term TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL, created_by TEXT NOT NULL, created_ms INTEGER NOT NULL, starts_ms INTEGER NOT NULL, ends_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE TABLE IF NOT EXISTS shadow_run_counts (
    agent_id TEXT NOT NULL,
    shadow_version INTEGER NOT NULL,
    run TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, shadow_version, run, rule_id)
);
CREATE TABLE IF NOT EXISTS agent_hosts (
    agent_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    station TEXT NOT NULL,
    first_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    agent_id TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    detected_ms INTEGER NOT NULL
);
";

/// Opens the database in `dir`, creating the schema or bringing it up to
/// [`VERSION`]; a database made by a newer collector is refused.
pub fn open(dir: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(dir.join(DB_FILE))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn, dir)?;
    Ok(conn)
}

/// The schema's migrations, in order: migration N brings a store from
/// version N-1 to N, and `PRAGMA user_version` records how many have run.
/// Each runs in one write transaction with the version it sets. Version 1
/// is the schema as it was before stores were numbered, made idempotently
/// so that every store from before (version 0) upgrades through it.
/// A new change is a new function at the end, never an edit of one here.
const MIGRATIONS: &[fn(&Connection) -> rusqlite::Result<()>] = &[
    v1_unnumbered,
    v2_schools,
    v3_school_exemptions,
    grants::upgrade,
    schools::upgrade_settings,
    notice::upgrade_issues,
];

/// The schema version this collector writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// 1: agents, tokens, alerts, captures, hosts, gaps; publications and
/// notices; the columns added before versions were kept; captures in
/// object storage.
fn v1_unnumbered(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(publication::SCHEMA)?;
    conn.execute_batch(notice::SCHEMA)?;
    add_column(conn, "agents", "rekeyed_from", "TEXT NOT NULL DEFAULT ''")?;
    add_column(
        conn,
        "agents",
        "last_heartbeat_ms",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    add_column(conn, "alerts", "signed_as", "INTEGER NOT NULL DEFAULT 1")?;
    // What the agent's last heartbeat said is wrong with it (lines; empty: nothing).
    add_column(conn, "agents", "problems", "TEXT NOT NULL DEFAULT ''")?;
    // When a technician last moved the agent to another group (0: never).
    add_column(
        conn,
        "agents",
        "group_moved_ms",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    blob::upgrade(conn)
}

/// 2: schools as tenants (`schools`): the default school, a school on
/// agents, tokens and alerts, console grants.
fn v2_schools(conn: &Connection) -> rusqlite::Result<()> {
    schools::upgrade(conn)
}

/// 3: exemptions and notices per school ('' holds for every school, as
/// everything stored before does).
fn v3_school_exemptions(conn: &Connection) -> rusqlite::Result<()> {
    for table in ["exemptions", "notices"] {
        add_column(conn, table, "school", "TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
}

/// The store's schema version (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Refuses a store newer than this collector, and runs the migrations a
/// store older than it lacks (another process may be running them too:
/// the version is read again under the write lock).
fn migrate(conn: &Connection, dir: &Path) -> rusqlite::Result<()> {
    let too_new = |found: i64| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the store {} has schema version {found}, newer than this collector's {VERSION}: it was written by a newer tutela-collector; install that version (or newer), or restore a backup made by this one",
                dir.join(DB_FILE).display()
            )),
        )
    };
    let found = schema_version(conn)?;
    if found > VERSION {
        return Err(too_new(found));
    }
    if found == VERSION {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    let found = schema_version(&tx)?;
    if found > VERSION {
        return Err(too_new(found));
    }
    for (n, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tracing::info!(version = n + 1, "upgrading the SQLite schema");
        migration(&tx)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()
}

/// Starts a write transaction (`BEGIN IMMEDIATE`): it waits for another
/// writer rather than failing half-way, and an early return rolls it back
/// when it is dropped.
pub fn write_tx(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

/// Adds a column a database made by an earlier version lacks.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        [table, column],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Runs `f` in a savepoint named `name`: atomic on its own, and part of the
/// caller's transaction when there is one (the console writes an action and
/// its audit entry in one). Whatever `f` wrote is undone when it fails.
pub fn in_savepoint<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    name: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch(&format!("SAVEPOINT {name}"))?;
    match f() {
        Ok(value) => {
            conn.execute_batch(&format!("RELEASE {name}"))?;
            Ok(value)
        }
        Err(e) => {
            if let Err(undo) = conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}")) {
                tracing::error!(savepoint = name, error = %undo, "could not undo a failed change");
            }
            Err(e)
        }
    }
}

/// Page cache of the writer's connection, in KiB (SQLite's default is 2 MiB).
/// It lives in the collector's process, beside thousands of agents'
/// connections, and fills within a minute of a busy fleet: it was the only
/// part of a connected fleet's memory that SQLite holds and PostgreSQL does
/// not (12.5 MB of 15.4 MB of SQLite's heap with 4,000 agents at 16 MiB).
/// The pages a batch needs again are the indexes' inner pages (a few
/// hundred KiB); their leaves are spread over every agent, so a bigger cache
/// mostly keeps pages that are not read again before they are evicted.
const WRITER_CACHE_KIB: i64 = 4 * 1024;

/// Page cache of the connection the services share, in KiB (SQLite's
/// default is 2 MiB). It answers point look-ups by key (an agent's key, a
/// token, the newest bundle's version) whose pages are few: a quarter of
/// the default keeps them and gives the rest back to agents' connections.
const SHARED_CACHE_KIB: i64 = 512;

/// How many times a batch tries to take the write lock (each try waits up
/// to `BUSY_WAIT`) while another process writes: about 9 s in all, so an
/// agent hears `UNAVAILABLE` (and retries) well inside its call deadline.
const BEGIN_TRIES: u32 = 3;
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// The connection the services share for reads and short writes.
#[derive(Debug, Clone)]
pub struct Shared {
    conn: Arc<Mutex<Connection>>,
}

impl Shared {
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        let conn = open(dir)?;
        conn.pragma_update(None, "cache_size", -SHARED_CACHE_KIB)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the shared connection.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&self.conn())
    }

    pub fn agent_key(&self, agent_id: &str) -> rusqlite::Result<Option<AgentKeyRow>> {
        self.conn()
            .query_row(
                "SELECT public_key, revoked, grp, school FROM agents WHERE agent_id = ?1",
                [agent_id],
                |r| {
                    Ok(AgentKeyRow {
                        public_key: r.get(0)?,
                        revoked: r.get(1)?,
                        group: r.get(2)?,
                        school: r.get(3)?,
                    })
                },
            )
            .optional()
    }

    pub fn insert_token(&self, token: &NewToken) -> rusqlite::Result<()> {
        agents::insert_token(&self.conn(), token)
    }

    pub fn list_tokens(&self) -> rusqlite::Result<Vec<TokenInfo>> {
        agents::list_tokens(&self.conn())
    }

    pub fn revoke_token(&self, id: &str) -> rusqlite::Result<u64> {
        agents::revoke_token(&self.conn(), id)
    }
}

/// The writer's connection.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
}

impl Session {
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        let conn = open(dir)?;
        conn.busy_timeout(BUSY_WAIT)?;
        // This connection writes nearly everything: a bigger page cache keeps
        // the indexes' pages in memory instead of re-reading them and
        // spilling mid-batch.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        Ok(Self { conn })
    }

    /// Begins a batch's transaction. Immediate: the batch holds the write
    /// lock from its first read, so a revocation commits either before it
    /// (and is seen) or after it, and nothing read can go stale before the
    /// batch writes. Another process (the CLI) may hold the lock: each try
    /// waits the busy timeout.
    pub fn begin(&mut self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        let mut tries = 0;
        loop {
            tries += 1;
            match rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            ) {
                Ok(tx) => return Ok(tx),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < BEGIN_TRIES =>
                {
                    tracing::warn!(error = %e, tries, "the store is busy with another writer; trying again");
                }
                Err(e) => return Err(e),
            }
        }
    }
}
