//! One write transaction of the writer, on either backend. Every check that
//! decides what is stored (revocation, sequence, chain, token uses) reads in
//! the transaction that writes: on a shared PostgreSQL store the rows read
//! are locked until it commits, so two collectors never both store an event
//! or both spend a token's last use.

use std::collections::HashMap;

use tutela_proto::v1::HeartbeatBody;

use super::agents::{AgentRow, HeartbeatRow, HeartbeatStanding, NewAgent, TokenRow};
use super::ingest::{AlertRow, Standing};
use super::{sqlite, StoreError};

/// A write transaction. Dropped without [`Tx::commit`], it is rolled back.
#[derive(Debug)]
pub enum Tx<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::Tx<'c>),
}

/// Runs the SQLite function `$sqlite` on the transaction's connection, or
/// the PostgreSQL transaction's method `$pg`, with the same arguments.
macro_rules! both {
    ($self:ident, $sqlite:path, $pg:ident ( $($arg:expr),* )) => {
        match $self {
            Tx::Sqlite(tx) => Ok($sqlite(tx, $($arg),*)?),
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.$pg($($arg),*).await,
        }
    };
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.commit()?),
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    /// Starts a savepoint: what follows can be undone alone.
    pub async fn savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.batch(&format!("SAVEPOINT {name}")).await
    }

    pub async fn release(&mut self, name: &str) -> Result<(), StoreError> {
        self.batch(&format!("RELEASE SAVEPOINT {name}")).await
    }

    /// Undoes what was written since the savepoint, and ends it.
    pub async fn rollback_to(&mut self, name: &str) -> Result<(), StoreError> {
        self.batch(&format!(
            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
        ))
        .await
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.execute_batch(sql)?),
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx.batch(sql).await,
        }
    }

    // Ingest.

    /// The standing of each of `agent_ids` that is enrolled, locked for the
    /// rest of the transaction where the store is shared. Locks are taken
    /// in sorted order, so two collectors' batches cannot deadlock on them.
    pub async fn lock_agents(
        &mut self,
        agent_ids: &[&str],
    ) -> Result<HashMap<String, Standing>, StoreError> {
        both!(self, sqlite::ingest::lock_agents, lock_agents(agent_ids))
    }

    /// The body hash of the agent's event `seq`, when it is stored.
    pub async fn stored_body_hash(
        &mut self,
        agent_id: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        both!(
            self,
            sqlite::ingest::stored_body_hash,
            stored_body_hash(agent_id, seq)
        )
    }

    /// Records that events `from..=to` of the agent never arrived.
    pub async fn insert_gap(
        &mut self,
        agent_id: &str,
        from: u64,
        to: u64,
        detected_ms: i64,
    ) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::ingest::insert_gap,
            insert_gap(agent_id, from, to, detected_ms)
        )
    }

    /// Stores events in order, with their captures, and folds each repeat
    /// into its original (which may be earlier in `rows`).
    pub async fn insert_alerts(&mut self, rows: &[AlertRow<'_>]) -> Result<(), StoreError> {
        both!(self, sqlite::ingest::insert_alerts, insert_alerts(rows))
    }

    /// Moves each agent's chain on to its last stored event: (agent, last
    /// sequence number, last body hash).
    pub async fn advance_chains(
        &mut self,
        chains: &[(&str, u64, [u8; 32])],
        seen_ms: i64,
    ) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::ingest::advance_chains,
            advance_chains(chains, seen_ms)
        )
    }

    // Heartbeats.

    /// Records a heartbeat unless the agent is revoked or the heartbeat is
    /// not later than the last one; returns whether it was recorded.
    pub async fn record_heartbeat(&mut self, row: &HeartbeatRow<'_>) -> Result<bool, StoreError> {
        both!(
            self,
            sqlite::agents::record_heartbeat,
            record_heartbeat(row)
        )
    }

    pub async fn heartbeat_standing(
        &mut self,
        agent_id: &str,
    ) -> Result<Option<HeartbeatStanding>, StoreError> {
        both!(
            self,
            sqlite::agents::heartbeat_standing,
            heartbeat_standing(agent_id)
        )
    }

    /// Records a heartbeat's shadow-run counts (rule candidates).
    pub async fn record_shadow_counts(&mut self, body: &HeartbeatBody) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::publication::record_shadow_counts,
            record_shadow_counts(body)
        )
    }

    /// The machine the identity was first seen on.
    pub async fn host_of(&mut self, agent_id: &str) -> Result<Option<String>, StoreError> {
        both!(self, sqlite::agents::host_of, host_of(agent_id))
    }

    /// Records the machine an identity is first seen on (kept when known).
    pub async fn record_host(
        &mut self,
        agent_id: &str,
        machine_id: &str,
        station: &str,
        first_ms: i64,
    ) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::agents::record_host,
            record_host(agent_id, machine_id, station, first_ms)
        )
    }

    /// Adds a note to an agent's flag (shown by `agents list` and the coverage page).
    pub async fn flag(&mut self, agent_id: &str, note: &str) -> Result<(), StoreError> {
        both!(self, sqlite::agents::flag, flag(agent_id, note))
    }

    // Enrolment.

    /// The token with this secret hash, locked until the transaction ends.
    pub async fn token_for_use(
        &mut self,
        secret_hash: &[u8],
    ) -> Result<Option<TokenRow>, StoreError> {
        both!(
            self,
            sqlite::agents::token_for_use,
            token_for_use(secret_hash)
        )
    }

    /// Spends one use of the token.
    pub async fn consume_token(&mut self, secret_hash: &[u8]) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::agents::consume_token,
            consume_token(secret_hash)
        )
    }

    pub async fn agent_by_key(
        &mut self,
        public_key: &[u8],
    ) -> Result<Option<AgentRow>, StoreError> {
        both!(self, sqlite::agents::agent_by_key, agent_by_key(public_key))
    }

    pub async fn agent(&mut self, agent_id: &str) -> Result<Option<AgentRow>, StoreError> {
        both!(self, sqlite::agents::agent, agent(agent_id))
    }

    /// Moves an agent to `group` of `school`.
    pub async fn set_group(
        &mut self,
        agent_id: &str,
        group: &str,
        school: &str,
    ) -> Result<(), StoreError> {
        both!(
            self,
            sqlite::agents::set_group,
            set_group(agent_id, group, school)
        )
    }

    pub async fn insert_agent(&mut self, agent: &NewAgent<'_>) -> Result<(), StoreError> {
        both!(self, sqlite::agents::insert_agent, insert_agent(agent))
    }

    /// Unrevoked identities first seen on `machine_id`.
    pub async fn live_agents_on_machine(
        &mut self,
        machine_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        both!(
            self,
            sqlite::agents::live_agents_on_machine,
            live_agents_on_machine(machine_id)
        )
    }

    /// The identity `agent_id` was ultimately re-keyed from (itself when it
    /// was enrolled with a token), and how many identities were re-keyed
    /// from that root, directly or through others.
    pub async fn family(&mut self, agent_id: &str) -> Result<(String, i64), StoreError> {
        both!(self, sqlite::agents::family, family(agent_id))
    }
}
