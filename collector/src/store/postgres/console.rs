//! The review console on PostgreSQL. The console's pages are synchronous
//! and run on blocking threads; they drive this connection with the
//! runtime's handle. One connection serves the console's requests in turn,
//! as the embedded store's does; several collectors on one database each
//! have their own. A lost connection is made again at the next request.

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::PgConfig;
use crate::store::StoreError;

/// The console's connection.
pub struct PgConsole {
    config: PgConfig,
    handle: Handle,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgConsole({})", self.config.target())
    }
}

impl PgConsole {
    /// Connects (on the current runtime) and brings the schema up to date.
    pub async fn open(config: &PgConfig) -> Result<Self, StoreError> {
        let mut client = config.connect().await?;
        super::schema::migrate(&mut client).await?;
        Ok(Self {
            config: config.clone(),
            handle: Handle::current(),
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `f` with the connection on this (blocking) thread, connecting
    /// again first if the last connection was lost.
    pub fn with<T>(&self, f: impl FnOnce(Pg<'_>) -> T) -> T {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = match self.handle.block_on(self.config.connect()) {
                Ok(client) => {
                    tracing::info!(store = %self.config.target(), "the console connected to PostgreSQL again");
                    Some(client)
                }
                Err(e) => {
                    tracing::error!(error = %e, "the console cannot reach PostgreSQL");
                    None
                }
            };
        }
        f(Pg {
            client: guard.as_ref(),
            target: self.config.target(),
            handle: &self.handle,
        })
    }
}

/// The console's connection for one request (`client` is `None` while
/// the database cannot be reached).
#[derive(Debug, Clone, Copy)]
pub struct Pg<'a> {
    client: Option<&'a Client>,
    target: &'a str,
    handle: &'a Handle,
}

impl<'a> Pg<'a> {
    pub(super) fn client(&self) -> Result<&'a Client, StoreError> {
        self.client.ok_or_else(|| StoreError::Unreachable {
            target: self.target.to_owned(),
            reason: "the connection was lost and could not be made again".to_owned(),
        })
    }

    /// Runs one statement's future to its end.
    pub(super) fn run<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        Ok(self.handle.block_on(work)?)
    }

    /// Runs `work` (made with [`Pg::client`]) in one transaction: committed
    /// when it succeeds, rolled back when it fails.
    pub(super) fn unit<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        self.handle.block_on(async move {
            client.batch_execute("BEGIN").await?;
            match work.await {
                Ok(value) => {
                    client.batch_execute("COMMIT").await?;
                    Ok(value)
                }
                Err(e) => {
                    if let Err(undo) = client.batch_execute("ROLLBACK").await {
                        tracing::error!(error = %undo, "could not roll back a console change");
                    }
                    Err(e.into())
                }
            }
        })
    }
}

/// A statement built piece by piece, with numbered parameters.
#[derive(Default)]
pub(super) struct Sql {
    pub text: String,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Sql {
    /// Adds a parameter; returns its placeholder (`$n`).
    pub fn param<T: ToSql + Sync + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref()).collect()
    }
}
