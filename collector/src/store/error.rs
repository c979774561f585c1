//! What can go wrong in the store, whatever the backend.

/// A store failure. Messages say what went wrong and what to do; they never
/// carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL error: {}", super::postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot reach PostgreSQL at {target}: {reason}; check that it runs and that [storage] url in collector.toml names it")]
    Unreachable { target: String, reason: String },
    #[error("[storage] url in collector.toml is not usable: {0}")]
    BadUrl(String),
    #[error("the database's schema is version {found} but this collector knows up to {known}: a newer collector has upgraded it; run that version (or newer) of tutela-collector")]
    SchemaTooNew { found: i64, known: i64 },
    /// A school id that cannot be one (where a row would be filtered on it).
    #[error("{0:?} is not a school id (1-32 lower-case letters, digits or '-'); use one from `tutela-collector schools list`")]
    NotASchool(String),
    /// Captures in object storage.
    #[error(transparent)]
    Blob(#[from] super::blob::BlobError),
}
