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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    severity INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    capture BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_severity ON events (severity, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    capture BLOB NOT NULL
);
";

/// Most events kept in the quarantine.
pub const MAX_QUARANTINE_ROWS: i64 = 200;
/// Most bytes (bodies, signatures, captures) kept in the quarantine; the
/// newest event is kept whatever its size.
pub const MAX_QUARANTINE_BYTES: i64 = 8 * 1024 * 1024;

const SPOOL_PAGE_SIZE: i64 = 2048;

/// How long opening the spool is retried while another process holds it.
const OPEN_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Each append commits a handful of pages; small pages keep the bytes
    // written (and checksummed) per event low. Takes effect on a new spool.
    conn.pragma_update(None, "page_size", SPOOL_PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: a commit survives the agent being killed; only a power
    // cut can lose the last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Appends do not pay for checkpoints: the uplink checkpoints before it
    // sends (see `make_durable`). This only bounds the WAL (64 MiB) while
    // nothing is sent, as on a laptop away from school.
    conn.pragma_update(None, "wal_autocheckpoint", 32768)?;
    Ok(conn)
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
        match get("agent_id")? {
            Some(id) if id != agent_id.as_bytes() => {
                return Err(SpoolError::ForeignSpool(path.display().to_string()))
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('agent_id', ?1)",
                    [agent_id.as_bytes()],
                )?;
            }
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

    /// Moves an event the collector refused for good out of the send queue,
    /// keeping it locally for a technician to inspect.
    pub fn quarantine(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO quarantine (seq, reason, body, signature, capture)
             SELECT seq, ?2, body, signature, capture FROM events WHERE seq = ?1",
            params![seq as i64, reason],
        )?;
        let size: Option<i64> = tx
            .query_row(
                "DELETE FROM events WHERE seq = ?1 RETURNING size",
                [seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        // Newest first: delete what is past the row or byte bound.
        let purged = tx.execute(
            "DELETE FROM quarantine WHERE seq IN (
                SELECT seq FROM (
                    SELECT seq,
                        ROW_NUMBER() OVER newest AS n,
                        SUM(length(body) + length(signature) + length(capture)) OVER newest AS total
                    FROM quarantine
                    WINDOW newest AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING)
                ) WHERE n > ?1 OR (n > 1 AND total > ?2)
            )",
            params![MAX_QUARANTINE_ROWS, MAX_QUARANTINE_BYTES],
        )? as u64;
        let dropped = self.dropped + purged;
        if purged > 0 {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?1)",
                [dropped.to_le_bytes().to_vec()],
            )?;
        }
        tx.commit()?;
        if purged > 0 {
            tracing::warn!(
                purged,
                dropped_total = dropped,
                "quarantine full: deleted the oldest refused events"
            );
        }
        self.dropped = dropped;
        self.bytes = self.bytes.saturating_sub(size.unwrap_or(0) as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tutela_proto::v1::{Observation, RuleMatch};

    fn draft(severity: u32, pad: usize) -> EventDraft {
        EventDraft {
            time_ms: 1,
            user: "pupil".into(),
            station: "lab-1".into(),
            observation: Observation {
                context: "x".repeat(pad),
                ..Default::default()
            },
            matches: vec![RuleMatch {
                severity,
                ..Default::default()
            }],
            evidence: None,
            rules_version: 1,
            count: 1,
            event_id: None,
            repeat_of: String::new(),
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("tutela-spool-{name}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn survives_reopen_and_keeps_the_chain() {
        let path = temp("reopen");
        let id = Identity::generate();
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 1);
        assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 2);
        let first = spool.pending_after(0, 10).unwrap();
        drop(spool);
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 3);
        let all = spool.pending_after(0, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], first[0]);
        let body =
            <tutela_proto::v1::EventBody as prost::Message>::decode(&all[2].body[..]).unwrap();
        assert_eq!(body.prev_hash, all[1].body_hash().to_vec());
        spool.acknowledge(&[1, 2]).unwrap();
        assert_eq!(spool.stats().unwrap().backlog, 1);
        assert!(matches!(
            Spool::open(&path, "other", SpoolConfig::default()),
            Err(SpoolError::ForeignSpool(_))
        ));
    }

    #[test]
    fn unsent_events_carry_over_to_a_new_identity_with_their_content() {
        let (old_path, new_path) = (temp("carry-old"), temp("carry-new"));
        let (old_id, new_id) = (Identity::generate(), Identity::generate());
        let mut old = Spool::open(&old_path, "a-old", SpoolConfig::default()).unwrap();
        old.append(&old_id, draft(2, 5)).unwrap();
        let mut shot = draft(5, 20);
        shot.evidence = Some(crate::event::Evidence {
            jpeg: vec![0xff, 0xd8, 1, 2, 3],
            width: 4,
            height: 3,
        });
        shot.repeat_of = "ev-first".into();
        old.append(&old_id, shot.clone()).unwrap();
        old.append(&old_id, draft(3, 7)).unwrap();
        old.acknowledge(&[3]).unwrap();

        // From seq 2 on, still unsent: the shot only.
        let drafts = old.drafts_from(2).unwrap();
        assert_eq!(drafts.len(), 1);
        let carried = &drafts[0];
        assert_eq!(carried.observation, shot.observation);
        assert_eq!(carried.matches, shot.matches);
        assert_eq!(carried.repeat_of, "ev-first");
        let evidence = carried.evidence.as_ref().unwrap();
        assert_eq!(
            (evidence.jpeg.as_slice(), evidence.width, evidence.height),
            (&[0xff, 0xd8, 1, 2, 3][..], 4, 3)
        );
        let old_event = old.pending_after(1, 10).unwrap().remove(0);
        let old_body =
            <tutela_proto::v1::EventBody as prost::Message>::decode(&old_event.body[..]).unwrap();
        assert_eq!(
            carried.event_id.as_deref(),
            Some(old_body.event_id.as_str())
        );

        // Sealed again under the new identity: its own agent id and sequence.
        let mut new = Spool::open(&new_path, "a-new", SpoolConfig::default()).unwrap();
        assert_eq!(new.append(&new_id, drafts[0].clone()).unwrap(), 1);
        let resealed = new.pending_after(0, 10).unwrap().remove(0);
        let body =
            <tutela_proto::v1::EventBody as prost::Message>::decode(&resealed.body[..]).unwrap();
        assert_eq!(body.agent_id, "a-new");
        assert_eq!(body.event_id, old_body.event_id);
        assert_eq!(resealed.capture, old_event.capture);
        assert!(ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            new_id.public_key()
        )
        .verify(
            &tutela_proto::event_message(&resealed.body),
            &resealed.signature
        )
        .is_ok());
    }

    #[test]
    fn make_durable_syncs_once_per_new_appends_and_keeps_events() {
        let path = temp("durable");
        let id = Identity::generate();
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        assert!(!spool.make_durable().unwrap(), "nothing appended yet");
        for _ in 0..3 {
            spool.append(&id, draft(3, 10)).unwrap();
        }
        let before = spool.pending_after(0, 10).unwrap();
        let db_bytes = || std::fs::metadata(&path).unwrap().len();
        let unchecked = db_bytes();
        assert!(spool.make_durable().unwrap());
        assert!(
            db_bytes() > unchecked,
            "the WAL was checkpointed into the database ({unchecked} bytes before)"
        );
        assert!(!spool.make_durable().unwrap(), "already durable");
        let synchronous: i64 = spool
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "appends are back to NORMAL");
        assert_eq!(spool.pending_after(0, 10).unwrap(), before);
        let marker: Vec<u8> = spool
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'durable_through'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(marker, 3u64.to_le_bytes().to_vec());
        spool.append(&id, draft(3, 10)).unwrap();
        assert!(spool.make_durable().unwrap(), "a new append needs a sync");
        drop(spool);
        let spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        assert_eq!(spool.pending_after(0, 10).unwrap().len(), 4);
        assert_eq!(spool.next_seq(), 5);
    }

    fn quarantined_seqs(spool: &Spool) -> Vec<u64> {
        let mut stmt = spool
            .conn
            .prepare("SELECT seq FROM quarantine ORDER BY seq")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
        rows.map(|r| r.unwrap() as u64).collect()
    }

    #[test]
    fn quarantine_keeps_the_newest_rows_and_counts_the_rest_as_dropped() {
        let path = temp("quarantine-rows");
        let id = Identity::generate();
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        let total = MAX_QUARANTINE_ROWS as u64 + 5;
        for _ in 0..total {
            let seq = spool.append(&id, draft(3, 10)).unwrap();
            spool.quarantine(seq, "refused").unwrap();
        }
        let stats = spool.stats().unwrap();
        assert_eq!(stats.quarantined, MAX_QUARANTINE_ROWS as u64);
        assert_eq!(stats.dropped, 5);
        assert_eq!(stats.backlog, 0);
        assert_eq!(quarantined_seqs(&spool), (6..=total).collect::<Vec<_>>());
        // The count survives a restart and is carried by the next event.
        drop(spool);
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        assert_eq!(spool.stats().unwrap().dropped, 5);
        spool.append(&id, draft(3, 10)).unwrap();
        let next = spool.pending_after(0, 1).unwrap();
        let body =
            <tutela_proto::v1::EventBody as prost::Message>::decode(&next[0].body[..]).unwrap();
        assert_eq!(body.dropped_before, 5);
    }

    #[test]
    fn quarantine_is_bounded_in_bytes() {
        let path = temp("quarantine-bytes");
        let id = Identity::generate();
        let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
        let shot = 3 * 1024 * 1024;
        for _ in 0..4 {
            let mut d = draft(3, 10);
            d.evidence = Some(crate::event::Evidence {
                jpeg: vec![0xAB; shot],
                width: 1,
                height: 1,
            });
            let seq = spool.append(&id, d).unwrap();
            spool.quarantine(seq, "capture too large").unwrap();
        }
        // 8 MiB holds two 3 MiB captures: the two oldest are deleted.
        assert_eq!(quarantined_seqs(&spool), vec![3, 4]);
        assert_eq!(spool.stats().unwrap().dropped, 2);
    }

    #[test]
    fn full_spool_drops_lowest_severity_first_and_counts() {
        let path = temp("full");
        let id = Identity::generate();
        let mut spool = Spool::open(&path, "a1", SpoolConfig { max_bytes: 4_000 }).unwrap();
        for i in 0..20 {
            let severity = if i % 4 == 0 { 5 } else { 1 };
            spool.append(&id, draft(severity, 300)).unwrap();
        }
        let stats = spool.stats().unwrap();
        assert!(stats.bytes <= 4_000, "{stats:?}");
        assert!(stats.dropped > 0);
        let kept = spool.pending_after(0, 100).unwrap();
        assert_eq!(kept.len() as u64 + stats.dropped, 20);
        // Every severity-5 event is still there.
        assert_eq!(kept.iter().filter(|e| e.severity == 5).count(), 5);
    }
}
