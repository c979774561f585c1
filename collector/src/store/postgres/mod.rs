//! The scale-out backend: PostgreSQL (15 or later), shared by several
//! collectors. Each collector's writer has a session of its own; batches
//! lock the rows they decide on (`FOR UPDATE`), so the checks and inserts of
//! two collectors on one agent or one token never interleave.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Statement};

use super::StoreError;

mod agents;
mod blob;
pub mod console;
mod exemption;
mod filter;
mod fleet;
mod ingest;
pub mod jobs;
mod lease;
mod mail;
mod notice;
mod publication;
mod reports;
mod retention;
mod review;
pub mod schema;
mod summary;
pub mod tls;
mod urgent;
mod users;
mod webhook;

/// How long connecting may take before the collector gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `postgres://` URL. `Debug` shows the target, never the password.
#[derive(Clone)]
pub struct PgConfig {
    config: tokio_postgres::Config,
    target: String,
    /// `None`: no TLS (`sslmode` absent or `disable`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}

impl PgConfig {
    /// Parses `url`; `sslmode` and `sslrootcert` (the CA's PEM file) choose
    /// TLS as libpq's do (see [`tls`]).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (rest, mode, ca) = tls::split_url(url)?;
        let tls = tls::connector(mode, ca.as_deref())?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|_| {
            StoreError::BadUrl(format!(
                "{} is not a valid PostgreSQL URL (postgres://user:password@host:port/database)",
                super::Location::redacted(url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("tutela-collector");
        if tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        Ok(Self {
            config,
            target: super::Location::redacted(url),
            tls,
        })
    }

    /// Where it points, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connects, and drives the connection on the current runtime.
    pub(crate) async fn connect(&self) -> Result<Client, StoreError> {
        let unreachable = |e: tokio_postgres::Error| StoreError::Unreachable {
            target: self.target.clone(),
            reason: describe(&e),
        };
        let target = self.target.clone();
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(unreachable)?;
                drive(connection, target);
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(unreachable)?;
                drive(connection, target);
                Ok(client)
            }
        }
    }
}

/// Drives a connection on the current runtime until it ends.
fn drive<S, T>(connection: tokio_postgres::Connection<S, T>, target: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(store = %target, error = %e, "the PostgreSQL connection failed");
        }
    });
}

/// What went wrong, with the server's own message when it sent one, and
/// what to do for the failures an administrator can fix.
pub fn describe(e: &tokio_postgres::Error) -> String {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        // The kind ("error performing TLS handshake"), then why.
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let hint = tls::hint(&text);
        return format!("{text}{hint}");
    };
    let hint = match db.code() {
        c if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            " (wrong user name or password in the URL)"
        }
        c if *c == SqlState::INVALID_CATALOG_NAME => {
            " (create the database first: createdb -O <user> <database>)"
        }
        c if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE => {
            " (another collector wrote the same rows; the agents resend)"
        }
        _ => "",
    };
    format!("{}: {}{hint}", db.severity(), db.message())
}

/// The services' shared connection (queries are pipelined on it). When
/// the database goes away, calls fail until it is back; the next call after
/// that connects again.
#[derive(Debug, Clone)]
pub struct Shared {
    config: Arc<PgConfig>,
    client: Arc<std::sync::Mutex<Arc<Client>>>,
    reconnecting: Arc<tokio::sync::Mutex<()>>,
}

impl Shared {
    /// Connects and brings the schema up to date.
    pub async fn open(config: &PgConfig) -> Result<Self, StoreError> {
        let mut client = config.connect().await?;
        schema::migrate(&mut client).await?;
        Ok(Self {
            config: Arc::new(config.clone()),
            client: Arc::new(std::sync::Mutex::new(Arc::new(client))),
            reconnecting: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn current(&self) -> Arc<Client> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection, made again if the last one was lost.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let client = self.current();
        if !client.is_closed() {
            return Ok(client);
        }
        let _one_at_a_time = self.reconnecting.lock().await;
        let client = self.current();
        if !client.is_closed() {
            return Ok(client);
        }
        let fresh = Arc::new(self.config.connect().await?);
        tracing::info!(store = %self.config.target, "connected to PostgreSQL again");
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

/// Statements the writer runs for every batch, prepared once per session.
#[derive(Debug)]
struct Statements {
    lock_agents: Statement,
    stored_body_hash: Statement,
    insert_alert: Statement,
    fold: Statement,
    insert_capture: Statement,
    insert_gap: Statement,
    advance_chain: Statement,
    heartbeat: Statement,
}

/// The writer's own connection.
#[derive(Debug)]
pub struct Session {
    client: Client,
    statements: Statements,
}

impl Session {
    pub async fn open(config: &PgConfig) -> Result<Self, StoreError> {
        let mut client = config.connect().await?;
        schema::migrate(&mut client).await?;
        let statements = Statements {
            lock_agents: client.prepare(ingest::LOCK_AGENTS).await?,
            stored_body_hash: client.prepare(ingest::STORED_BODY_HASH).await?,
            insert_alert: client.prepare(ingest::INSERT_ALERT).await?,
            fold: client.prepare(ingest::FOLD).await?,
            insert_capture: client.prepare(ingest::INSERT_CAPTURE).await?,
            insert_gap: client.prepare(ingest::INSERT_GAP).await?,
            advance_chain: client.prepare(ingest::ADVANCE_CHAIN).await?,
            heartbeat: client.prepare(agents::HEARTBEAT).await?,
        };
        Ok(Self { client, statements })
    }

    /// Whether the connection is gone (the database went away).
    pub fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    pub async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(Tx {
            tx: self.client.transaction().await?,
            statements: &self.statements,
        })
    }
}

/// One of the writer's transactions (read committed; rows decided on are
/// locked with `FOR UPDATE`).
pub struct Tx<'c> {
    tx: tokio_postgres::Transaction<'c>,
    statements: &'c Statements,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("postgres::Tx")
    }
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.tx.batch_execute(sql).await?)
    }
}
