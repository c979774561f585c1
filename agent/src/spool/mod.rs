//! The durable spool: every event is committed here (SQLite, WAL) before it
//! is sent, and deleted only when the collector acknowledges it as stored.
//!
//! Durability comes in two steps, so appending stays fast:
//!
//! - **Crash-safe at append.** Each append commits with `synchronous=NORMAL`:
//!   the event survives the agent being killed, but the WAL is not flushed to
//!   the disk, so a power cut can lose the last appends.
//! - **Power-safe before sending.** Before the uplink sends events not yet made
//!   durable it calls [`Spool::make_durable`]: one small write transaction with
//!   `synchronous=FULL`, which syncs the WAL and with it everything appended
//!   before. One sync per send batch, not per event. So nothing the collector
//!   has stored can vanish from the spool on a power cut and have its sequence
//!   number reused for a different event.
//!
//! The spool is bounded on disk. When it is full it drops the lowest severity
//! first (oldest first within a severity) and counts what it dropped; the
//! dropped sequence numbers show at the collector as a gap.
//!
//! Events the collector refused for good are kept apart in a quarantine for a
//! technician, bounded too: at most [`MAX_QUARANTINE_ROWS`] events and
//! [`MAX_QUARANTINE_BYTES`], the oldest deleted first and counted as dropped.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::event::{seal, EventDraft, SealedEvent};
use crate::identity::Identity;

mod connection;
mod quarantine;
#[cfg(test)]
mod tests;

use connection::{is_locked, open_connection, OPEN_RETRY_FOR, SCHEMA};
pub use quarantine::{MAX_QUARANTINE_BYTES, MAX_QUARANTINE_ROWS};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool database error: {0}; if it persists, stop the agent and check the disk and the spool file")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the spool at {0} is from another agent identity; move it aside and restart the agent"
    )]
    ForeignSpool(String),
}

/// Spool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Upper bound for the bytes of stored events (bodies, signatures, captures).
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What `status` shows about the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    pub backlog: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub quarantined: u64,
    pub next_seq: u64,
}

pub struct Spool {
    conn: Connection,
    agent_id: String,
    next_seq: u64,
    prev_hash: [u8; 32],
    bytes: u64,
    dropped: u64,
    /// Events lost because they could not be written, not yet reported.
    lost: u64,
    /// Every event up to this sequence number has been synced to the disk.
    durable_through: u64,
    config: SpoolConfig,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("agent_id", &self.agent_id)
            .field("next_seq", &self.next_seq)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool for `agent_id`. Another process opening
    /// it at the same moment (`tutela-agent status` while the agent starts)
    /// can make SQLite answer "locked" at once while it sets the journal mode
    /// up, without waiting: the open is tried again for a few seconds.
    pub fn open(path: &Path, agent_id: &str, config: SpoolConfig) -> Result<Self, SpoolError> {
        let deadline = std::time::Instant::now() + OPEN_RETRY_FOR;
        loop {
            match Self::open_once(path, agent_id, config) {
                Err(SpoolError::Sqlite(e))
                    if is_locked(&e) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }

    fn open_once(path: &Path, agent_id: &str, config: SpoolConfig) -> Result<Self, SpoolError> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let get = |key: &str| -> Result<Option<Vec<u8>>, rusqlite::Error> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        };
        // A new spool is claimed for this agent without a check-then-insert
        // race: another process opening it at the same moment (`status` while
        // the agent starts) may claim it first, so the owner is read back after
        // the insert. An existing spool is only read (no write on every open).
        let mut owner = get("agent_id")?;
        if owner.is_none() {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('agent_id', ?1)",
                [agent_id.as_bytes()],
            )?;
            owner = get("agent_id")?;
        }
        match owner {
            Some(id) if id == agent_id.as_bytes() => {}
            _ => return Err(SpoolError::ForeignSpool(path.display().to_string())),
        }
        let next_seq = get("next_seq")?
            .map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
            .unwrap_or(1)
            .max(1);
        let prev_hash = get("prev_hash")?
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .unwrap_or([0; 32]);
        let dropped = get("dropped")?
            .map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let bytes: i64 = conn.query_row("SELECT COALESCE(SUM(size), 0) FROM events", [], |r| {
            r.get(0)
        })?;
        Ok(Self {
            conn,
            agent_id: agent_id.to_owned(),
            next_seq,
            prev_hash,
            bytes: bytes as u64,
            dropped,
            lost: 0,
            durable_through: 0,
            config,
        })
    }

    /// Seals `draft` as the next event in sequence and commits it.
    /// Returns its sequence number.
    pub fn append(&mut self, identity: &Identity, draft: EventDraft) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let dropped_before = self.dropped + self.lost;
        let event = seal(
            identity,
            &self.agent_id,
            seq,
            self.prev_hash,
            dropped_before,
            draft,
        );
        let hash = event.body_hash();
        let size = event.stored_size();
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO events (seq, severity, body, signature, capture, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(
            params![seq as i64, event.severity, event.body, event.signature, event.capture, size as i64],
        )?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?1), ('prev_hash', ?2)",
        )?
        .execute(params![(seq + 1).to_le_bytes().to_vec(), hash.to_vec()])?;
        let mut bytes = self.bytes + size;
        let mut dropped = dropped_before;
        while bytes > self.config.max_bytes {
            let victims: Vec<(i64, i64)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, size FROM events ORDER BY severity, seq LIMIT 64",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            if victims.is_empty() {
                break;
            }
            for (victim, vsize) in victims {
                if bytes <= self.config.max_bytes {
                    break;
                }
                tx.execute("DELETE FROM events WHERE seq = ?1", [victim])?;
                bytes -= vsize as u64;
                dropped += 1;
            }
        }
        if dropped != self.dropped {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?1)",
                [dropped.to_le_bytes().to_vec()],
            )?;
            if dropped > dropped_before {
                tracing::warn!(
                    dropped_total = dropped,
                    max_bytes = self.config.max_bytes,
                    "spool full: dropped lowest-severity events; the collector will record a gap"
                );
            }
        }
        tx.commit()?;
        self.next_seq = seq + 1;
        self.prev_hash = hash;
        self.bytes = bytes;
        self.dropped = dropped;
        self.lost = 0;
        Ok(seq)
    }

    /// Syncs every event appended so far to the disk, so they survive a power
    /// cut: one small write transaction under `synchronous=FULL` (which syncs
    /// the WAL, holding it and every append before it), then back to
    /// `NORMAL` for appends; then checkpoints the WAL into the database.
    /// Does nothing when no event was appended since the last call. Returns
    /// whether it synced.
    pub fn make_durable(&mut self) -> Result<bool, SpoolError> {
        let last = self.next_seq.saturating_sub(1);
        if last <= self.durable_through {
            return Ok(false);
        }
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let marked = self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('durable_through', ?1)",
            [last.to_le_bytes().to_vec()],
        );
        let restored = self.conn.pragma_update(None, "synchronous", "NORMAL");
        marked?;
        restored?;
        self.durable_through = last;
        // Copy what the WAL holds into the database now, off the append
        // path, so the WAL stays small. Passive: it never waits on a reader.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(true)
    }

    /// Counts an event that could not be written (its append failed). It is
    /// added to the dropped count the next event spooled carries, so the
    /// collector sees that something was lost.
    pub fn count_lost(&mut self) {
        self.lost += 1;
    }

    /// Up to `limit` stored events with a sequence number above `after`, in order.
    pub fn pending_after(&self, after: u64, limit: usize) -> Result<Vec<SealedEvent>, SpoolError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, severity, body, signature, capture FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
            Ok(SealedEvent {
                seq: r.get::<_, i64>(0)? as u64,
                severity: r.get(1)?,
                body: r.get(2)?,
                signature: r.get(3)?,
                capture: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The drafts of the events waiting to be sent from sequence number
    /// `from` on, in order (for sealing them again under a new identity).
    pub fn drafts_from(&self, from: u64) -> Result<Vec<EventDraft>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare("SELECT body, capture FROM events WHERE seq >= ?1 ORDER BY seq")?;
        let rows = stmt.query_map([from as i64], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut drafts = Vec::new();
        for row in rows {
            let (body, capture) = row?;
            match EventDraft::from_sealed(&body, capture) {
                Some(draft) => drafts.push(draft),
                None => tracing::warn!("a spooled event does not decode; not carried over"),
            }
        }
        Ok(drafts)
    }

    /// The sequence number of the first event waiting to be sent, if any.
    pub fn first_pending(&self) -> Result<Option<u64>, SpoolError> {
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT MIN(seq) FROM events")?
            .query_row([], |r| r.get(0))?;
        Ok(seq.map(|s| s as u64))
    }

    /// Deletes acknowledged events.
    pub fn acknowledge(&mut self, seqs: &[u64]) -> Result<(), SpoolError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        let mut freed = 0u64;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM events WHERE seq = ?1 RETURNING size")?;
            for seq in seqs {
                if let Some(size) = stmt
                    .query_row([*seq as i64], |r| r.get::<_, i64>(0))
                    .optional()?
                {
                    freed += size as u64;
                }
            }
        }
        tx.commit()?;
        self.bytes = self.bytes.saturating_sub(freed);
        Ok(())
    }

    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let backlog: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        let quarantined: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
        Ok(SpoolStats {
            backlog: backlog as u64,
            bytes: self.bytes,
            dropped: self.dropped + self.lost,
            quarantined: quarantined as u64,
            next_seq: self.next_seq,
        })
    }

    /// Refuses (or allows again) every write, as a full or failing disk would.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self, refuse: bool) {
        self.conn
            .pragma_update(None, "query_only", refuse)
            .expect("query_only can be set");
    }

    /// The agent whose events this spool holds.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}
