//! A simulated agent's events: sealed ahead, sent, and waiting for
//! acknowledgement, and how an event stream ended.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::sync::mpsc;
use tutela_proto::v1::{AckStatus, SignedEvent};

use super::{Agent, Chain, Fleet, Stats};

/// How an event stream ended.
pub(super) enum End {
    /// Nothing waited for an acknowledgement for the idle time: this side ends it.
    Idle,
    /// The collector ended it.
    Closed,
    Failed(tonic::Status),
}

/// An agent's events: sealed ahead, sent, and waiting for acknowledgement.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) chain: Chain,
    /// Sealed and not yet sent.
    pub(super) ready: VecDeque<(u64, SignedEvent)>,
    /// The last number sent.
    pub(super) sent_seq: u64,
    /// Sent and not yet acknowledged (resent on a new stream), with when.
    pub(super) unacked: VecDeque<(u64, Instant, SignedEvent)>,
}

impl Outbox {
    /// Sends the next `count` events on `tx`, as sent at `at`.
    pub(super) async fn send(
        &mut self,
        agent: &Agent,
        fleet: &Fleet,
        tx: &mpsc::Sender<SignedEvent>,
        count: u64,
        at: Instant,
    ) {
        for _ in 0..count {
            let (seq, event) = match self.ready.pop_front() {
                Some(sealed) => sealed,
                None => self.chain.seal(agent),
            };
            self.sent_seq = seq;
            self.unacked.push_back((seq, at, event.clone()));
            fleet.stats.events_sent.fetch_add(1, Relaxed);
            let _ = tx.send(event).await;
        }
    }

    /// Seals events up to `want` ahead (see [`Fleet::prepare`]).
    pub(super) async fn prepare(&mut self, agent: &Agent, stats: &Stats, want: u64, last: u64) {
        if want == 0 {
            return;
        }
        while (self.ready.len() as u64) < want && self.chain.sealed < last {
            self.ready.push_back(self.chain.seal(agent));
            if self.chain.sealed.is_multiple_of(32) {
                tokio::task::yield_now().await;
            }
        }
        stats.agents_prepared.fetch_add(1, Relaxed);
    }

    /// Takes what `ack` covers off the unacknowledged and counts it.
    pub(super) fn acknowledged(&mut self, ack: &tutela_proto::v1::Ack, stats: &Stats) {
        let now = Instant::now();
        let mut latencies = Vec::new();
        while self.unacked.front().is_some_and(|(s, _, _)| *s <= ack.seq) {
            let (_, sent, _) = self.unacked.pop_front().unwrap();
            latencies.push(now.duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
        }
        if ack.status == AckStatus::Duplicate as i32 {
            stats.acks_duplicate.fetch_add(1, Relaxed);
        }
        stats
            .events_acked
            .fetch_add(latencies.len() as u64, Relaxed);
        stats.ack_latency_us.lock().unwrap().extend(latencies);
    }
}
