//! Serving the console: binding its address (HTTP, or HTTPS with the
//! collector's certificate) and stopping it with `serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::{router, App};
use crate::config::Console as ConsoleConfig;
use crate::secrets::TlsIdentity;

/// Aborts the console when dropped (when `serve` stops).
#[derive(Debug)]
pub struct Handle(tokio::task::JoinHandle<()>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds and starts the console. A console that cannot start is logged and
/// left out: agents' evidence keeps flowing into the store regardless.
pub async fn start(
    dir: &Path,
    config: &ConsoleConfig,
    tls: &TlsIdentity,
    location: &crate::store::Location,
) -> Option<Handle> {
    if !config.enabled {
        return None;
    }
    match bind(dir, config, tls, location).await {
        Ok((addr, serving)) => {
            let scheme = if config.tls { "https" } else { "http" };
            tracing::info!(url = %format!("{scheme}://{addr}/"), "review console listening");
            Some(Handle(tokio::spawn(serving)))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the review console did not start; ingest continues");
            None
        }
    }
}

/// Binds the console's address; returns it and the future that serves it.
pub async fn bind(
    dir: &Path,
    config: &ConsoleConfig,
    tls: &TlsIdentity,
    location: &crate::store::Location,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    use anyhow::Context;
    let app = App::open_at(dir, config, location).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the console", config.listen))?;
    let addr = listener.local_addr()?;
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let acceptor = if config.tls {
        Some(tls_acceptor(tls)?)
    } else {
        None
    };
    let serving = async move {
        let result = match acceptor {
            None => axum::serve(listener, service).await,
            Some(acceptor) => match tls_listener::TlsListener::new(listener, acceptor) {
                Ok(tls) => {
                    use axum::serve::ListenerExt;
                    axum::serve(tls.tap_io(|_| {}), service).await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the review console stopped");
        }
    };
    Ok((addr, serving))
}

fn tls_acceptor(tls: &TlsIdentity) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

mod tls_listener {
    //! HTTPS for the console. Handshakes run in their own tasks, with a
    //! timeout, so a stalled client cannot hold up the others.

    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;

    pub struct TlsListener {
        rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
        _accepting: super::Handle,
    }

    impl TlsListener {
        pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
            let local = listener.local_addr()?;
            let (tx, rx) = mpsc::channel(64);
            let accepting = tokio::spawn(async move {
                loop {
                    let Ok((stream, addr)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(tls)) =
                            tokio::time::timeout(Duration::from_secs(10), handshake).await
                        {
                            let _ = tx.send((tls, addr)).await;
                        }
                    });
                }
            });
            Ok(Self {
                rx,
                local,
                _accepting: super::Handle(accepting),
            })
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.rx.recv().await {
                Some(conn) => conn,
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            Ok(self.local)
        }
    }
}
