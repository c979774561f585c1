//! Enrolled agents' keys, parsed once and cached briefly, so a revocation
//! takes effect within seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::signature::{self, PublicKey};
use crate::store::Store;

/// How long a looked-up agent key is trusted before re-reading (revocation latency).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// An enrolled agent's key, parsed once, and whether it is revoked.
#[derive(Debug)]
pub struct AgentKey {
    key: Result<PublicKey, signature::KeyError>,
    pub revoked: bool,
    fetched: Instant,
}

impl AgentKey {
    /// The key to check `agent_id`'s signatures with. A stored key that
    /// cannot be used (enrolled before weak keys were refused) is refused.
    pub fn usable(&self, agent_id: &str) -> Result<&PublicKey, Status> {
        self.key.as_ref().map_err(|e| {
            tracing::warn!(agent_id, error = %e, "enrolled key unusable");
            Status::unauthenticated(format!(
                "agent {agent_id}'s enrolled key cannot be used ({e}); a technician must re-enrol the device"
            ))
        })
    }
}

/// Enrolled agents' keys, cached briefly.
#[derive(Debug)]
pub struct AgentKeys {
    store: Store,
    cache: RwLock<HashMap<String, Arc<AgentKey>>>,
}

impl AgentKeys {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The store the keys are read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The agent's key, or `None` when it is not enrolled.
    pub async fn get(&self, agent_id: &str) -> Result<Option<Arc<AgentKey>>, Status> {
        if let Some(k) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
        {
            if k.fetched.elapsed() < KEY_CACHE_TTL {
                return Ok(Some(k.clone()));
            }
        }
        let row = self.store.agent_key(agent_id).await.map_err(|e| {
            tracing::error!(error = %e, "agent lookup failed");
            Status::unavailable("the collector cannot read its agent list; retry later")
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key = Arc::new(AgentKey {
            key: PublicKey::parse(&row.public_key),
            revoked: row.revoked,
            fetched: Instant::now(),
        });
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_owned(), key.clone());
        Ok(Some(key))
    }
}
