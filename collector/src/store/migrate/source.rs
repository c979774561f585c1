//! The SQLite side: the store being moved, read in one snapshot while the
//! data directory's lock keeps every collector away from it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::chain::{Broken, EventRow, Summary, Walk};
use super::EVENT_ORDER;

/// The open store, inside a read transaction.
#[derive(Debug)]
pub struct Source {
    conn: Connection,
}

/// An agent's chain head as its row in `agents` records it.
pub type Heads = BTreeMap<String, (i64, Option<Vec<u8>>)>;

impl Source {
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        // The usual opening brings an older store's columns up to date.
        let conn = crate::store::sqlite::open(dir)?;
        conn.execute_batch("BEGIN")?;
        Ok(Self { conn })
    }

    /// A dump written by [`dump`](super::dump::dump), as it is (read only).
    pub fn open_dump(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.execute_batch("BEGIN")?;
        Ok(Self { conn })
    }

    /// What a dump records about itself (`None`: not recorded, or not a dump).
    pub fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        if !self.has_table(super::dump::META_TABLE)? {
            return Ok(None);
        }
        self.conn
            .query_row(
                &format!(
                    "SELECT value FROM {} WHERE key = ?1",
                    super::dump::META_TABLE
                ),
                [key],
                |r| r.get(0),
            )
            .optional()
    }

    fn has_table(&self, name: &str) -> rusqlite::Result<bool> {
        self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |r| r.get(0),
        )
    }

    /// The store's tables (not SQLite's own, nor a dump's records).
    pub fn tables(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                 AND name NOT LIKE 'tutela_dump_%' ORDER BY name",
        )?;
        let names = stmt.query_map([], |r| r.get(0))?;
        names.collect()
    }

    pub fn columns(&self, table: &str) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        let names = stmt.query_map([table], |r| r.get(0))?;
        names.collect()
    }

    pub fn count(&self, table: &str) -> rusqlite::Result<i64> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {}", quote(table)), [], |r| {
                r.get(0)
            })
    }

    /// The highest id AUTOINCREMENT has handed out in `table` (ids of
    /// deleted rows included), when it keeps one.
    pub fn sequence(&self, table: &str) -> rusqlite::Result<Option<i64>> {
        if self.has_table(super::dump::SEQUENCES_TABLE)? {
            return self
                .conn
                .query_row(
                    &format!(
                        "SELECT last_value FROM {} WHERE table_name = ?1",
                        super::dump::SEQUENCES_TABLE
                    ),
                    [table],
                    |r| r.get(0),
                )
                .optional();
        }
        if !self.has_table("sqlite_sequence")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()
    }

    /// Calls `each` with every row of `table` (`columns` in order), in
    /// batches, in no set order (some tables have no rowid). `each` may
    /// wait (it writes to PostgreSQL).
    pub async fn rows<F, Fut, E>(
        &self,
        table: &str,
        columns: &[String],
        batch: usize,
        mut each: F,
    ) -> Result<(), E>
    where
        F: FnMut(Vec<Vec<Value>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: From<rusqlite::Error>,
    {
        let list = columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {list} FROM {}", quote(table)))?;
        let mut rows = stmt.query([])?;
        let mut pending = Vec::with_capacity(batch);
        while let Some(r) = rows.next()? {
            let values = (0..columns.len())
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            pending.push(values);
            if pending.len() == batch {
                each(std::mem::take(&mut pending)).await?;
            }
        }
        if !pending.is_empty() {
            each(pending).await?;
        }
        Ok(())
    }

    /// Every agent's event chain.
    pub fn chains(&self) -> rusqlite::Result<Result<BTreeMap<String, Summary>, Broken>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT agent_id, seq, body, body_hash, signature, chain_ok FROM alerts {EVENT_ORDER}"
        ))?;
        let mut rows = stmt.query([crate::reports::SOURCE])?;
        let mut walk = Walk::default();
        while let Some(r) = rows.next()? {
            let row = EventRow {
                agent_id: r.get(0)?,
                seq: r.get(1)?,
                body: r.get(2)?,
                body_hash: r.get(3)?,
                signature: r.get(4)?,
                chain_ok: r.get(5)?,
            };
            if let Err(broken) = walk.next(row) {
                return Ok(Err(broken));
            }
        }
        Ok(Ok(walk.finish()))
    }

    pub fn heads(&self) -> rusqlite::Result<Heads> {
        let mut stmt = self
            .conn
            .prepare("SELECT agent_id, last_seq, last_hash FROM agents")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        rows.collect()
    }

    /// The console's audit chain: its length, or the first entry that
    /// does not follow (no audit log yet: zero).
    pub fn audit(&self) -> rusqlite::Result<Result<usize, i64>> {
        if !self.has_table("console_audit")? {
            return Ok(Ok(0));
        }
        crate::store::sqlite::audit::verify(&self.conn)
    }
}

/// A name as an SQL identifier (both backends quote with double quotes).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
