//! Leases: singleton work (the weekly summary, the urgent-mail scan, the
//! webhook scan, the retention purge) runs on one collector at a time.
//!
//! On PostgreSQL a lease is a row of `leases` (name, holder, expiry by the
//! database's clock), taken or renewed in one short statement: a collector
//! takes it when it is free or expired, and renews it every third of its
//! length. A collector that stops renewing (killed, cut off) loses it when
//! it expires, and another takes it over within one lease length and one
//! renewal interval. The holder stops its work as soon as it cannot renew,
//! before the lease runs out elsewhere. On SQLite one process does the
//! work: the lease is always held.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Jobs, StoreError};

impl Jobs {
    /// Takes or renews the lease `name` for `holder` for `ttl_ms`; returns
    /// whether `holder` holds it now.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Jobs::Sqlite(_) => {
                let _ = (name, holder, ttl_ms);
                Ok(true)
            }
            #[cfg(feature = "postgres")]
            Jobs::Postgres(p) => p.take_lease(name, holder, ttl_ms).await,
        }
    }

    /// Gives the lease up (an orderly shutdown), so another collector need
    /// not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        match self {
            Jobs::Sqlite(_) => {
                let _ = (name, holder);
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Jobs::Postgres(p) => p.release_lease(name, holder).await,
        }
    }
}

impl Jobs {
    /// Deletes the leases named `prefix` followed by something that sorts
    /// before `before` (claims of slots long past, whose rows would
    /// otherwise stay forever); returns how many. On SQLite no lease is
    /// stored: nothing to delete.
    pub async fn forget_leases_before(
        &self,
        prefix: &str,
        before: &str,
    ) -> Result<u64, StoreError> {
        match self {
            Jobs::Sqlite(_) => {
                let _ = (prefix, before);
                Ok(0)
            }
            #[cfg(feature = "postgres")]
            Jobs::Postgres(p) => {
                p.forget_leases_before(prefix, &format!("{prefix}{before}"))
                    .await
            }
        }
    }
}

/// This process's name as a lease holder: its process id and host, and a
/// random part so that a restarted process is a new holder.
pub fn holder_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "collector".into());
        format!(
            "{}@{host}/{}",
            std::process::id(),
            super::random_id("").get(..6).unwrap_or_default()
        )
    })
    .clone()
}

/// Whether this process holds a lease, for the work done under it.
#[derive(Debug, Clone)]
pub struct Held {
    /// Until when this process may act as the holder (`None`: not held).
    until: Arc<Mutex<Option<Instant>>>,
    always: bool,
}

impl Held {
    /// Whether this process holds the lease now.
    pub fn now(&self) -> bool {
        self.always
            || self
                .until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| Instant::now() < t)
    }

    /// Held for good (one process on SQLite, and tests).
    pub fn always() -> Self {
        Self {
            until: Arc::new(Mutex::new(None)),
            always: true,
        }
    }
}

/// A lease kept by a background task while it lives.
#[derive(Debug)]
pub struct Lease {
    held: Held,
    task: Option<tokio::task::JoinHandle<()>>,
    release: Option<(Jobs, String, String)>,
}

impl Lease {
    /// Keeps trying to take lease `name` and renews it while held. On
    /// SQLite it is held from the start.
    pub fn keep(jobs: &Jobs, name: &str, holder: &str, ttl: Duration) -> Self {
        if !jobs.shared() {
            return Self {
                held: Held::always(),
                task: None,
                release: None,
            };
        }
        let until = Arc::new(Mutex::new(None));
        let ttl = ttl.max(Duration::from_secs(1));
        let task = tokio::spawn(renew(
            jobs.clone(),
            name.to_owned(),
            holder.to_owned(),
            ttl,
            until.clone(),
        ));
        Self {
            held: Held {
                until,
                always: false,
            },
            task: Some(task),
            release: Some((jobs.clone(), name.to_owned(), holder.to_owned())),
        }
    }

    pub fn held_handle(&self) -> Held {
        self.held.clone()
    }

    /// Stops renewing and gives the lease up.
    pub async fn release(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        *self.held.until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some((jobs, name, holder)) = self.release.take() {
            if let Err(e) = jobs.release_lease(&name, &holder).await {
                tracing::warn!(lease = %name, error = %e, "the lease could not be given up; it expires by itself");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn renew(
    jobs: Jobs,
    name: String,
    holder: String,
    ttl: Duration,
    until: Arc<Mutex<Option<Instant>>>,
) {
    let every = ttl / 3;
    // Acted on for at most three quarters of the lease after the renewal
    // was asked for: the work stops before another collector may start it.
    let trust = ttl * 3 / 4;
    let ttl_ms = ttl.as_millis() as i64;
    let mut held = false;
    loop {
        let asked = Instant::now();
        let now_held = match jobs.take_lease(&name, &holder, ttl_ms).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "the lease could not be renewed");
                false
            }
        };
        *until.lock().unwrap_or_else(|p| p.into_inner()) = now_held.then_some(asked + trust);
        if now_held != held {
            if now_held {
                tracing::info!(lease = %name, %holder, ttl_secs = ttl.as_secs(), "took the lease: this collector does this work now");
            } else {
                tracing::warn!(lease = %name, %holder, "lost the lease: another collector does this work now");
            }
            held = now_held;
        }
        tokio::time::sleep(every).await;
    }
}
