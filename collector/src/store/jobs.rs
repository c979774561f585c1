//! The background work's own connection: the mail and webhook outboxes,
//! urgent notifications, weekly summaries, retention and the leases that
//! make the singleton parts of it run on one collector at a time.
//!
//! Each domain adds its calls to [`Jobs`] in its module (`mail`, `urgent`,
//! `summary`, `webhook`, `lease`); the SQL is in `sqlite/` and `postgres/`.
//! On SQLite the calls run on a blocking thread with the connection; on
//! PostgreSQL on a connection of their own, so that each call is one
//! transaction (the shared connection pipelines other services' queries).

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{Location, StoreError};

/// A handle on the store for background work. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Jobs {
    Sqlite(Arc<Mutex<Connection>>),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::jobs::Jobs),
}

impl Jobs {
    /// Opens a connection for background work and makes the tables it uses.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(dir) => {
                let conn = super::open(dir)?;
                super::sqlite::jobs::ensure_schema(&conn)?;
                Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(config) => Ok(Self::Postgres(
                super::postgres::jobs::Jobs::open(config).await?,
            )),
        }
    }

    /// Background work on an open SQLite connection (the CLI, unit tests).
    pub fn sqlite(conn: Connection) -> Result<Self, StoreError> {
        super::sqlite::jobs::ensure_schema(&conn)?;
        Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
    }

    /// Whether several collectors may share this store.
    pub fn shared(&self) -> bool {
        !matches!(self, Self::Sqlite(_))
    }
}

/// Runs `f` with the SQLite connection on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    db: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    })
    .await
    .expect("a store task does not panic")
}

/// Runs `$sqlite` (on the connection `$c`, on a blocking thread; its
/// captures are moved) or `$pg` (awaited, on the PostgreSQL handle `$p`).
macro_rules! jobs {
    ($self:expr, $c:ident => $sqlite:expr, $p:ident => $pg:expr) => {
        match $self {
            $crate::store::Jobs::Sqlite(db) => {
                $crate::store::jobs::blocking(db, move |$c| Ok($sqlite?)).await
            }
            #[cfg(feature = "postgres")]
            $crate::store::Jobs::Postgres($p) => $pg,
        }
    };
}
pub(crate) use jobs;
