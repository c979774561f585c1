//! The collector's storage layer. SQLite (a file in the data directory) is
//! the embedded default; PostgreSQL (cargo feature `postgres`) lets several
//! collectors share one database. `collector.toml`'s `[storage] url` picks
//! the backend.
//!
//! Each domain has its module of backend-neutral rows (`agents`, `ingest`);
//! `sqlite/` and `postgres/` hold the SQL. Callers see three handles:
//! - [`Store`]: shared reads and short writes outside the writer (agent keys,
//!   enrolment tokens);
//! - [`Session`]: the writer's own connection;
//! - [`Tx`]: one of the writer's transactions, where every check and insert
//!   of a batch happens (exactly-once ingest across collectors depends on it).
//!
//! The review console has its own handle, [`console::ConsoleStore`], lending
//! its pages a [`console::Console`] per request (rows in `users`, `audit`,
//! `review`, `fleet`). Rule publication, exemptions and notices (rows in
//! `publication`, `exemption`, `notice`) go through [`Store`] on both
//! backends.
//!
//! Background work (the mail and webhook outboxes, urgent notifications,
//! weekly summaries, the retention purge and the leases that make each run
//! on one collector) reaches the store through [`Jobs`].
//!
//! The command line's `alerts`, `agents` and `token` commands go through
//! [`console::ConsoleStore`] too. Backup and restore of SQLite copy the file
//! (opened with [`open`]).

pub mod agents;
pub mod audit;
pub mod blob;
pub mod console;
mod error;
pub mod fleet;
pub mod ingest;
pub mod jobs;
pub mod lease;
mod location;
pub mod mail;
#[cfg(feature = "postgres")]
pub mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod retention;
pub mod review;
pub mod sqlite;
pub mod summary;
mod tx;
pub mod urgent;
pub mod users;
pub mod webhook;

pub use error::StoreError;
pub use jobs::Jobs;
pub use location::Location;
pub use sqlite::{in_savepoint, open, DB_FILE};
pub use tx::Tx;

use agents::{AgentKeyRow, NewToken, TokenInfo};

/// The store, shared by the collector's services for reads and for writes
/// that need not go through the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::Shared),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Shared),
}

/// Runs `$sqlite` (synchronous) or `$pg` (awaited) on the backend behind `$self`.
macro_rules! backend {
    ($self:expr, $s:ident => $sqlite:expr, $pg:expr) => {
        match $self {
            Self::Sqlite($s) => Ok($sqlite?),
            #[cfg(feature = "postgres")]
            Self::Postgres($s) => $pg,
        }
    };
}

// Declared after `backend!`, which they use.
pub mod coverage;
pub mod exemption;
pub mod notice;
pub mod publication;
pub mod reports;

impl Store {
    /// Opens the store at `location`, creating or upgrading its schema.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        Ok(match location {
            Location::Sqlite(dir) => Self::Sqlite(sqlite::Shared::open(dir)?),
            #[cfg(feature = "postgres")]
            Location::Postgres(config) => Self::Postgres(postgres::Shared::open(config).await?),
        })
    }

    /// An enrolled agent's key and standing, or `None` when it is not enrolled.
    pub async fn agent_key(&self, agent_id: &str) -> Result<Option<AgentKeyRow>, StoreError> {
        backend!(self, s => s.agent_key(agent_id), s.agent_key(agent_id).await)
    }

    pub async fn insert_token(&self, token: &NewToken) -> Result<(), StoreError> {
        backend!(self, s => s.insert_token(token), s.insert_token(token).await)
    }

    /// Every enrolment token, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        backend!(self, s => s.list_tokens(), s.list_tokens().await)
    }

    /// Revokes the token whose id (12 hex digits) is `id`; returns how many were.
    pub async fn revoke_token(&self, id: &str) -> Result<u64, StoreError> {
        backend!(self, s => s.revoke_token(id), s.revoke_token(id).await)
    }

    /// Up to `limit` keys of capture objects whose rows were deleted.
    pub async fn capture_objects_gone(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        backend!(self, s => s.run(|c| sqlite::blob::objects_gone(c, limit)), s.capture_objects_gone(limit).await)
    }

    /// Forgets capture objects that were deleted.
    pub async fn forget_capture_objects(&self, keys: &[String]) -> Result<(), StoreError> {
        backend!(self, s => s.run(|c| sqlite::blob::forget_objects(c, keys)), s.forget_capture_objects(keys).await)
    }

    /// Whether a capture row names the object `key`.
    pub async fn capture_object_known(&self, key: &str) -> Result<bool, StoreError> {
        backend!(self, s => s.run(|c| sqlite::blob::object_known(c, key)), s.capture_object_known(key).await)
    }
}

/// The writer's own connection: batches of events, heartbeats and
/// enrolments, each batch in one transaction.
#[derive(Debug)]
pub enum Session {
    Sqlite(sqlite::Session),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Session),
}

impl Session {
    /// Connects to the store at `location`. A PostgreSQL session spawns its
    /// connection on the current Tokio runtime: open it on the runtime that
    /// will use it.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        Ok(match location {
            Location::Sqlite(dir) => Self::Sqlite(sqlite::Session::open(dir)?),
            #[cfg(feature = "postgres")]
            Location::Postgres(config) => Self::Postgres(postgres::Session::open(config).await?),
        })
    }

    /// Whether the connection is lost (the database went away): the writer
    /// then opens a new session.
    pub fn is_broken(&self) -> bool {
        match self {
            Self::Sqlite(_) => false,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.is_broken(),
        }
    }

    /// Begins a write transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self {
            Self::Sqlite(s) => Tx::Sqlite(s.begin()?),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => Tx::Postgres(s.begin().await?),
        })
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random identifier: `prefix` + 12 hex digits.
pub fn random_id(prefix: &str) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 6];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    format!("{prefix}{}", hex::encode(b))
}
