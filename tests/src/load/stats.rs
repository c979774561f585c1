//! What a simulated fleet counts: connections, enrolments, events sent,
//! acknowledged and refused, heartbeats, acknowledgement latencies and
//! publication fan-out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// What the simulated fleet saw.
#[derive(Default)]
pub struct Stats {
    /// Agents with their subscription open.
    pub subscribed: AtomicUsize,
    pub connect_failures: AtomicUsize,
    pub enrol_refusals: AtomicUsize,
    pub events_acked: AtomicU64,
    /// Event streams ended with `UNAVAILABLE` (the collector could not store).
    pub commit_failures: AtomicUsize,
    /// Events sealed and sent for the first time.
    pub events_sent: AtomicU64,
    /// Events sent again on a new stream (not acknowledged on the old one).
    pub events_resent: AtomicU64,
    /// Acknowledgements that said the event was already stored.
    pub acks_duplicate: AtomicU64,
    /// Agents that have every event they were to send acknowledged.
    pub agents_done: AtomicUsize,
    /// Connections lost (transport errors, not the collector's refusals).
    pub connections_lost: AtomicUsize,
    /// Times an agent connected to another of the collector's addresses.
    pub reconnects: AtomicUsize,
    /// Each agent's address (index into [`Fleet::addrs`]) now.
    pub address_of: Mutex<BTreeMap<usize, usize>>,
    /// Agents that moved to another address at least once.
    pub moved: Mutex<BTreeSet<usize>>,
    pub heartbeats: AtomicU64,
    /// Agents holding the events [`super::Fleet::prepare`] asked for, sealed.
    pub agents_prepared: AtomicUsize,
    pub heartbeat_refusals: AtomicUsize,
    /// Every refusal by its code and message, for the report.
    pub refusals: Mutex<BTreeMap<String, usize>>,
    /// Send-to-acknowledgement times in microseconds (for an event that
    /// opened its stream, from before the stream was opened).
    pub ack_latency_us: Mutex<Vec<u32>>,
    /// Event streams opened, and closed by agents for idleness.
    pub stream_opens: AtomicU64,
    pub idle_closes: AtomicU64,
    /// Event streams open now.
    pub streams_open: AtomicUsize,
    /// Times from opening an event stream to the collector's answer, in
    /// microseconds.
    pub stream_open_us: Mutex<Vec<u32>>,
    /// The version being timed and how many agents have received it.
    pub fanout_version: AtomicU32,
    pub fanout_received: AtomicUsize,
    pub fanout_last: Mutex<Option<Instant>>,
}

impl Stats {
    pub fn refused(&self, what: &str, status: &tonic::Status) {
        let mut message: String = status.message().chars().take(90).collect();
        if let Some(i) = message.find("ag-") {
            message.replace_range(i..(i + 15).min(message.len()), "ag-…");
        }
        *self
            .refusals
            .lock()
            .unwrap()
            .entry(format!("{what}: {:?}: {message}", status.code()))
            .or_default() += 1;
    }

    pub fn take_refusals(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.refusals.lock().unwrap())
    }

    /// How many agents are connected through address `i` now.
    pub fn agents_on(&self, i: usize) -> usize {
        self.address_of
            .lock()
            .unwrap()
            .values()
            .filter(|&&a| a == i)
            .count()
    }

    /// The agents connected through address `i` now.
    pub fn agents_at(&self, i: usize) -> BTreeSet<usize> {
        let of = self.address_of.lock().unwrap();
        of.iter()
            .filter(|(_, &a)| a == i)
            .map(|(&n, _)| n)
            .collect()
    }
}

/// Whether `status` is the connection failing (a transport error: the
/// collector went away) rather than an answer the collector sent.
pub fn connection_lost(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Counts down when dropped (an open subscription, while it lasts).
pub(super) struct Decrement<'a>(pub(super) &'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
