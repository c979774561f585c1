//! Background work's connection to PostgreSQL: one of its own, so that
//! each call runs as one transaction; made again when the database comes
//! back after going away.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::Client;

use super::{schema, PgConfig};
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct Jobs {
    config: Arc<PgConfig>,
    client: Arc<Mutex<Option<Client>>>,
}

/// The connection, held for one call.
pub struct Conn<'a>(MutexGuard<'a, Option<Client>>);

impl Conn<'_> {
    pub fn client(&mut self) -> &mut Client {
        self.0.as_mut().expect("connected before use")
    }
}

impl Jobs {
    /// Connects and brings the schema up to date.
    pub async fn open(config: &PgConfig) -> Result<Self, StoreError> {
        let mut client = config.connect().await?;
        schema::migrate(&mut client).await?;
        Ok(Self {
            config: Arc::new(config.clone()),
            client: Arc::new(Mutex::new(Some(client))),
        })
    }

    /// The connection, made again if the last one was lost.
    pub async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let fresh = self.config.connect().await?;
            tracing::info!(store = %self.config.target(), "background work connected to PostgreSQL again");
            *guard = Some(fresh);
        }
        Ok(Conn(guard))
    }
}
