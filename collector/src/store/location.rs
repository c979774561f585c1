//! Where the store lives, from `[storage] url` in collector.toml.

use std::path::{Path, PathBuf};

use super::StoreError;

/// The store's location: SQLite in the data directory, or a PostgreSQL
/// database. `Debug` never shows a password.
#[derive(Clone)]
pub enum Location {
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(Box<super::postgres::PgConfig>),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(dir) => f.debug_tuple("Sqlite").field(dir).finish(),
            #[cfg(feature = "postgres")]
            Self::Postgres(c) => f.debug_tuple("Postgres").field(&c.target()).finish(),
        }
    }
}

impl Location {
    /// The store for data directory `dir` and `url` (empty: SQLite in `dir`).
    pub fn new(dir: &Path, url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(Self::Sqlite(dir.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(Self::Postgres(Box::new(super::postgres::PgConfig::parse(
                url,
            )?)));
            #[cfg(not(feature = "postgres"))]
            return Err(StoreError::BadUrl(
                "this collector was built without PostgreSQL support; install a build with the `postgres` feature, or leave url empty for SQLite".into(),
            ));
        }
        Err(StoreError::BadUrl(format!(
            "{} is neither empty (SQLite in the data directory) nor a postgres:// URL",
            Self::redacted(url)
        )))
    }

    /// `url` with any password replaced by `***`, for logs and messages.
    pub fn redacted(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        let (before, query) = rest.split_once('?').unwrap_or((rest, ""));
        // Everything before the last '@' is the user name and password
        // (even a password with an unencoded '/' in it).
        let before = match before.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => before.to_owned(),
        };
        if query.is_empty() {
            return format!("{scheme}://{before}");
        }
        // A password may also come as a parameter: `?password=...`.
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        format!("{scheme}://{before}?{}", query.join("&"))
    }

    /// Whether several collectors may share this store (so nothing read
    /// from it may be trusted after the transaction it was read in).
    pub fn shared(&self) -> bool {
        !matches!(self, Self::Sqlite(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            Location::redacted("postgres://tutela:s3cret@db.school:5432/tutela"),
            "postgres://tutela:***@db.school:5432/tutela"
        );
        assert_eq!(
            Location::redacted("postgres://tutela@db/tutela"),
            "postgres://tutela@db/tutela"
        );
        assert_eq!(
            Location::redacted("postgresql://db/tutela?user=t&password=s3cret&sslmode=disable"),
            "postgresql://db/tutela?user=t&password=***&sslmode=disable"
        );
        assert_eq!(
            Location::redacted("postgres://t:pa/ss@db/tutela"),
            "postgres://t:***@db/tutela"
        );
        let err = Location::new(Path::new("/d"), "mysql://root:pw@db/x").unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn an_empty_url_is_sqlite_in_the_data_directory() {
        let at = Location::new(Path::new("/data"), " ").unwrap();
        assert!(matches!(at, Location::Sqlite(d) if d == Path::new("/data")));
    }
}
