//! One pinned HTTP/2 connection to the collector, shared by every part of
//! the agent: the event stream, the rule subscription, heartbeats and
//! notice acknowledgements are streams multiplexed on it, so an agent holds
//! one TLS connection and makes no handshake per heartbeat.
//!
//! The connection is opened on first use with [`pinning::connect_any`]
//! (same address order, failover and pinning). A part whose call fails on
//! the transport (the connection lost, the collector gone or stopping)
//! reports it with [`CollectorLink::failed`]: the connection is then
//! forgotten, never handed out again, and the next part to ask opens a
//! fresh one, trying the addresses again, for all parts together. Opening
//! is serialised, so parts failing at once open one connection, not one
//! each, and a failure reported for a connection already replaced is
//! ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tonic::transport::Channel;

use crate::pinning::{self, PinningError};

/// A shared connection to one collector service (its addresses, its pinned
/// certificate).
#[derive(Debug)]
pub struct CollectorLink {
    addresses: Vec<String>,
    fingerprint: String,
    current: tokio::sync::Mutex<Current>,
}

#[derive(Debug, Default)]
struct Current {
    channel: Option<Channel>,
    /// Counts the connections opened; names the one in `channel`.
    generation: u64,
}

/// A clone of the shared channel, and which connection it is, to report a
/// failure of that connection (and not of a later one).
#[derive(Debug, Clone)]
pub struct Lease {
    pub channel: Channel,
    generation: u64,
}

/// The links of this process, one per agent (a test process may run many).
type Registry = Mutex<HashMap<(String, Vec<String>, String), Weak<CollectorLink>>>;
static LINKS: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();

impl CollectorLink {
    /// A link of its own, not shared through [`Self::shared`].
    pub fn new(addresses: Vec<String>, fingerprint: String) -> Self {
        Self {
            addresses,
            fingerprint,
            current: tokio::sync::Mutex::default(),
        }
    }

    /// The link of agent `agent_id` to the collector at `addresses` with
    /// certificate `fingerprint`: the same one for every part of the agent
    /// that asks while any part holds it.
    pub fn shared(agent_id: &str, addresses: &[String], fingerprint: &str) -> Arc<Self> {
        let key = (
            agent_id.to_owned(),
            addresses.to_vec(),
            fingerprint.to_owned(),
        );
        let mut links = LINKS
            .get_or_init(Registry::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        links.retain(|_, link| link.strong_count() > 0);
        if let Some(link) = links.get(&key).and_then(Weak::upgrade) {
            return link;
        }
        let link = Arc::new(Self::new(key.1.clone(), key.2.clone()));
        links.insert(key, Arc::downgrade(&link));
        link
    }

    /// The collector's addresses, in the token's order.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The shared connection, opened now if there is none (or the last one
    /// failed). Callers asking while it is being opened wait for it.
    pub async fn channel(&self) -> Result<Lease, PinningError> {
        let mut current = self.current.lock().await;
        if let Some(channel) = &current.channel {
            return Ok(Lease {
                channel: channel.clone(),
                generation: current.generation,
            });
        }
        let channel = pinning::connect_any(&self.addresses, &self.fingerprint).await?;
        current.generation += 1;
        current.channel = Some(channel.clone());
        tracing::debug!(
            generation = current.generation,
            "connection to the collector opened"
        );
        Ok(Lease {
            channel,
            generation: current.generation,
        })
    }

    /// Reports that `lease`'s connection failed: it is not handed out
    /// again, and the next [`Self::channel`] opens another. Streams still
    /// open on it run on until they end.
    pub async fn failed(&self, lease: &Lease) {
        let mut current = self.current.lock().await;
        if current.generation == lease.generation && current.channel.take().is_some() {
            tracing::info!(
                generation = lease.generation,
                "connection to the collector lost; the next call opens a new one"
            );
        }
    }

    /// Reports `lease`'s connection failed if `status` says the transport
    /// failed (see [`is_transport_failure`]); whether it did.
    pub async fn check(&self, lease: &Lease, status: &tonic::Status) -> bool {
        let failed = is_transport_failure(status);
        if failed {
            self.failed(lease).await;
        }
        failed
    }
}

/// Whether `status` came from the connection rather than from the
/// collector's answer: the transport's own errors carry their cause (a
/// status the collector sent does not), and `UNAVAILABLE` is also what the
/// collector sends when it is stopping, so another address may serve.
pub fn is_transport_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_the_collector_sent_is_not_a_transport_failure() {
        assert!(!is_transport_failure(&tonic::Status::invalid_argument(
            "bad"
        )));
        assert!(!is_transport_failure(&tonic::Status::failed_precondition(
            "stale"
        )));
        assert!(is_transport_failure(&tonic::Status::unavailable(
            "the collector is stopping"
        )));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transport_failure(&tonic::Status::from_error(Box::new(
            io
        ))));
    }

    #[test]
    fn the_parts_of_one_agent_share_one_link_and_other_agents_have_their_own() {
        let addrs = vec!["127.0.0.1:1".to_owned()];
        let fp = "00".repeat(32);
        let a = CollectorLink::shared("agent-a", &addrs, &fp);
        let b = CollectorLink::shared("agent-a", &addrs, &fp);
        let other = CollectorLink::shared("agent-b", &addrs, &fp);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        // Once no part holds it, asking again makes a new one.
        let again = CollectorLink::shared("agent-a", &addrs, &fp);
        assert_eq!(Arc::strong_count(&again), 1);
    }

    #[tokio::test]
    async fn parts_asking_at_once_open_one_connection() {
        // A collector address that accepts TCP and never answers the TLS
        // handshake: the first opening stays under way.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(tcp);
            }
        });
        let link = Arc::new(CollectorLink::new(vec![addr], "00".repeat(32)));
        let parts: Vec<_> = (0..3)
            .map(|_| {
                let link = link.clone();
                tokio::spawn(async move { link.channel().await.map(|_| ()) })
            })
            .collect();
        while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The others wait for that opening instead of making their own.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(parts.iter().all(|p| !p.is_finished()));
        for part in parts {
            part.abort();
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_failure_of_a_replaced_connection_is_ignored() {
        // A listener that answers nothing: connecting fails, so no channel
        // is held; the lease generations are checked directly.
        let link = CollectorLink::new(vec!["127.0.0.1:1".to_owned()], "00".repeat(32));
        assert!(link.channel().await.is_err());
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:1");
        {
            let mut current = link.current.lock().await;
            current.generation = 2;
            current.channel = Some(endpoint.connect_lazy());
        }
        let stale = Lease {
            channel: endpoint.connect_lazy(),
            generation: 1,
        };
        link.failed(&stale).await;
        let held = link.channel().await.unwrap();
        assert_eq!(held.generation, 2, "the newer connection is kept");
        link.failed(&held).await;
        assert!(link.current.lock().await.channel.is_none());
        assert!(link.channel().await.is_err(), "a fresh connect is tried");
    }
}
