//! `tutela-collector serve`: the gRPC endpoint agents talk to.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tutela_proto::v1::enrolment_server::EnrolmentServer;
use tutela_proto::v1::ingest_server::IngestServer;

use crate::config::CollectorConfig;
use crate::enrolment::EnrolmentService;
use crate::ingest::{AgentKeys, IngestService};
use crate::secrets::{self, CaptureVault};
use crate::writer::Writer;

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
    // Mail on but misconfigured: refuse to start rather than run without urgent emails.
    for warning in
        crate::mail::check(config).context("email is misconfigured; fix collector.toml")?
    {
        tracing::warn!(%warning, "email configuration");
    }
    let tls = secrets::load_tls(dir)
        .context("loading the TLS certificate (run `tutela-collector init`)")?;
    let vault = Arc::new(CaptureVault::load(dir)?);
    let writer = Writer::start(dir.to_owned(), config.storage.batch_max)?;
    let keys = Arc::new(AgentKeys::open(dir)?);
    let rules = crate::publish::RulesService::open(dir, keys.clone())?;
    let ingest = IngestService {
        keys,
        writer,
        vault,
        limits: config.limits.clone(),
        data_dir: dir.to_owned(),
    };
    let signing_key = Arc::new(secrets::load_signing_key(dir)?);
    let enrolment = EnrolmentService::open(
        dir,
        ring::signature::KeyPair::public_key(&*signing_key)
            .as_ref()
            .to_vec(),
    )?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another collector running?",
            config.listen
        )
    })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, fingerprint = %tls.fingerprint, "collector listening");
    println!("listening on {local} certificate {}", tls.fingerprint);
    let max = config.max_message_bytes();
    let router = Server::builder()
        .tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem)),
        )?
        .tcp_nodelay(true)
        .add_service(EnrolmentServer::new(enrolment).max_decoding_message_size(64 * 1024))
        .add_service(
            tutela_proto::v1::rules_server::RulesServer::new(rules)
                .max_decoding_message_size(64 * 1024)
                .max_encoding_message_size(16 * 1024 * 1024),
        )
        .add_service(
            IngestServer::new(ingest)
                .max_decoding_message_size(max)
                .max_encoding_message_size(64 * 1024),
        );
    let console = crate::console::start(dir, &config.console, &tls).await;
    let purge = crate::retention::spawn_daily(dir.to_owned(), config.retention.clone());
    let mail_tasks = crate::mail::start(dir, config);
    let serving = async move {
        router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        drop(console);
        purge.abort();
        mail_tasks.shutdown().await;
        Ok(())
    };
    Ok((local, serving))
}
