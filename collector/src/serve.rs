//! `tutela-collector serve`: the gRPC endpoint agents talk to.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tutela_proto::v1::enrolment_server::EnrolmentServer;
use tutela_proto::v1::ingest_server::IngestServer;

use crate::config::CollectorConfig;
use crate::enrolment::EnrolmentService;
use crate::ingest::{AgentKeys, IngestService};
use crate::secrets::{self, CaptureVault};
use crate::writer::Writer;

/// How long a stop waits for agents' open streams (rule subscriptions,
/// ingest) to end before it stops serving them. With the email shutdown
/// below, this stays inside the service unit's `TimeoutStopSec=30`.
pub const GRACEFUL_STREAMS: Duration = Duration::from_secs(10);
/// How long a stop then waits for an email being sent to be recorded.
pub const GRACEFUL_MAIL: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control windows and streams per agent connection.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 512 * 1024;
const MAX_STREAMS_PER_AGENT: u32 = 16;
/// HTTP/2's smallest frame (the protocol's minimum, and h2's default):
/// agents' messages are small and a capture is sent as several frames.
const MAX_FRAME: u32 = 16 * 1024;
/// Request headers per call: an agent's are gRPC's own (a few hundred
/// bytes), a browser's gRPC-Web call a few KiB (the default is 16 KiB).
const MAX_HEADER_LIST: u32 = 8 * 1024;

/// Serves until `shutdown` resolves.
pub async fn serve(
    dir: &Path,
    config: &CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (_, serving) = bind(dir, config, shutdown).await?;
    serving.await
}

/// Opens the store and binds the listen address (port 0 picks a free one);
/// returns the bound address and the future that serves until `shutdown`.
pub async fn bind(
    dir: &Path,
    config: &CollectorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    SocketAddr,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    // Every page, email and school-hours check depends on the school's time zone.
    crate::console::tz::Zone::parse(&config.console.time_zone)
        .map_err(|e| anyhow::anyhow!("[console] time_zone {e}; fix collector.toml"))?;
    // Mail on but misconfigured: refuse to start rather than run without urgent emails.
    for warning in
        crate::mail::check(config).context("email is misconfigured; fix collector.toml")?
    {
        tracing::warn!(%warning, "email configuration");
    }
    let tls = secrets::load_tls(dir)
        .context("loading the TLS certificate (run `tutela-collector init`)")?;
    let vault = Arc::new(CaptureVault::load(dir)?);
    let location = crate::store::Location::new(dir, &config.storage.url)
        .context("the store is misconfigured; fix [storage] in collector.toml")?;
    if location.shared() {
        tracing::info!(store = ?location, "agents, enrolment, heartbeats, events, the review console, email and webhooks are stored in PostgreSQL");
    }
    // Held while serving: `migrate` refuses to copy a store in use.
    let dir_lock = if location.shared() {
        None
    } else {
        Some(crate::store::sqlite::lock::DirLock::take(dir)?)
    };
    let store = crate::store::Store::open(&location)
        .await
        .context("cannot open the store")?;
    let blobs = crate::store::blob::Blobs::open(&config.storage.captures)
        .await
        .context("cannot store captures; fix [storage.captures] in collector.toml or the bucket, then start the collector again")?;
    let sweeper = blobs.clone().spawn_sweeper(
        store.clone(),
        Duration::from_secs(config.storage.captures.sweep_secs.max(1)),
    );
    let writer = Writer::start(location.clone(), config.storage.batch_max)
        .context("cannot open the store for writing")?;
    let keys = Arc::new(AgentKeys::new(store));
    // Set when shutdown begins, before the server stops taking calls, so the
    // agents' rule streams end with a status that says so.
    let (stopping_rules, stopping) = tokio::sync::watch::channel(false);
    let rules = crate::subscription::RulesService::open(dir, keys.clone(), stopping).await?;
    let notices = crate::notice::service::NoticesService::new(keys.clone());
    let ingest = IngestService {
        keys,
        writer: writer.clone(),
        vault,
        blobs,
        limits: config.limits.clone(),
        data_dir: dir.to_owned(),
    };
    let signing_key = Arc::new(secrets::load_signing_key(dir)?);
    let enrolment = EnrolmentService::new(
        writer,
        ring::signature::KeyPair::public_key(&*signing_key)
            .as_ref()
            .to_vec(),
    );
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another collector running?",
            config.listen
        )
    })?;
    // Mail on but unusable (database, schedule): refuse to start rather
    // than run without urgent notifications. Started once the address is
    // ours, so a collector that cannot listen sends nothing.
    let mail_tasks = crate::mail::start(&location, config).await.context(
        "email (urgent notifications) cannot start; fix this, then start the collector again",
    )?;
    // Likewise webhooks (urgent alerts to chat or another system).
    let webhooks = crate::webhook::start(&location, config).await.context(
        "webhooks (urgent alerts) cannot start; fix [[webhooks.targets]] in collector.toml, then start the collector again",
    )?;
    // Bound before "listening" is printed, so whatever waits for that line
    // can scrape at once.
    let metrics = match config.metrics.listen {
        Some(addr) => Some(
            crate::metrics::start(
                dir.to_owned(),
                addr,
                Duration::from_secs(config.fleet.silent_after_mins.saturating_mul(60)),
            )
            .await?,
        ),
        None => None,
    };
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, fingerprint = %tls.fingerprint, "collector listening");
    println!("listening on {local} certificate {}", tls.fingerprint);
    let max = config.max_message_bytes();
    let cors = crate::grpc_web::cors(
        &config
            .extension
            .checked_origins()
            .map_err(anyhow::Error::msg)
            .context("collector.toml is wrong")?,
    );
    // TLS is terminated in the collector's own accept loop (`tls`), which
    // bounds handshakes; the gRPC server is handed established streams.
    let tls_config = crate::tls::server_config(&tls)?;
    let router = Server::builder()
        // What one agent may send before the collector reads it: bounds the
        // memory thousands of agents can make it hold when it falls behind
        // (the defaults allow 1 MiB per stream). An agent uses four streams.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS_PER_AGENT)
        .max_frame_size(MAX_FRAME)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        // The browser extension speaks gRPC-Web (over HTTP/2 or HTTP/1.1);
        // native agents speak gRPC. Both reach the same services.
        .accept_http1(true)
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(EnrolmentServer::new(enrolment).max_decoding_message_size(64 * 1024))
        .add_service(
            tutela_proto::v1::rules_server::RulesServer::new(rules)
                .max_decoding_message_size(64 * 1024)
                .max_encoding_message_size(16 * 1024 * 1024),
        )
        .add_service(
            tutela_proto::v1::notices_server::NoticesServer::new(notices)
                .max_decoding_message_size(64 * 1024)
                .max_encoding_message_size(64 * 1024),
        )
        .add_service(
            IngestServer::new(ingest)
                .max_decoding_message_size(max)
                .max_encoding_message_size(64 * 1024),
        );
    let console = crate::console::start(dir, &config.console, &tls, &location).await;
    let purge = crate::retention::spawn_daily(
        location.clone(),
        config.retention.clone(),
        Duration::from_secs(config.storage.lease_secs.max(1)),
    );
    let backups = crate::backup::schedule::spawn(
        dir,
        location.clone(),
        &config.backup,
        Duration::from_secs(config.storage.lease_secs.max(1)),
    );
    let serving = async move {
        let _dir_lock = dir_lock;
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = stopping_rules.send(true);
            let _ = stopping_tx.send(());
        };
        let connections = crate::memory::Connections::default();
        let trimmer = connections.spawn_trimmer();
        let incoming = crate::tls::accept(
            listener,
            tls_config,
            connections.clone(),
            crate::tls::Limits::default(),
        );
        let server = router.serve_with_incoming_shutdown(incoming, shutdown);
        tokio::pin!(server);
        // Agents' streams never end by themselves: after the grace period
        // the server future is dropped, which stops serving them.
        let bounded = async {
            if stopping.await.is_ok() {
                tokio::time::sleep(GRACEFUL_STREAMS).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = &mut server => served,
            () = bounded => {
                tracing::warn!(
                    wait_secs = GRACEFUL_STREAMS.as_secs(),
                    "agents' streams were still open at shutdown; stopped serving them"
                );
                Ok(())
            }
        };
        // Whatever ended serving, the email being sent is finished first.
        drop(console);
        drop(metrics);
        purge.abort();
        if let Some(backups) = &backups {
            backups.abort();
        }
        if let Some(sweeper) = &sweeper {
            sweeper.abort();
        }
        trimmer.abort();
        mail_tasks.shutdown(GRACEFUL_MAIL).await;
        webhooks.shutdown(GRACEFUL_MAIL).await;
        tracing::info!("collector stopped");
        served?;
        Ok(())
    };
    Ok((local, serving))
}
