//! The heartbeat that reports the version, spool and shadow counts the agent
//! runs, signed and timed by a clock that follows the collector's once it
//! refused one as stale.

use std::sync::atomic::{AtomicI64, Ordering};

use prost::Message;
use tutela_proto::v1::ingest_client::IngestClient;
use tutela_proto::v1::{HeartbeatBody, SignedHeartbeat};

use super::RulesSync;
use crate::link::CollectorLink;

/// Times this process's heartbeats (one agent per process).
static HEARTBEAT_CLOCK: HeartbeatClock = HeartbeatClock::new();

/// Heartbeat times: each later than the last one sent (the collector refuses
/// one that is not newer than the last it accepted), and taken from the
/// collector's clock once it refused one as stale (a station whose clock is
/// wrong still reports).
#[derive(Debug)]
pub(super) struct HeartbeatClock {
    last: AtomicI64,
    /// The collector's clock minus this station's, once learnt.
    offset: AtomicI64,
}

impl HeartbeatClock {
    pub(super) const fn new() -> Self {
        Self {
            last: AtomicI64::new(0),
            offset: AtomicI64::new(0),
        }
    }

    pub(super) fn next(&self, local_now: i64) -> i64 {
        let now = local_now.saturating_add(self.offset.load(Ordering::Relaxed));
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Learns the collector's clock from a heartbeat refused as stale;
    /// whether it did (then the heartbeat is worth sending again at once).
    pub(super) fn learn(&self, status: &tonic::Status, local_now: i64) -> bool {
        if status.code() != tonic::Code::FailedPrecondition {
            return false;
        }
        let Some(collector_ms) = status
            .metadata()
            .get(tutela_proto::COLLECTOR_TIME_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return false;
        };
        let offset = collector_ms.saturating_sub(local_now);
        tracing::warn!(
            offset_secs = offset / 1000,
            "this station's clock differs from the collector's; heartbeats now follow the collector's clock (set the station's clock)"
        );
        self.offset.store(offset, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
        true
    }
}

impl RulesSync {
    /// The encoded heartbeat body, timed by [`HEARTBEAT_CLOCK`].
    fn heartbeat_body(&self) -> Result<Vec<u8>, String> {
        let (shadow_version, shadow_counts) = self.shadow.snapshot();
        let stats = self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
            .map_err(|e| e.to_string())?;
        Ok(HeartbeatBody {
            agent_id: self.enrolment.agent_id.clone(),
            time_ms: HEARTBEAT_CLOCK.next(crate::session::now_ms()),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            rules_version: self.current_version(),
            spool_backlog: stats.backlog,
            spool_dropped: stats.dropped,
            station: crate::session::station_name(),
            shadow_counts,
            shadow_version,
            machine_id: self.host.clone(),
            shadow_run: self.shadow.run_id().to_owned(),
            problems: Vec::new(),
        }
        .encode_to_vec())
    }

    /// Sends a signed heartbeat now and then every `heartbeat_every`, and
    /// at once after a rule change.
    pub async fn heartbeat(self) {
        let link = self.link();
        loop {
            if let Err(e) = self.heartbeat_once(&link).await {
                tracing::debug!(error = %e, "heartbeat not delivered");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.heartbeat_every) => {}
                _ = self.report_now.notified() => {}
            }
        }
    }

    async fn heartbeat_once(&self, link: &CollectorLink) -> Result<(), String> {
        let lease = link.channel().await.map_err(|e| e.to_string())?;
        let mut client = IngestClient::new(lease.channel.clone());
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            let body = self.heartbeat_body()?;
            let sent = client
                .heartbeat(SignedHeartbeat {
                    signature: self.identity.sign(&tutela_proto::heartbeat_message(&body)),
                    body,
                })
                .await;
            match sent {
                Ok(reply) => break reply.into_inner(),
                Err(s) if attempts == 1 && HEARTBEAT_CLOCK.learn(&s, crate::session::now_ms()) => {}
                Err(s) => {
                    link.check(&lease, &s).await;
                    return Err(s.message().to_owned());
                }
            }
        };
        if reply.rekey {
            tracing::warn!(
                "the collector saw this identity on two machines; this station will make a new key"
            );
            self.rekey.notify_one();
        }
        Ok(())
    }
}
