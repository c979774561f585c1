//! Where captures' bytes live. By default in the database, in the
//! `captures` row beside its SHA-256 and size; with the cargo feature `s3`
//! and `[storage.captures] url = "s3://bucket/prefix"`, in S3-compatible
//! object storage, one object per capture, and the row keeps the object's
//! key. Either way the bytes are sealed (encrypted) by the collector before
//! they are stored, and opened only by the collector: the bucket never holds
//! a plain image, and every view goes through the console (blur until
//! reveal, audit).
//!
//! An object is written before the transaction that stores its row commits:
//! a failed commit (or a replayed event, found a duplicate) leaves an orphan
//! object, removed by the orphan sweep (at start, then every six hours). A
//! deleted row (retention purge) queues its object's key in the database
//! (`capture_objects_gone`, filled by a trigger), and [`Blobs::sweep`]
//! deletes the queued objects.

use crate::config::CaptureStorage;

/// What a row holds of its capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredCapture {
    /// The sealed bytes, in the row.
    Inline(Vec<u8>),
    /// The key of the object holding the sealed bytes.
    Object(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("[storage.captures] is misconfigured: {0}; fix collector.toml")]
    Config(String),
    #[error("[storage.captures] names a bucket that cannot be used: {0}")]
    Unusable(String),
    #[error("the capture object {0} is missing from the bucket")]
    Missing(String),
    #[error("the capture bucket cannot be reached or refused the request: {0}")]
    Unavailable(String),
}

/// The capture store: the database (default) or a bucket. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum Blobs {
    #[default]
    Database,
    #[cfg(feature = "s3")]
    Object(std::sync::Arc<s3::Bucket>),
}

impl Blobs {
    /// Opens the store `config` names and checks that it answers (the bucket
    /// exists and the credentials are accepted).
    pub async fn open(config: &CaptureStorage) -> Result<Self, BlobError> {
        let blobs = Self::connect(config)?;
        match &blobs {
            Self::Database => {}
            #[cfg(feature = "s3")]
            Self::Object(b) => b.check().await?,
        }
        Ok(blobs)
    }

    /// The store `config` names, unchecked.
    pub fn connect(config: &CaptureStorage) -> Result<Self, BlobError> {
        if config.url.is_empty() {
            return Ok(Self::Database);
        }
        #[cfg(feature = "s3")]
        {
            Ok(Self::Object(std::sync::Arc::new(s3::Bucket::open(config)?)))
        }
        #[cfg(not(feature = "s3"))]
        Err(BlobError::Config(format!(
            "url is {:?} but this collector was built without object storage (cargo feature `s3`); leave url empty to keep captures in the database",
            config.url
        )))
    }

    /// Whether captures go into the database rows.
    pub fn in_database(&self) -> bool {
        matches!(self, Self::Database)
    }

    /// A new, unguessable key for a capture of `agent_id`'s event `seq`.
    /// Random, so a replayed event never overwrites a stored capture.
    pub fn new_key(agent_id: &str, seq: u64) -> String {
        let agent: String = agent_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(64)
            .collect();
        crate::store::random_id(&format!("{agent}/{seq}-"))
    }

    /// Stores `sealed` under `key`; on the database this is done by the
    /// row itself, so it is a no-op.
    pub async fn put(&self, key: &str, sealed: Vec<u8>) -> Result<(), BlobError> {
        match self {
            Self::Database => {
                let _ = (key, sealed);
                Ok(())
            }
            #[cfg(feature = "s3")]
            Self::Object(b) => b.put(key, sealed).await,
        }
    }

    /// The sealed bytes of a stored capture.
    pub async fn get(&self, stored: StoredCapture) -> Result<Vec<u8>, BlobError> {
        match (self, stored) {
            (_, StoredCapture::Inline(bytes)) => Ok(bytes),
            #[cfg(feature = "s3")]
            (Self::Object(b), StoredCapture::Object(key)) => b.get(&key).await,
            (Self::Database, StoredCapture::Object(key)) => Err(BlobError::Config(format!(
                "capture {key} is in object storage but url is empty; set [storage.captures] url to the bucket it was stored in"
            ))),
        }
    }

    /// [`Blobs::get`] from a thread that may block (console pages, CLI).
    pub fn get_blocking(&self, stored: StoredCapture) -> Result<Vec<u8>, BlobError> {
        match stored {
            StoredCapture::Inline(bytes) => Ok(bytes),
            object => match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle.block_on(self.get(object)),
                Err(_) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| BlobError::Unavailable(e.to_string()))?
                    .block_on(self.get(object)),
            },
        }
    }

    /// Deletes the object `key` (a missing one is already deleted).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self {
            Self::Database => {
                let _ = key;
                Ok(())
            }
            #[cfg(feature = "s3")]
            Self::Object(b) => b.delete(key).await,
        }
    }

    /// Deletes the objects whose rows are gone (queued by the database),
    /// then forgets them; returns how many were deleted.
    pub async fn sweep(&self, store: &crate::store::Store) -> Result<u64, SweepError> {
        if self.in_database() {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            let keys = store.capture_objects_gone(256).await?;
            if keys.is_empty() {
                return Ok(deleted);
            }
            for key in &keys {
                self.delete(key).await?;
            }
            store.forget_capture_objects(&keys).await?;
            deleted += keys.len() as u64;
        }
    }

    /// Deletes objects older than `grace` that no row names: left by a
    /// commit that failed after its object was written. Returns how many.
    pub async fn sweep_orphans(
        &self,
        store: &crate::store::Store,
        grace: std::time::Duration,
    ) -> Result<u64, SweepError> {
        match self {
            Self::Database => {
                let _ = (store, grace);
                Ok(0)
            }
            #[cfg(feature = "s3")]
            Self::Object(b) => {
                let mut deleted = 0;
                for key in b.keys_older_than(grace).await? {
                    if !store.capture_object_known(&key).await? {
                        b.delete(&key).await?;
                        deleted += 1;
                    }
                }
                Ok(deleted)
            }
        }
    }

    /// Runs [`Blobs::sweep`] every `every`, and the orphan sweep at start
    /// and every [`ORPHAN_SWEEP_EVERY`] (a replayed event's capture is
    /// written before the writer finds it a duplicate, and stays an orphan
    /// until then); failures are logged and tried again.
    pub fn spawn_sweeper(
        self,
        store: crate::store::Store,
        every: std::time::Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.in_database() {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut orphans_swept: Option<std::time::Instant> = None;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if orphans_swept.is_none_or(|at| at.elapsed() >= ORPHAN_SWEEP_EVERY) {
                    orphans_swept = Some(std::time::Instant::now());
                    match self.sweep_orphans(&store, ORPHAN_GRACE).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(objects = n, "deleted orphan capture objects"),
                        Err(e) => {
                            tracing::warn!(error = %e, "orphan capture sweep failed; will retry")
                        }
                    }
                }
                match self.sweep(&store).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(objects = n, "deleted capture objects of purged alerts")
                    }
                    Err(e) => tracing::warn!(error = %e, "capture object sweep failed; will retry"),
                }
            }
        }))
    }
}

/// How often the bucket is listed for orphan objects.
pub const ORPHAN_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// An object younger than this may belong to a transaction still running.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(feature = "s3")]
mod s3 {
    use std::time::Duration;

    use futures_util::StreamExt;
    use object_store::aws::{AmazonS3, AmazonS3Builder};
    use object_store::path::Path;
    use object_store::{
        BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    };

    use super::BlobError;
    use crate::config::CaptureStorage;

    /// A bucket (and key prefix) in S3-compatible object storage.
    #[derive(Debug)]
    pub struct Bucket {
        store: AmazonS3,
        prefix: String,
        url: String,
    }

    /// Reads a credential from the environment variable `name`.
    fn env(name: &str, what: &str) -> Result<Option<String>, BlobError> {
        if name.is_empty() {
            return Ok(None);
        }
        std::env::var(name).map(Some).map_err(|_| {
            BlobError::Config(format!(
                "{what} names the environment variable {name}, which is not set; set it for the collector's service"
            ))
        })
    }

    fn is_loopback(endpoint: &str) -> bool {
        let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        let host = rest.split('/').next().unwrap_or("");
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        };
        matches!(host, "localhost" | "[::1]")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    impl Bucket {
        pub fn open(config: &CaptureStorage) -> Result<Self, BlobError> {
            // The HTTP client's TLS uses the process's provider (ring).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rest = config.url.strip_prefix("s3://").ok_or_else(|| {
                BlobError::Config(format!(
                    "url must look like s3://bucket/prefix, not {:?}",
                    config.url
                ))
            })?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::Config("url names no bucket".into()));
            }
            let http = config.endpoint.starts_with("http://");
            if http && !config.allow_http {
                return Err(BlobError::Config(format!(
                    "endpoint {} is plain HTTP; use https, or set allow_http = true for an endpoint on this machine",
                    config.endpoint
                )));
            }
            if http && !is_loopback(&config.endpoint) {
                return Err(BlobError::Config(format!(
                    "allow_http is only for an endpoint on this machine (loopback), not {}; use https",
                    config.endpoint
                )));
            }
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(if config.region.is_empty() {
                    "us-east-1"
                } else {
                    &config.region
                })
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(5),
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(http)
                        .with_timeout(Duration::from_secs(20))
                        .with_connect_timeout(Duration::from_secs(3)),
                );
            if !config.endpoint.is_empty() {
                builder = builder.with_endpoint(&config.endpoint);
            }
            if let Some(id) = env(&config.access_key_id_env, "access_key_id_env")? {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = env(&config.secret_access_key_env, "secret_access_key_env")? {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|e| BlobError::Config(e.to_string()))?;
            Ok(Self {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                url: config.url.clone(),
            })
        }

        fn path(&self, key: &str) -> Path {
            if self.prefix.is_empty() {
                Path::from(key)
            } else {
                Path::from(format!("{}/{key}", self.prefix))
            }
        }

        fn unavailable(&self, e: object_store::Error) -> BlobError {
            BlobError::Unavailable(format!("{}: {e}", self.url))
        }

        /// Lists the prefix once: the bucket exists and the credentials work.
        pub async fn check(&self) -> Result<(), BlobError> {
            let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
            self.store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map(|_| ())
                .map_err(|e| {
                    BlobError::Unusable(format!(
                        "cannot list {} ({e}); check that the bucket exists, that endpoint and region name it, and that the credentials in the environment variables named are accepted",
                        self.url
                    ))
                })
        }

        pub async fn put(&self, key: &str, sealed: Vec<u8>) -> Result<(), BlobError> {
            self.store
                .put(&self.path(key), PutPayload::from(sealed))
                .await
                .map(|_| ())
                .map_err(|e| self.unavailable(e))
        }

        pub async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
            match self.store.get(&self.path(key)).await {
                Ok(r) => Ok(r.bytes().await.map_err(|e| self.unavailable(e))?.to_vec()),
                Err(object_store::Error::NotFound { .. }) => Err(BlobError::Missing(key.into())),
                Err(e) => Err(self.unavailable(e)),
            }
        }

        pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.unavailable(e)),
            }
        }

        /// Keys (without the prefix) of objects last modified before `grace` ago.
        pub async fn keys_older_than(&self, grace: Duration) -> Result<Vec<String>, BlobError> {
            let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
            let cutoff = crate::store::now_ms() - grace.as_millis() as i64;
            let mut listing = self.store.list(prefix.as_ref());
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| self.unavailable(e))?;
                if meta.last_modified.timestamp_millis() < cutoff {
                    let full = meta.location.to_string();
                    let key = match self.prefix.is_empty() {
                        true => full,
                        false => full
                            .strip_prefix(&format!("{}/", self.prefix))
                            .unwrap_or(&full)
                            .to_owned(),
                    };
                    keys.push(key);
                }
            }
            Ok(keys)
        }
    }
}
