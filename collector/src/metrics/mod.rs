//! Prometheus metrics: `/metrics` on its own listen address (`[metrics] listen`).
//!
//! Counters and the ingest latency histogram are recorded as events arrive;
//! the fleet, queue, outbox and publication gauges are read from the store at
//! each scrape (`readings`), so they are right whichever process wrote them
//! (a `rules push` from the command line, a purge, another console). Nothing
//! here carries a pupil's name, text, station or a term: labels are status
//! codes, states and severities only.

mod readings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use readings::Readings;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: String,
    severity: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Mode {
    mode: String,
}

/// Every metric the collector exports.
struct Metrics {
    registry: Registry,
    events_acknowledged: Counter,
    events_refused: Family<Code, Counter>,
    heartbeats: Counter,
    heartbeats_refused: Family<Code, Counter>,
    ingest_seconds: Histogram,
    ingest_streams: Gauge,
    agents_enrolled: Gauge,
    agents_silent: Gauge,
    agents_revoked: Gauge,
    spool_backlog: Gauge,
    spool_dropped: Gauge,
    queue: Family<QueueLabels, Gauge>,
    mail_pending: Gauge,
    mail_failed: Gauge,
    webhook_pending: Gauge,
    webhook_failed: Gauge,
    publications: Family<Mode, Gauge>,
    rules_version: Family<Mode, Gauge>,
    scrape_errors: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tutela");
        let m = Metrics {
            events_acknowledged: Counter::default(),
            events_refused: Family::default(),
            heartbeats: Counter::default(),
            heartbeats_refused: Family::default(),
            // 1 ms to ~16 s.
            ingest_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            ingest_streams: Gauge::default(),
            agents_enrolled: Gauge::default(),
            agents_silent: Gauge::default(),
            agents_revoked: Gauge::default(),
            spool_backlog: Gauge::default(),
            spool_dropped: Gauge::default(),
            queue: Family::default(),
            mail_pending: Gauge::default(),
            mail_failed: Gauge::default(),
            webhook_pending: Gauge::default(),
            webhook_failed: Gauge::default(),
            publications: Family::default(),
            rules_version: Family::default(),
            scrape_errors: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "events_acknowledged",
            "Signed events stored (or found already stored) and acknowledged to agents",
            m.events_acknowledged.clone(),
        );
        r.register(
            "events_refused",
            "Event streams ended by a refusal, by gRPC status code",
            m.events_refused.clone(),
        );
        r.register("heartbeats", "Heartbeats recorded", m.heartbeats.clone());
        r.register(
            "heartbeats_refused",
            "Heartbeats refused, by gRPC status code",
            m.heartbeats_refused.clone(),
        );
        r.register(
            "ingest_latency_seconds",
            "Time from an event's arrival to its commit (verification and the writer's batch)",
            m.ingest_seconds.clone(),
        );
        r.register(
            "ingest_streams",
            "Agents' event streams open now (agents connected)",
            m.ingest_streams.clone(),
        );
        r.register(
            "agents_enrolled",
            "Enrolled agents not revoked",
            m.agents_enrolled.clone(),
        );
        r.register(
            "agents_silent",
            "Enrolled agents not heard from for longer than [fleet] silent_after_mins (wall clock)",
            m.agents_silent.clone(),
        );
        r.register("agents_revoked", "Revoked agents", m.agents_revoked.clone());
        r.register(
            "agents_spool_backlog_events",
            "Events waiting in agents' spools, summed over their last heartbeats",
            m.spool_backlog.clone(),
        );
        r.register(
            "agents_spool_dropped_events",
            "Events agents dropped from a full spool, summed over their last heartbeats",
            m.spool_dropped.clone(),
        );
        r.register(
            "review_queue_alerts",
            "Alerts by review state and severity",
            m.queue.clone(),
        );
        r.register(
            "mail_outbox_pending",
            "Emails waiting to be sent (urgent, summary)",
            m.mail_pending.clone(),
        );
        r.register(
            "mail_outbox_failed",
            "Emails the mail server refused for good",
            m.mail_failed.clone(),
        );
        r.register(
            "webhook_outbox_pending",
            "Webhook messages waiting to be posted",
            m.webhook_pending.clone(),
        );
        r.register(
            "webhook_outbox_failed",
            "Webhook messages a receiver refused for good",
            m.webhook_failed.clone(),
        );
        r.register(
            "rule_publications",
            "Rule bundles published, live or shadow",
            m.publications.clone(),
        );
        r.register(
            "rules_version",
            "Version of the newest published bundle, live or shadow",
            m.rules_version.clone(),
        );
        r.register(
            "metrics_store_errors",
            "Scrapes whose store readings failed (the gauges kept their last values)",
            m.scrape_errors.clone(),
        );
        r.register(
            "build",
            "The collector's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { registry, ..m }
    }
}

/// An event was acknowledged; `since` is when it arrived.
pub fn event_acknowledged(since: Instant) {
    METRICS.events_acknowledged.inc();
    METRICS
        .ingest_seconds
        .observe(since.elapsed().as_secs_f64());
}

/// An event stream ended with this refusal.
pub fn event_refused(code: tonic::Code) {
    METRICS
        .events_refused
        .get_or_create(&Code {
            code: code_name(code),
        })
        .inc();
}

/// A heartbeat was recorded, or refused with `code`.
pub fn heartbeat(result: Result<(), tonic::Code>) {
    match result {
        Ok(()) => {
            METRICS.heartbeats.inc();
        }
        Err(code) => {
            METRICS
                .heartbeats_refused
                .get_or_create(&Code {
                    code: code_name(code),
                })
                .inc();
        }
    }
}

/// Counts an open event stream for as long as it lives.
pub struct StreamOpen(());

impl StreamOpen {
    pub fn new() -> Self {
        METRICS.ingest_streams.inc();
        StreamOpen(())
    }
}

impl Default for StreamOpen {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        METRICS.ingest_streams.dec();
    }
}

fn code_name(code: tonic::Code) -> String {
    // `Code`'s Debug is its name (`ResourceExhausted`); Prometheus labels read
    // better in the protocol's spelling.
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Sets the gauges from the store's readings.
fn apply(r: &Readings) {
    let m = &*METRICS;
    m.agents_enrolled.set(r.agents_enrolled);
    m.agents_silent.set(r.agents_silent);
    m.agents_revoked.set(r.agents_revoked);
    m.spool_backlog.set(r.spool_backlog);
    m.spool_dropped.set(r.spool_dropped);
    // States or severities no longer present read 0, not their last count.
    m.queue.clear();
    for (state, severity, count) in &r.queue {
        m.queue
            .get_or_create(&QueueLabels {
                state: state.clone(),
                severity: *severity,
            })
            .set(*count);
    }
    m.mail_pending.set(r.mail_pending);
    m.mail_failed.set(r.mail_failed);
    m.webhook_pending.set(r.webhook_pending);
    m.webhook_failed.set(r.webhook_failed);
    for (mode, count, version) in [
        ("live", r.live_publications, r.live_version),
        ("shadow", r.shadow_publications, r.shadow_version),
    ] {
        let label = Mode { mode: mode.into() };
        m.publications.get_or_create(&label).set(count);
        m.rules_version.get_or_create(&label).set(version);
    }
}

/// The exposition text: store readings taken now, then every metric.
fn render(dir: &std::path::Path, silent_after: Duration) -> String {
    match readings::read(dir, silent_after) {
        Ok(r) => apply(&r),
        Err(error) => {
            METRICS.scrape_errors.inc();
            tracing::warn!(%error, "metrics: cannot read the store; gauges keep their last values");
        }
    }
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        tracing::error!(%error, "metrics: cannot encode");
    }
    out
}

/// Serves `/metrics` on `listen` until the returned handle is dropped.
pub async fn start(
    dir: PathBuf,
    listen: SocketAddr,
    silent_after: Duration,
) -> anyhow::Result<MetricsServer> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} for metrics; change [metrics] listen in collector.toml or free the port")
        })?;
    let local = listener.local_addr()?;
    let dir = Arc::new(dir);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let dir = dir.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || render(&dir, silent_after))
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    tracing::info!(addr = %local, "metrics listening");
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(MetricsServer { task, local })
}

/// The running metrics listener; dropping it stops it.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
    pub local: SocketAddr,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_spelled_as_the_protocol_spells_them() {
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
